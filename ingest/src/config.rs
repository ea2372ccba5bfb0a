//! Ingest options. Flags win over environment variables, which win over the defaults shown.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct IngestConfig {
    /// Address of the public HTTP API.
    #[arg(
        long = "listen",
        env = "CHORUS_INGEST_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Address of the admin port (/metrics, /healthz, /readyz).
    #[arg(
        long = "admin-listen",
        env = "CHORUS_INGEST_ADMIN_LISTEN",
        default_value = "127.0.0.1:9180"
    )]
    pub admin_listen: SocketAddr,
    /// Largest request body accepted, in bytes (larger gets 413).
    #[arg(long, env = "CHORUS_INGEST_MAX_BODY_BYTES", default_value_t = 4096)]
    pub max_body_bytes: usize,
    /// How long a write may wait for Kafka's acknowledgement before the client gets 503.
    #[arg(long, env = "CHORUS_INGEST_PRODUCE_TIMEOUT_MS", default_value_t = 5000)]
    pub produce_timeout_ms: u64,
    /// Most messages waiting in the producer queue; beyond it requests get 503 at once.
    #[arg(
        long,
        env = "CHORUS_INGEST_PRODUCER_QUEUE_MAX",
        default_value_t = 100_000
    )]
    pub producer_queue_max: usize,
    /// Header carrying the user id, set by a trusted gateway in front of ingest.
    #[arg(long, env = "CHORUS_INGEST_USER_HEADER", default_value = "x-user-id")]
    pub user_header: String,
}

impl IngestConfig {
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms.max(1))
    }
}
