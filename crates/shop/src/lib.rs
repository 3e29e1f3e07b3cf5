//! flashguard's shop: the catalog, flash-sale stock with sale windows and
//! per-customer limits, idempotent order placement that never oversells, the
//! storefront pages, and the admin API the drill's oracle reads.
//!
//! Start at [`run`]; the request path is described in `http/mod.rs`, the
//! order path in `orders/desk.rs`, and the storage in `store/mod.rs`.

pub mod config;
pub mod demo;
mod error;
mod health;
mod http;
pub mod model;
pub mod orders;
mod server;
pub mod store;

pub use config::{Config, ConfigError, ConfigFile};
pub use error::ApiError;
pub use http::{router, AppState};
pub use server::{build_state, run, Error};
