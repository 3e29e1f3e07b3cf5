//! What a person running a drill (or a rehearsal) sees: the steps, one live
//! progress line — elapsed time, customers arriving and requests answered
//! over the last second, errors, p99 — with chaos actions printed above it as they
//! happen, then the summary. The way k6 and cargo show long work. On a
//! terminal the line redraws in place (indicatif); elsewhere (a CI log, a
//! pipe) a plain line every five seconds. Colors only on a terminal, and
//! never with `NO_COLOR`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::record::ChaosEvent;
use crate::report::Report;

/// How often a plain progress line is printed when there is no terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The figures of one progress tick.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tick {
    pub elapsed: Duration,
    /// Customers arrived, requests answered and errors, so far.
    pub offered: u64,
    pub answered: u64,
    pub errors: u64,
    pub p99_ms: f64,
}

/// What the drill tells the person while it runs.
pub trait Progress: Send + Sync {
    /// The traffic starts; it lasts `total`.
    fn begin(&self, _total: Duration) {}
    fn tick(&self, tick: Tick);
    fn chaos(&self, event: &ChaosEvent);
    /// The traffic is over.
    fn end(&self) {}
}

/// The terminal, or standard output when it is not one.
#[derive(Debug)]
pub struct Console {
    colors: bool,
    /// A terminal to redraw a line on.
    live: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    bar: Option<ProgressBar>,
    /// The tick a second or more ago, for rates over the last second.
    previous: Tick,
    latest: Tick,
    last_plain: Duration,
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl Console {
    pub fn new() -> Console {
        Console {
            colors: flashguard_telemetry::colors_for(&std::io::stdout()),
            live: std::io::stdout().is_terminal(),
            state: Mutex::new(State::default()),
        }
    }

    /// A step of the work: `starting gateway`.
    pub fn step(&self, text: &str) {
        self.line(&format!("{} {text}", self.dim("·")));
    }

    /// A line printed above the progress line, if one is drawn.
    pub fn line(&self, text: &str) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &state.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// Starts the progress line for a run of `total`.
    fn start(&self, total: Duration) {
        let bar = ProgressBar::with_draw_target(
            Some(total.as_secs().max(1)),
            if self.live {
                ProgressDrawTarget::stdout()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        bar.set_style(
            ProgressStyle::with_template("  {elapsed_precise} [{bar:24}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = State {
            bar: Some(bar),
            ..State::default()
        };
    }

    /// Ends the progress line, leaving its last figures on screen.
    fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = state.bar.take() {
            bar.finish();
        }
        if !self.live {
            println!("  {}", figures(&state.previous, &state.latest));
        }
    }

    /// The drill's verdict and figures.
    pub fn summary(&self, report: &Report) {
        let text = report.summary();
        let (verdict, rest) = text.split_once(':').unwrap_or((&text, ""));
        let verdict = if report.passed {
            self.paint("32;1", verdict)
        } else {
            self.paint("31;1", verdict)
        };
        println!("\n{verdict}:{rest}");
    }

    fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colors {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_string()
        }
    }
}

impl Progress for Console {
    fn begin(&self, total: Duration) {
        self.start(total);
    }

    fn end(&self) {
        self.finish();
    }

    fn tick(&self, tick: Tick) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if tick.elapsed.saturating_sub(state.previous.elapsed) >= Duration::from_secs(1) {
            state.previous = state.latest;
        }
        state.latest = tick;
        let message = figures(&state.previous, &tick);
        if let Some(bar) = &state.bar {
            bar.set_position(tick.elapsed.as_secs());
            bar.set_message(message.clone());
        }
        if !self.live && tick.elapsed >= state.last_plain + PLAIN_EVERY {
            state.last_plain = tick.elapsed;
            println!("  {:>5.0} s  {message}", tick.elapsed.as_secs_f64());
        }
    }

    fn chaos(&self, event: &ChaosEvent) {
        let text = format!(
            "  {:>5.1} s  {} {} {} ({})",
            event.at_ms as f64 / 1000.0,
            self.paint("33;1", "chaos:"),
            event.action,
            event.part,
            event.outcome
        );
        self.line(&text);
    }
}

/// `customers 300/s  answered 597 req/s  errors 0  p99 38.2 ms`, rates
/// over the last second.
fn figures(before: &Tick, now: &Tick) -> String {
    let seconds = now
        .elapsed
        .saturating_sub(before.elapsed)
        .as_secs_f64()
        .max(0.001);
    let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
    format!(
        "customers {:.0}/s  answered {:.0} req/s  errors {}  p99 {:.1} ms",
        rate(now.offered, before.offered),
        rate(now.answered, before.answered),
        now.errors,
        now.p99_ms
    )
}

/// No one is watching (tests, a library caller).
#[derive(Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn tick(&self, _: Tick) {}
    fn chaos(&self, _: &ChaosEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_over_the_last_second() {
        let before = Tick {
            elapsed: Duration::from_secs(10),
            offered: 1_000,
            answered: 900,
            errors: 0,
            p99_ms: 1.0,
        };
        let now = Tick {
            elapsed: Duration::from_millis(11_000),
            offered: 1_800,
            answered: 1_700,
            errors: 2,
            p99_ms: 38.24,
        };
        assert_eq!(
            figures(&before, &now),
            "customers 800/s  answered 800 req/s  errors 2  p99 38.2 ms"
        );
    }
}
