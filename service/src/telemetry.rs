//! Tracing set-up shared by every role: `RUST_LOG`-style filter, human or JSON lines (for ELK).

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber. `filter` is used when `RUST_LOG` is not set.
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr);
    // A second call (tests start several roles in one process) keeps the first subscriber.
    let _already_set = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
