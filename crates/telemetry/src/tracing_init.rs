use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber: logs go to standard error so that standard
/// output stays free for the `listening on` line that tests and the stack
/// wait for. `RUST_LOG` overrides the default level (`info`).
pub fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests that start several servers in one process) is not
    // an error worth stopping for.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
