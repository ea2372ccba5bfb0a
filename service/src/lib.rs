//! What every Chorus role shares, so that ingest, fanout and edge never import each other:
//!
//! - [`kafka`]: typed Kafka settings turned into librdkafka configuration in one place, topic creation,
//!   and how librdkafka's asynchronous errors are reported.
//! - [`auth`]: bearer tokens (JWT, HS256 or RS256) and the roles they carry.
//! - [`credential`]: the secrets Chorus's processes present to each other (the internal link's token, the
//!   admin token), compared in constant time and never shown.
//! - [`admin`]: the admin port every role serves (`/metrics`, `/healthz`, `/readyz`).
//! - [`serve`]: how every listener is served: header, body and idle timeouts, and a cap on connections that
//!   have not sent their request yet.
//! - [`metrics`]: a role's Prometheus metrics, each created and registered in one call.
//! - [`problem`]: RFC 9457 problem documents, the body of every refusal ingest and edges answer.
//! - [`shutdown`]: the one shutdown path (a signal future feeding a cancellation token).
//! - [`telemetry`]: tracing set-up (env filter, optional JSON lines).
//! - [`registry`]: the optional Confluent-compatible Schema Registry.
//! - [`clock`]: wall-clock milliseconds, the unit of every timestamp in Chorus's records.

pub mod admin;
pub mod auth;
pub mod clock;
pub mod cors;
pub mod credential;
pub mod kafka;
pub mod metrics;
pub mod problem;
pub mod registry;
pub mod serve;
pub mod shutdown;
pub mod telemetry;

pub use admin::{serve_admin, Readiness};
pub use auth::{AuthArgs, AuthFailure, AuthMode, TokenVerifier};
pub use kafka::{KafkaArgs, KafkaSetupError};
pub use problem::{Challenge, Problem, ProblemType};
pub use serve::{ServeArgs, Server};
pub use shutdown::shutdown_signal;

/// Parses a role's configuration from command-line style arguments (defaults for everything not given).
/// The binary flattens the same `Args` structs into its subcommands; tests and `chorus dev` build them here.
pub fn parse_args<T: clap::Args>(args: &[&str]) -> Result<T, clap::Error> {
    #[derive(clap::Parser)]
    struct Wrapper<A: clap::Args> {
        #[command(flatten)]
        inner: A,
    }
    let argv = std::iter::once("chorus").chain(args.iter().copied());
    <Wrapper<T> as clap::Parser>::try_parse_from(argv).map(|w| w.inner)
}
