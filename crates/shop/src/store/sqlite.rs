//! SQLite: one file that several shop processes on one machine share.
//!
//! What makes that safe: WAL (readers never block the writer), a busy
//! timeout (a writer waits for the lock instead of failing), transactions
//! that write first (see `SqlStore::lock_product`), and `synchronous=FULL`
//! by default so an acknowledged order survives a power cut, not only a
//! process crash.

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::Executor;

use super::sql::SqlStore;
use super::{Engine, OpenError, StoreOptions};

/// How long a writer waits for another process's write lock, in ms.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Constructs the SQLite flavour of [`SqlStore`].
pub struct SqliteStore;

impl SqliteStore {
    #[allow(clippy::new_ret_no_self)]
    pub fn open(path: &str, options: &StoreOptions) -> Result<SqlStore, OpenError> {
        if path.is_empty() || path.starts_with('?') {
            return Err(OpenError::EmptyPath);
        }
        // Create the file on first use unless the URL says otherwise.
        let url = if path.contains("mode=") {
            format!("sqlite://{path}")
        } else if path.contains('?') {
            format!("sqlite://{path}&mode=rwc")
        } else {
            format!("sqlite://{path}?mode=rwc")
        };
        let connect = AnyConnectOptions::from_str(&url).map_err(OpenError::BadUrl)?;
        let synchronous = options.sqlite_synchronous.pragma();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |connection, _meta| {
                // The busy timeout first: even switching to WAL (a no-op once
                // the file is in WAL) needs a lock another process may hold.
                let pragmas = format!(
                    "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
                );
                Box::pin(async move {
                    connection.execute(pragmas.as_str()).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(connect);
        let file = path.split('?').next().unwrap_or(path);
        let lock = std::path::PathBuf::from(format!("{file}-migrate.lock"));
        Ok(SqlStore::new(pool, Engine::Sqlite, options).with_migrate_lock(lock))
    }
}
