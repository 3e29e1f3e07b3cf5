//! flashguard's gateway: the load balancer in front of the shops.
//!
//! The request path is hyper 1: its server, and its connection-level
//! client with a pool per serving thread (`proxy::upstream`); `proxy`
//! holds the retry rule, `balance` the choice of backend,
//! `backend` each backend's health, ejection, latency and slow start,
//! `checker` the active health checks, `admin` the operator's API.

mod admin;
mod backend;
mod balance;
mod checker;
pub mod config;
mod gateway;
mod idle;
mod metrics;
mod proxy;
mod published;
mod server;
mod traffic;

pub use config::{BackendFile, BackendSpec, Config, ConfigError, ConfigFile, Pool};
pub use server::{bind, run, GatewayError, Listeners};
