//! PostgreSQL: the store when shops run on several machines.
//!
//! Every session gets a lock timeout and a statement timeout, so a batch
//! stuck behind a lock gives up (and is retried) instead of holding an order
//! worker forever; and an idle-in-transaction timeout, so a shop that hangs
//! (SIGSTOP, a stalled VM) in the middle of a batch loses its transaction
//! and the hot row's lock instead of blocking every other shop.

use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::Executor;

use super::sql::SqlStore;
use super::{Engine, OpenError, StoreOptions};

/// Constructs the PostgreSQL flavour of [`SqlStore`].
pub struct PostgresStore;

impl PostgresStore {
    #[allow(clippy::new_ret_no_self)]
    pub fn open(url: &str, options: &StoreOptions) -> Result<SqlStore, OpenError> {
        let connect = AnyConnectOptions::from_str(url).map_err(OpenError::BadUrl)?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(|connection, _meta| {
                Box::pin(async move {
                    connection
                        .execute(
                            "SET lock_timeout = '5s'; SET statement_timeout = '15s'; \
                             SET idle_in_transaction_session_timeout = '2s';",
                        )
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(connect);
        Ok(SqlStore::new(pool, Engine::Postgres, options))
    }
}
