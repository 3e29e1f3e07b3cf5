//! Where the shop keeps products, orders and idempotency answers.
//!
//! One trait, two stores: SQLite (a file several shop processes share) and
//! PostgreSQL (shops on several machines). Both run the same SQL through
//! [`sql::SqlEngine`]; each store owns what really differs between the two
//! engines: how to connect and how to make the connection safe for sharing.

mod placement;
mod postgres;
mod sql;
mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{InventoryLine, OrderRecord, OrderRequest, Product};
pub use placement::{Decision, Outcome, StoredAnswer};
pub use postgres::PostgresStore;
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

/// How a store failed, carrying the one fact callers decide on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or has no free connection in time;
    /// callers answer 503 `unavailable` and the shop marks itself not ready.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Another writer won a race (deadlock, busy file, key written by another
    /// process); running the same work again is safe and will succeed.
    #[error("store contention, retry: {0}")]
    Contention(String),
    /// A change the store refuses, such as setting stock below units sold.
    #[error("{0}")]
    Refused(String),
    /// Anything else: a bug or a broken schema. Never retried.
    #[error("store failure: {0}")]
    Internal(#[source] sqlx::Error),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Settings every store takes.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a caller waits for a connection before giving up.
    pub acquire_timeout: Duration,
    /// How long an idempotency answer is kept.
    pub idempotency_ttl: Duration,
    /// SQLite only: `synchronous` pragma (`full` survives power loss).
    pub sqlite_synchronous: Synchronous,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_millis(1000),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            sqlite_synchronous: Synchronous::Full,
        }
    }
}

/// The database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// For logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// SQLite's `synchronous` pragma: how much of a commit reaches the disk
/// before it returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives a process crash, not always a power cut (in WAL mode).
    Normal,
    /// Survives a power cut: an acknowledged order is on disk.
    #[default]
    Full,
    /// As full, and the directory too.
    Extra,
}

impl Synchronous {
    /// As the pragma takes it.
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
            Synchronous::Extra => "EXTRA",
        }
    }
}

/// Was a product created or an existing one replaced?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Created,
    Replaced,
}

/// Pool figures for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
    pub max: u32,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Which engine this is.
    fn engine(&self) -> Engine;
    /// Applies pending migrations; safe to run from several processes.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// A cheap round trip that proves the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    async fn list_products(&self) -> Result<Vec<Product>, StoreError>;
    async fn product(&self, sku: &str) -> Result<Option<Product>, StoreError>;
    /// Creates or replaces a product; units already sold are kept.
    async fn upsert_product(&self, product: &Product, now_ms: i64) -> Result<Upsert, StoreError>;
    /// Creates the product only if no product has that SKU yet.
    async fn insert_product_if_absent(
        &self,
        product: &Product,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Decides and records a batch of orders for one SKU in one transaction:
    /// orders and their idempotency answers commit together or not at all.
    async fn place_orders(
        &self,
        sku: &str,
        requests: &[OrderRequest],
        now_ms: i64,
    ) -> Result<Vec<Decision>, StoreError>;
    async fn order(&self, order_id: &str) -> Result<Option<OrderRecord>, StoreError>;
    /// Up to `limit` orders after the given (created_at, order_id) position,
    /// oldest first, for an export that never holds every order in memory.
    async fn orders_after(
        &self,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<(i64, OrderRecord)>, StoreError>;
    async fn inventory(&self) -> Result<Vec<InventoryLine>, StoreError>;
    /// Deletes idempotency answers that expired; returns how many.
    async fn purge_expired_keys(&self, now_ms: i64) -> Result<u64, StoreError>;
    fn pool_stats(&self) -> PoolStats;
    async fn close(&self);
}

/// Opens the store a URL names: `sqlite://PATH` or `postgres://...`.
/// Connections are made lazily so a shop starts (and reports itself not
/// ready) even while its database is down.
pub fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, OpenError> {
    sqlx::any::install_default_drivers();
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStore::open(path, options)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PostgresStore::open(url, options)?));
    }
    Err(OpenError::UnknownScheme(redact(url)))
}

/// Why a store URL could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database URL `{0}` must start with sqlite:// or postgres://")]
    UnknownScheme(String),
    #[error("database URL is not valid: {0}")]
    BadUrl(#[source] sqlx::Error),
    #[error("sqlite path must not be empty (try sqlite://flashguard.db)")]
    EmptyPath,
}

/// A URL fit for logs: the password, if any, replaced.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("postgres://shop:secret@db:5432/store"),
            "postgres://shop:***@db:5432/store"
        );
        assert_eq!(
            redact("postgres://root@127.0.0.1/test"),
            "postgres://root@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
