//! Edge options. Flags win over environment variables, which win over the defaults shown.

use std::net::SocketAddr;
use std::time::Duration;

use chorus_service::credential::{AdminTokenArgs, InternalTokenArgs};
use chorus_service::{AuthArgs, ServeArgs};

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
    /// How often this edge writes its changed viewer counts to `viewer-counts`, in milliseconds (each count is
    /// renewed every third of the lease TTL and counted until the TTL runs out: an edge that died stops
    /// being counted then).
    #[arg(long, env = "CHORUS_EDGE_VIEWER_COUNT_MS", default_value_t = 100)]
    pub viewer_count_ms: u64,
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
    /// How long a viewer may be away and resume with its cursor, in milliseconds: the stream's frames are
    /// kept this long here (at most `--stream-buffer-frames`), and fanout keeps its routed events for its own
    /// `--resume-window-ms`, for a viewer whose edge no longer holds them.
    #[arg(long, env = "CHORUS_EDGE_RESUME_WINDOW_MS", default_value_t = 120_000)]
    pub resume_window_ms: u64,
    /// Longest a resuming viewer's `hello` waits for fanout's replay of what it missed, in milliseconds.
    #[arg(long, env = "CHORUS_EDGE_RESUME_TIMEOUT_MS", default_value_t = 2_000)]
    pub resume_timeout_ms: u64,
    /// Events of one stream go out together as one frame, encoded once for all its viewers, after waiting at
    /// most this many milliseconds when the stream has `--coalesce-full-viewers` viewers or more on this edge
    /// (0: a frame per batch from fanout, as it arrives).
    #[arg(long, env = "CHORUS_EDGE_COALESCE_MS", default_value_t = 20)]
    pub coalesce_ms: u64,
    /// The wait of a stream with a single viewer here; it grows linearly with the viewers up to
    /// `--coalesce-ms`: few viewers get the lowest latency, many viewers fewer writes.
    #[arg(long, env = "CHORUS_EDGE_COALESCE_MIN_MS", default_value_t = 5)]
    pub coalesce_min_ms: u64,
    /// Viewers of a stream on this edge from which its events wait the full `--coalesce-ms`.
    #[arg(
        long,
        env = "CHORUS_EDGE_COALESCE_FULL_VIEWERS",
        default_value_t = 1_000
    )]
    pub coalesce_full_viewers: usize,
    /// Shortest time between two `likes` frames of a stream: likes arriving sooner after the last one (fanout
    /// catching up, frames bunched on the way) are summed into the next (0: sent as they come). Set it to
    /// fanout's `--likes-tick-ms`.
    #[arg(long, env = "CHORUS_EDGE_LIKES_INTERVAL_MS", default_value_t = 200)]
    pub likes_interval_ms: u64,
    /// Event ids remembered per stream to drop repeats (Kafka to edge is at-least-once).
    #[arg(long, env = "CHORUS_EDGE_DEDUP_WINDOW", default_value_t = 4096)]
    pub dedup_window: usize,
    /// A viewer told of a `gap` that has not caught up this long later (more than half of its stream's buffer
    /// still waiting for it at every write since) is disconnected with a `reconnect` frame (`too_slow`).
    #[arg(long, env = "CHORUS_EDGE_SLOW_VIEWER_MS", default_value_t = 5_000)]
    pub slow_viewer_ms: u64,
    /// A write to a viewer that cannot complete in this time (a viewer that stopped reading) ends the
    /// connection.
    #[arg(long, env = "CHORUS_EDGE_WRITE_TIMEOUT_MS", default_value_t = 5_000)]
    pub write_timeout_ms: u64,
    /// Kernel send buffer of each viewer socket, in bytes (0: the system's default). A small one bounds the
    /// memory a slow viewer holds in the kernel, and makes it fall behind, and be told, sooner.
    #[arg(
        long,
        env = "CHORUS_EDGE_SOCKET_SEND_BUFFER_BYTES",
        default_value_t = 0
    )]
    pub socket_send_buffer_bytes: usize,
    /// Largest message a viewer may send, in bytes.
    #[arg(long, env = "CHORUS_EDGE_MAX_INBOUND_BYTES", default_value_t = 4096)]
    pub max_inbound_bytes: usize,
    /// Frames (messages, pings, pongs) a WebSocket viewer may send per second on average, after a first
    /// `--inbound-frames-burst`; one more and it is closed with 1008 (policy violation). A viewer has nothing
    /// to send but the pongs to the edge's pings.
    #[arg(
        long,
        env = "CHORUS_EDGE_MAX_INBOUND_FRAMES_PER_S",
        default_value_t = 5
    )]
    pub max_inbound_frames_per_s: u32,
    /// Frames a WebSocket viewer may send at once (the bucket its per-second rate refills). Small: a viewer
    /// that floods without reading must find the Close after the pongs to its first pings, and a 4 KB
    /// receive buffer holds about a dozen frames.
    #[arg(long, env = "CHORUS_EDGE_INBOUND_FRAMES_BURST", default_value_t = 8)]
    pub inbound_frames_burst: u32,
    /// Most bytes waiting in a WebSocket viewer's write buffer: a frame that does not fit (one larger than
    /// this) cannot be sent, and the viewer is let go. The edge writes one frame at a time and flushes each
    /// pong before reading on, so the buffer holds at most one frame and one pong.
    #[arg(
        long,
        env = "CHORUS_EDGE_MAX_WRITE_BUFFER_BYTES",
        default_value_t = 1 << 20
    )]
    pub max_write_buffer_bytes: usize,
    /// Heartbeat interval announced to viewers in `hello`, in milliseconds: WebSocket pings and SSE comments
    /// go out this often, and a WebSocket viewer silent for two of them is closed.
    #[arg(long, env = "CHORUS_EDGE_HEARTBEAT_MS", default_value_t = 15_000)]
    pub heartbeat_ms: u64,
    /// Shortest lifetime of a connection; each gets a random one between this and `--connection-ttl-max-ms`,
    /// then a `reconnect` frame, so connections made together do not all come back together.
    #[arg(
        long,
        env = "CHORUS_EDGE_CONNECTION_TTL_MIN_MS",
        default_value_t = 1_800_000
    )]
    pub connection_ttl_min_ms: u64,
    /// Longest lifetime of a connection.
    #[arg(
        long,
        env = "CHORUS_EDGE_CONNECTION_TTL_MAX_MS",
        default_value_t = 3_600_000
    )]
    pub connection_ttl_max_ms: u64,
    /// Upper bound of the random delay a `reconnect` frame asks the client to wait.
    #[arg(long, env = "CHORUS_EDGE_RECONNECT_JITTER_MS", default_value_t = 5_000)]
    pub reconnect_jitter_ms: u64,
    /// On shutdown, the window over which viewers are told to reconnect (spread at random within it).
    #[arg(long, env = "CHORUS_EDGE_DRAIN_MS", default_value_t = 10_000)]
    pub drain_ms: u64,
    /// Most viewer connections on this edge; more are refused with 503.
    #[arg(long, env = "CHORUS_EDGE_MAX_CONNECTIONS", default_value_t = 18_000)]
    pub max_connections: usize,
    /// Most viewer connections from one client address; more are refused with 429.
    #[arg(
        long,
        env = "CHORUS_EDGE_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 1_000
    )]
    pub max_connections_per_address: usize,
    /// Origins allowed to connect (comma-separated; empty allows any). Requests from others get 403.
    #[arg(long, env = "CHORUS_EDGE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Require a watch token: a viewer must send a JWT (`Authorization: Bearer <jwt>`) valid for the
    /// `--jwt-*` keys below, or is refused with 401 before any upgrade. Off by default: anyone may watch.
    /// (`--auth` plays no part on an edge.)
    #[arg(long, env = "CHORUS_EDGE_REQUIRE_TOKEN")]
    pub require_token: bool,
    /// The keys, issuer, audience and leeway watch tokens are checked with (used with `--require-token`).
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Header, body and idle timeouts, and the cap on connections still to send their request or upgrade
    /// (public, internal and admin ports).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The token fanout must present on the internal port (required: the edge does not start without it).
    #[command(flatten)]
    pub internal: InternalTokenArgs,
    /// The token of `POST /drain` on the admin port, when set.
    #[command(flatten)]
    pub admin: AdminTokenArgs,
    /// Fastest a partition's position may advance, in offsets per second: a position (from fanout's
    /// heartbeats, or an event's offset) further ahead of the current one than this rate allows since it was
    /// set, and at least one second's worth, is refused and counted, never adopted (0: no bound). Above the
    /// busiest partition's rate: a burst beyond it only delays the position.
    #[arg(long, env = "CHORUS_EDGE_POSITION_MAX_RATE", default_value_t = 50_000)]
    pub position_max_rate: u64,
    /// A fanout session that has not announced a partition for this long no longer holds it: another may
    /// take its position over. Well above fanout's `--heartbeat-ms`.
    #[arg(
        long,
        env = "CHORUS_EDGE_POSITION_OWNER_LAPSE_MS",
        default_value_t = 1_000
    )]
    pub position_owner_lapse_ms: u64,
}

