//! One supervised process: its spec, its state, and the loop that starts
//! it, watches it, logs why it died and restarts it with back-off.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flashguard_telemetry::EventKind;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::logs::PartLog;
use crate::timeline::Timeline;

/// A part that ran this long before dying counts as healthy again: its
/// next crash restarts it after the shortest delay.
const STABLE_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Shop,
    Backup,
    Gateway,
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartState {
    Starting,
    Running,
    /// SIGSTOPped through the control API.
    Stopped,
    /// Died; waiting out its back-off.
    Restarting,
    /// Stopped for good (the stack is shutting down).
    Exited,
}

/// A row of `GET /parts`.
#[derive(Debug, Clone, Serialize)]
pub struct PartView {
    pub name: String,
    pub kind: Kind,
    pub pid: Option<u32>,
    pub state: PartState,
    pub addr: Option<String>,
    /// The gateway's admin API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_addr: Option<String>,
    pub restarts: u32,
    pub last_exit: Option<String>,
}

/// How to start a part; `listen` is fixed after the first start, so a
/// restarted shop comes back where the gateway expects it.
#[derive(Debug, Clone)]
pub(crate) struct PartSpec {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) exe: PathBuf,
    /// Arguments after the subcommand, without `--listen`.
    pub(crate) args: Vec<String>,
    pub(crate) listen: String,
    pub(crate) admin_token: String,
    /// Where deaths and restarts are told.
    pub(crate) timeline: Arc<Timeline>,
    /// Where its log (standard error) goes.
    pub(crate) log: Arc<PartLog>,
    /// The cgroup that holds its CPU quota: every process it starts goes
    /// in.
    pub(crate) cpu_group: Option<PathBuf>,
}

#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) spec: PartSpec,
    view: Mutex<PartView>,
    /// The address it printed (`listening on`), once known.
    addr: watch::Sender<Option<String>>,
    restart: Notify,
}

/// Why the supervision loop ended a child.
enum Ending {
    Exited(std::io::Result<ExitStatus>),
    Restart,
    Shutdown,
}

impl Part {
    pub(crate) fn new(spec: PartSpec) -> Arc<Part> {
        let view = PartView {
            name: spec.name.clone(),
            kind: spec.kind,
            pid: None,
            state: PartState::Starting,
            addr: None,
            admin_addr: None,
            restarts: 0,
            last_exit: None,
        };
        Arc::new(Part {
            spec,
            view: Mutex::new(view),
            addr: watch::channel(None).0,
            restart: Notify::new(),
        })
    }

