//! The global tracing subscriber, installed by the binary only. Servers log
//! to standard error (standard output stays free for the `listening on`
//! line that tests and the stack wait for). Commands a person watches —
//! `up`, `rehearse`, `drill` — keep the terminal for their own progress and
//! send the full log to a file, showing on the terminal only what the
//! person must see.

use std::io::IsTerminal;
use std::sync::Arc;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::BoundedLog;

/// What of the log reaches the terminal (standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminalLog {
    /// Everything at `info` and above (`RUST_LOG` overrides): servers, `-v`.
    Everything,
    /// Warnings and errors only: `up`, `drill`.
    Problems,
    /// Nothing: `rehearse` shows its progress instead.
    Nothing,
}

/// Where the log goes.
#[derive(Debug, Clone)]
pub struct LogSetup {
    /// JSON lines instead of text.
    pub json: bool,
    pub terminal: TerminalLog,
    /// The full log (`info`, or `RUST_LOG`), besides the terminal.
    pub file: Option<Arc<BoundedLog>>,
}

/// Whether to color what goes to a stream: only a terminal, and never when
/// `NO_COLOR` is set (https://no-color.org).
pub fn colors_for(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. A second call (tests that start several
/// servers in one process) changes nothing.
pub fn init_tracing(setup: LogSetup) {
    let env = || EnvFilter::try_from_default_env().ok();
    // `RUST_LOG` decides what shows, whatever the command would show.
    let terminal_filter = match (setup.terminal, env()) {
        (_, Some(filter)) => filter,
        (TerminalLog::Nothing, None) => EnvFilter::default().add_directive(LevelFilter::OFF.into()),
        (TerminalLog::Everything, None) => EnvFilter::new("info"),
        (TerminalLog::Problems, None) => EnvFilter::new("warn"),
    };
    let terminal = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colors_for(&std::io::stderr()));
    let terminal = if setup.json {
        terminal.json().with_filter(terminal_filter).boxed()
    } else {
        terminal.with_filter(terminal_filter).boxed()
    };
    let file = setup.file.map(|file| {
        fmt::layer()
            .with_writer(file)
            .with_ansi(false)
            .with_filter(env().unwrap_or_else(|| EnvFilter::new("info")))
    });
    let _ = tracing_subscriber::registry()
        .with(terminal)
        .with(file)
        .try_init();
}
