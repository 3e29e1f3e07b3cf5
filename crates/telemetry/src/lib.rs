//! What every flashguard server shares to be observable: the tracing
//! subscriber (installed only by the binary), the process collector, and the
//! `/metrics`, `/healthz` and `/readyz` answers.

mod bearer;
mod config_file;
mod endpoints;
mod failed_auth;
mod log_file;
mod process;
mod timeline;
mod tracing_init;

pub use bearer::{check_bearer, BearerRefusal};
pub use config_file::{parse_toml, read_toml, ConfigFileError};
pub use endpoints::{
    healthz, json_error, json_error_body, json_rejection_detail, metrics_response,
    readiness_response,
};
pub use failed_auth::{limit_failed_auth, FailedAuth};
pub use log_file::{BoundedLog, DEFAULT_LOG_BYTES};
pub use process::{ProcessCollector, ProcessStats};
pub use timeline::{ChaosAction, EventKind, UnknownKind};
pub use tracing_init::{colors_for, init_tracing, LogSetup, TerminalLog};

/// Now, as Unix milliseconds: the timestamps parts exchange (events,
/// samples, incidents).
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An RFC 3339 time as Unix milliseconds; the error says what was wrong,
/// for a config error to carry with its field.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|err| format!("{text:?} is not an RFC 3339 time: {err}"))
}

/// Unix milliseconds as RFC 3339 in UTC (what JSON APIs, feeds and pages
/// show people and other tools).
pub fn rfc3339(unix_ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| unix_ms.to_string())
}
