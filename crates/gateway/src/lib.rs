//! flashguard's gateway: the load balancer in front of the shops.
//!
//! The request path is the gateway's own HTTP/1.1 (`http1`: heads parsed
//! with httparse and passed on byte for byte), one task per client
//! connection that also talks to the backend (`proxy::client`,
//! `proxy::upstream`, `proxy::relay`); `proxy` holds the retry rule, `balance` the choice of backend,
//! `backend` each backend's health, ejection, latency and slow start,
//! `checker` the active health checks, `admin` the operator's API.

mod admin;
mod answers;
mod backend;
mod balance;
mod checker;
pub mod config;
mod discovery;
pub mod edge;
mod gateway;
mod html;
mod http1;
mod metrics;
mod per_client;
mod permits;
mod proxy;
mod published;
mod queue;
pub mod room;
mod server;
mod stall;
pub mod status;
mod threads;
mod traffic;

pub use config::{BackendFile, BackendSpec, Config, ConfigError, ConfigFile, Flags, Pool};
pub use server::{bind, check_certificates, check_tls, run, GatewayError, Listeners, Source};
