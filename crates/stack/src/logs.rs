//! Where the parts' logs go. Each part's standard error (its log) is copied
//! line by line into its own file, `DIR/NAME.log`, bounded in size; what
//! reaches the terminal is the person's choice: everything (`-v`), only
//! warnings and errors (`up`), or nothing (`rehearse`, which shows its
//! progress instead).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use flashguard_telemetry::{BoundedLog, DEFAULT_LOG_BYTES};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// What of a part's log reaches the terminal (standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Everything,
    /// Lines logged at WARN or ERROR.
    Problems,
    Nothing,
}

/// Where every part's log goes.
#[derive(Debug, Clone)]
pub struct LogPolicy {
    /// The folder of the log files; `None` keeps no files.
    pub dir: Option<PathBuf>,
    pub echo: Echo,
}

impl LogPolicy {
    /// Every line to the terminal, no files: what tests and embedders get.
    pub fn terminal() -> LogPolicy {
        LogPolicy {
            dir: None,
            echo: Echo::Everything,
        }
    }
}

/// One part's log.
#[derive(Debug)]
pub(crate) struct PartLog {
    name: String,
    file: Option<Arc<BoundedLog>>,
    echo: Echo,
}

impl PartLog {
    /// Creates `DIR/NAME.log` (emptied if it exists). A file that cannot be
    /// made is said once; the part still runs.
    pub(crate) fn open(policy: &LogPolicy, name: &str) -> Arc<PartLog> {
        let file = policy.dir.as_ref().and_then(|dir| {
            let path = dir.join(format!("{name}.log"));
            BoundedLog::create(&path, DEFAULT_LOG_BYTES)
                .map_err(|err| {
                    tracing::warn!(path = %path.display(), %err, "cannot write a part's log file");
                })
                .ok()
                .map(Arc::new)
        });
        Arc::new(PartLog {
            name: name.to_string(),
            file,
            echo: policy.echo,
        })
    }

    /// Copies a child's standard error until it closes. One reader per
    /// child: a restarted part's lines follow its previous run's.
    pub(crate) fn follow(self: &Arc<Self>, stream: impl AsyncRead + Unpin + Send + 'static) {
        let log = Arc::clone(self);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.write(&line);
            }
        });
    }

    fn write(&self, line: &str) {
        if let Some(file) = &self.file {
            let _ = writeln!(&**file, "{line}");
        }
        let echo = match self.echo {
            Echo::Everything => true,
            Echo::Problems => is_problem(line),
            Echo::Nothing => false,
        };
        if echo {
            eprintln!("[{}] {line}", self.name);
        }
    }
}

/// Whether a line of tracing's text format (`TIME LEVEL target: ...`) was
/// logged at WARN or ERROR; a line of another shape (a panic message) is
/// shown too.
fn is_problem(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let _time = words.next();
    match words.next() {
        Some("WARN" | "ERROR") => true,
        Some("INFO" | "DEBUG" | "TRACE") => false,
        _ => !line.trim().is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_errors_and_strange_lines_are_problems() {
        let at = "2026-12-01T07:00:00.123456Z";
        assert!(is_problem(&format!(
            "{at}  WARN flashguard_stack: part ended"
        )));
        assert!(is_problem(&format!(
            "{at} ERROR flashguard_shop: request failed"
        )));
        assert!(!is_problem(&format!(
            "{at}  INFO flashguard_shop: listening"
        )));
        assert!(is_problem("thread 'main' panicked at src/main.rs:1:1:"));
        assert!(!is_problem("   "));
    }

    #[tokio::test]
    async fn a_parts_log_goes_to_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let policy = LogPolicy {
            dir: Some(dir.path().join("logs")),
            echo: Echo::Nothing,
        };
        let log = PartLog::open(&policy, "shop-1");
        let (mut writer, reader) = tokio::io::duplex(1024);
        log.follow(reader);
        tokio::io::AsyncWriteExt::write_all(&mut writer, b"one\ntwo\n")
            .await
            .unwrap();
        drop(writer);
        let path = dir.path().join("logs/shop-1.log");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap_or_default() != "one\ntwo\n" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lines reach the file"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