impl EdgeConfig {
    pub fn viewer_count_period(&self) -> Duration {
        Duration::from_millis(self.viewer_count_ms.max(10))
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms.max(300))
    }

    /// A random connection lifetime within the configured range.
    pub fn connection_ttl(&self) -> Duration {
        let (low, high) = (
            self.connection_ttl_min_ms,
            self.connection_ttl_max_ms.max(self.connection_ttl_min_ms),
        );
        Duration::from_millis(rand::random_range(low..=high))
    }

    /// A random delay for a `reconnect` frame.
    pub fn reconnect_delay(&self) -> u64 {
        rand::random_range(0..=self.reconnect_jitter_ms)
    }

    /// A random moment within the drain window.
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(rand::random_range(0..=self.drain_ms))
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.subscription_linger_ms)
    }

    pub fn resume_window(&self) -> Duration {
        Duration::from_millis(self.resume_window_ms)
    }

    pub fn resume_timeout(&self) -> Duration {
        Duration::from_millis(self.resume_timeout_ms)
    }

    pub fn likes_interval(&self) -> Duration {
        Duration::from_millis(self.likes_interval_ms)
    }

    pub fn position_owner_lapse(&self) -> Duration {
        Duration::from_millis(self.position_owner_lapse_ms)
    }
}
