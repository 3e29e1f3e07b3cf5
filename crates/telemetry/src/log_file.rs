//! A log file that cannot fill the disk: writes go through until it holds
//! `max_bytes`, then one line says the rest was dropped, and later writes
//! are counted, not written. Used for the logs of every part that `up` and
//! `rehearse` run, and for their own.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The size a part's log may reach by default: 16 MiB.
pub const DEFAULT_LOG_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct BoundedLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    written: u64,
    max_bytes: u64,
    dropped: u64,
}

impl BoundedLog {
    /// Creates (or empties) the file at `path`.
    pub fn create(path: &Path, max_bytes: u64) -> io::Result<BoundedLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        Ok(BoundedLog {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file: File::create(path)?,
                written: 0,
                max_bytes,
                dropped: 0,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes dropped since the file was full.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).dropped
    }
}

impl Write for &BoundedLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.written + bytes.len() as u64 > inner.max_bytes {
            if inner.dropped == 0 {
                let notice = format!(
                    "\n... log full at {} bytes; later lines are dropped\n",
                    inner.max_bytes
                );
                inner.file.write_all(notice.as_bytes())?;
            }
            inner.written = inner.max_bytes;
            inner.dropped += bytes.len() as u64;
            return Ok(bytes.len());
        }
        inner.file.write_all(bytes)?;
        inner.written += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_log_says_so_once_and_grows_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/part.log");
        let log = BoundedLog::create(&path, 100).unwrap();
        for n in 0..50 {
            writeln!(&log, "line {n:03} of the log").unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("line 000 of the log\n"), "{text}");
        assert_eq!(text.matches("log full").count(), 1, "{text}");
        assert!(text.len() < 100 + 80, "{}", text.len());
        assert!(log.dropped() > 0);
        assert_eq!(log.path(), path);
    }
}