    pub(crate) fn view(&self) -> PartView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, change: impl FnOnce(&mut PartView)) {
        self.update_and_read(change);
    }

    fn update_and_read<T>(&self, change: impl FnOnce(&mut PartView) -> T) -> T {
        change(&mut self.view.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.view().pid
    }

    pub(crate) fn set_state(&self, state: PartState) {
        self.update(|view| view.state = state);
    }

    /// Waits until the part has printed its address.
    pub(crate) async fn addr(&self) -> Option<String> {
        let mut addr = self.addr.subscribe();
        addr.wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|a| a.clone())
    }

    pub(crate) fn request_restart(&self) {
        self.restart.notify_one();
    }

    /// Runs the part until `stopping` turns true, restarting it whenever it
    /// dies. Returns once the last child has exited.
    pub(crate) async fn supervise(
        self: Arc<Self>,
        mut stopping: watch::Receiver<bool>,
        backoff: (Duration, Duration),
        grace: Duration,
    ) {
        let mut listen = self.spec.listen.clone();
        let mut crashes_in_a_row = 0u32;
        let mut first_start = true;
        loop {
            if *stopping.borrow() {
                break;
            }
            self.set_state(PartState::Starting);
            let started = Instant::now();
            let ending = match self.start(&listen).await {
                Ok((mut child, addr)) => {
                    // Held while the child runs: `wait` would close it, and
                    // the child takes a closed stdin for its parent's death.
                    let _parent_alive = child.stdin.take();
                    listen = addr.trim_start_matches("http://").to_string();
                    let restarts = self.update_and_read(|view| {
                        view.addr = Some(addr.clone());
                        view.state = PartState::Running;
                        view.restarts
                    });
                    if !first_start {
                        self.spec.timeline.record(
                            EventKind::PartRestarted,
                            &self.spec.name,
                            format!(
                                "{} restarted (restart {restarts}) on {addr}",
                                self.spec.name
                            ),
                            serde_json::json!({ "restarts": restarts, "pid": child.id() }),
                        );
                    }
                    first_start = false;
                    self.addr.send_replace(Some(addr));
                    let ending = tokio::select! {
                        status = child.wait() => Ending::Exited(status),
                        () = self.restart.notified() => Ending::Restart,
                        _ = stopping.wait_for(|stop| *stop) => Ending::Shutdown,
                    };
                    match ending {
                        Ending::Exited(status) => Ending::Exited(status),
                        other => {
                            stop_child(&mut child, grace).await;
                            other
                        }
                    }
                }
                Err(err) => Ending::Exited(Err(err)),
            };
            let cause = match &ending {
                Ending::Exited(Ok(status)) => {
                    let (cause, signal, code) = describe(*status);
                    self.spec.timeline.record(
                        EventKind::PartExited,
                        &self.spec.name,
                        format!("{} {cause}", self.spec.name),
                        serde_json::json!({ "cause": cause, "signal": signal, "code": code }),
                    );
                    cause
                }
                Ending::Exited(Err(err)) => format!("could not start: {err}"),
                Ending::Restart => "restarted through the control API".to_string(),
                Ending::Shutdown => {
                    self.update(|view| {
                        view.state = PartState::Exited;
                        view.pid = None;
                    });
                    break;
                }
            };
            tracing::warn!(part = %self.spec.name, cause, "part ended; restarting");
            self.update(|view| {
                view.state = PartState::Restarting;
                view.pid = None;
                view.restarts += 1;
                view.last_exit = Some(cause);
            });
            if matches!(ending, Ending::Restart) {
                continue;
            }
            crashes_in_a_row = if started.elapsed() > STABLE_AFTER {
                1
            } else {
                crashes_in_a_row + 1
            };
            let delay = backoff
                .0
                .saturating_mul(1 << (crashes_in_a_row - 1).min(16))
                .min(backoff.1);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                // An operator (or the drill) may restart it before its
                // back-off is over.
                () = self.restart.notified() => {}
                _ = stopping.wait_for(|stop| *stop) => {
                    self.set_state(PartState::Exited);
                    break;
                }
            }
        }
    }

    /// Starts the child and reads its address from its first line(s).
    async fn start(&self, listen: &str) -> std::io::Result<(Child, String)> {
        let subcommand = match self.spec.kind {
            Kind::Shop | Kind::Backup => "shop",
            Kind::Gateway => "gateway",
            Kind::Monitor => "monitor",
        };
        let mut child = Command::new(&self.spec.exe)
            .arg(subcommand)
            .args(["--listen", listen])
            .args(&self.spec.args)
            .env("FLASHGUARD_ADMIN_TOKEN", &self.spec.admin_token)
            // The child exits when this pipe closes, that is when the stack
            // dies, even by SIGKILL.
            .env("FLASHGUARD_EXIT_WITH_PARENT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id();
        self.update(|view| view.pid = pid);
        if let (Some(group), Some(pid)) = (&self.spec.cpu_group, pid) {
            if let Err(err) = crate::cpu_quota::place(group, pid) {
                tracing::warn!(part = %self.spec.name, %err, "could not put the part under its CPU quota");
            }
        }
        if let Some(stderr) = child.stderr.take() {
            self.spec.log.follow(stderr);
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .map_err(|_| std::io::Error::other("no `listening on` line within 30 s"))??
            .ok_or_else(|| std::io::Error::other("exited before printing its address"))?;
        let addr = first
            .strip_prefix("listening on ")
            .ok_or_else(|| std::io::Error::other(format!("unexpected first line {first:?}")))?
            .to_string();
        if self.spec.kind == Kind::Gateway {
            if let Ok(Some(line)) = lines.next_line().await {
                let admin = line.strip_prefix("admin on ").map(str::to_string);
                self.update(|view| view.admin_addr = admin);
            }
        }
        // Keep reading so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((child, addr))
    }
}

/// Waits until `GET {addr}{path}` answers 200 (a plain HTTP/1.0 request,
/// so the supervisor needs no HTTP client), or `within` passes.
/// A process's CPU time so far (user and system), in s, from
/// `/proc/PID/stat`; None once it is gone.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name may hold spaces and parentheses: count from the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (user, system): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // Linux reports them in USER_HZ, 100 a second on every architecture it
    // exposes to user space.
    Some((user + system) as f64 / 100.0)
}

pub(crate) async fn wait_ready(addr: &str, path: &str, within: Duration) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = addr.trim_start_matches("http://");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(host)).await
        {
            let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
            let mut head = [0u8; 12];
            let asked = stream.write_all(request.as_bytes()).await.is_ok();
            if asked && stream.read_exact(&mut head).await.is_ok() && head.ends_with(b" 200") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// SIGTERM, then SIGKILL after `grace`.
async fn stop_child(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id() {
        signal(pid, nix::sys::signal::Signal::SIGCONT);
        signal(pid, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Sends `signal` to `pid`; false if there is no such process.
pub(crate) fn signal(pid: u32, signal: nix::sys::signal::Signal) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).is_ok()
}

/// "exited with code 3" or "killed by SIGKILL", with the signal's name or
/// the exit code.
fn describe(status: ExitStatus) -> (String, Option<String>, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (format!("exited with code {code}"), None, Some(code)),
        (None, Some(number)) => {
            let name = match nix::sys::signal::Signal::try_from(number) {
                Ok(signal) => signal.to_string(),
                Err(_) => format!("signal {number}"),
            };
            (format!("killed by {name}"), Some(name), None)
        }
        _ => ("ended".to_string(), None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::cpu_seconds;

    #[test]
    fn a_process_s_cpu_time_grows_as_it_works_and_a_gone_one_has_none() {
        let me = std::process::id();
        let before = cpu_seconds(me).expect("this process exists");
        // Work until a tenth of a second of CPU shows (a busy machine may
        // give this thread less than the wall clock), for 10 s at most.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.1 && started.elapsed() < std::time::Duration::from_secs(10) {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = cpu_seconds(me).unwrap();
        }
        assert!(after - before >= 0.1, "{before} then {after}");
        // Beyond the kernel's largest pid: no such process.
        assert_eq!(cpu_seconds(u32::MAX), None);
    }
}
