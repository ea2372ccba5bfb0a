//! Edge options. Flags win over environment variables, which win over the defaults shown.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// Address viewers connect to (WebSocket).
    #[arg(
        long = "listen",
        env = "CHORUS_EDGE_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,
    /// Internal address on which fanout pushes batches to this edge.
    #[arg(
        long = "internal-listen",
        env = "CHORUS_EDGE_INTERNAL_LISTEN",
        default_value = "127.0.0.1:8091"
    )]
    pub internal_listen: SocketAddr,
    /// Address of the admin port (/metrics, /healthz, /readyz).
    #[arg(
        long = "admin-listen",
        env = "CHORUS_EDGE_ADMIN_LISTEN",
        default_value = "127.0.0.1:9181"
    )]
    pub admin_listen: SocketAddr,
    /// Host fanout uses to reach the internal address (advertised in the edge's lease); defaults to its IP.
    #[arg(long, env = "CHORUS_EDGE_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// This edge's id; a fresh one per process by default, so a restarted edge never inherits stale state.
    #[arg(long, env = "CHORUS_EDGE_ID")]
    pub edge_id: Option<String>,
    /// How long a lease is valid; it is renewed every third of this.
    #[arg(long, env = "CHORUS_EDGE_LEASE_TTL_MS", default_value_t = 10_000)]
    pub lease_ttl_ms: u64,
    /// How long a stream's subscription outlives its last viewer on this edge (absorbs churn).
    #[arg(
        long,
        env = "CHORUS_EDGE_SUBSCRIPTION_LINGER_MS",
        default_value_t = 2_000
    )]
    pub subscription_linger_ms: u64,
    /// Frames buffered per stream for viewers that are behind; a viewer further behind gets a `gap` frame.
    #[arg(long, env = "CHORUS_EDGE_STREAM_BUFFER_FRAMES", default_value_t = 256)]
    pub stream_buffer_frames: usize,
    /// Event ids remembered per stream to drop repeats (Kafka to edge is at-least-once).
    #[arg(long, env = "CHORUS_EDGE_DEDUP_WINDOW", default_value_t = 4096)]
    pub dedup_window: usize,
    /// Largest message a viewer may send, in bytes.
    #[arg(long, env = "CHORUS_EDGE_MAX_INBOUND_BYTES", default_value_t = 4096)]
    pub max_inbound_bytes: usize,
    /// Heartbeat interval announced to viewers in `hello`, in milliseconds.
    #[arg(long, env = "CHORUS_EDGE_HEARTBEAT_MS", default_value_t = 15_000)]
    pub heartbeat_ms: u64,
}

impl EdgeConfig {
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms.max(300))
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.subscription_linger_ms)
    }
}
