//! Fanout options. Flags win over environment variables, which win over the defaults shown.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutConfig {
    /// Address of the admin port (/metrics, /healthz, /readyz).
    #[arg(
        long = "admin-listen",
        env = "CHORUS_FANOUT_ADMIN_LISTEN",
        default_value = "127.0.0.1:9182"
    )]
    pub admin_listen: SocketAddr,
    /// The admin port's header, body and idle timeouts and its cap on connections still to send their request.
    #[command(flatten)]
    pub serve: chorus_service::ServeArgs,
    /// Consumer group over `events`; the instances of one region share it and split the partitions.
    #[arg(long, env = "CHORUS_FANOUT_GROUP", default_value = "chorus-fanout")]
    pub group: String,
    /// This instance's id (shown to edges and in logs); fresh per process by default.
    #[arg(long, env = "CHORUS_FANOUT_ID")]
    pub fanout_id: Option<String>,
    /// Regions whose events are mirrored here as `<region>.events` (comma-separated); fanout reads them too.
    #[arg(long, env = "CHORUS_FANOUT_MIRRORED_REGIONS", value_delimiter = ',')]
    pub mirrored_regions: Vec<String>,
    /// Interval of the position heartbeat sent to every edge, in milliseconds.
    #[arg(long, env = "CHORUS_FANOUT_HEARTBEAT_MS", default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Events older than this (by event time) when they reach fanout are not pushed, only counted.
    #[arg(long, env = "CHORUS_FANOUT_STALENESS_MS", default_value_t = 5_000)]
    pub staleness_ms: u64,
    /// Recent events kept per partition, as routed to viewers: to fill the gap of a stream's first viewer on
    /// an edge (the events between its join and the moment its subscription reaches fanout) and to replay
    /// what a viewer resuming with its cursor missed; older than the resume window (or the staleness bound,
    /// if longer) go too.
    #[arg(long, env = "CHORUS_FANOUT_GAP_FILL_BUFFER", default_value_t = 16_384)]
    pub gap_fill_buffer: usize,
    /// How long routed events are held for viewers resuming with a cursor, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_FANOUT_RESUME_WINDOW_MS",
        default_value_t = 120_000
    )]
    pub resume_window_ms: u64,
    /// Comments per second (of event time) pushed to a stream's viewers; beyond it comments are sampled, the
    /// same ones for every edge, the owner's and moderators' always kept (0: no budget).
    #[arg(long, env = "CHORUS_FANOUT_COMMENT_BUDGET", default_value_t = 50)]
    pub comment_budget: u32,
    /// Per-stream budgets overriding `--comment-budget`: `stream=comments_per_second`, comma-separated.
    #[arg(
        long,
        env = "CHORUS_FANOUT_COMMENT_BUDGET_OVERRIDES",
        value_delimiter = ',',
        value_parser = crate::budget::parse_override
    )]
    pub comment_budget_overrides: Vec<(String, u32)>,
    /// Likes are counted per stream and announced (delta and total) at most once per stream per tick of this
    /// many milliseconds; each tick also checkpoints the changed totals to `like-totals`.
    #[arg(long, env = "CHORUS_FANOUT_LIKES_TICK_MS", default_value_t = 200)]
    pub likes_tick_ms: u64,
    /// How often the viewer counts of every edge of every region are added up and a changed total pushed to
    /// the stream's edges, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_FANOUT_VIEWER_COUNT_TICK_MS",
        default_value_t = 100
    )]
    pub viewer_count_tick_ms: u64,
    /// Frames queued per edge link; when full, further events for that edge are dropped and counted.
    #[arg(long, env = "CHORUS_FANOUT_LINK_QUEUE", default_value_t = 8_192)]
    pub link_queue: usize,
    /// Most frames written to an edge in one batch.
    #[arg(long, env = "CHORUS_FANOUT_MAX_BATCH_FRAMES", default_value_t = 1_024)]
    pub max_batch_frames: usize,
    /// Timeout of one connection attempt to an edge, in milliseconds.
    #[arg(
        long,
        env = "CHORUS_FANOUT_CONNECT_TIMEOUT_MS",
        default_value_t = 2_000
    )]
    pub connect_timeout_ms: u64,
    /// The token presented to edges (required: fanout does not start without it).
    #[command(flatten)]
    pub internal: chorus_service::credential::InternalTokenArgs,
}

impl FanoutConfig {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(5))
    }

    /// How long a routed event is held for gap fill and resume (by event time).
    pub fn held_for_ms(&self) -> i64 {
        self.resume_window_ms.max(self.staleness_ms) as i64
    }

    pub fn viewer_count_tick(&self) -> Duration {
        Duration::from_millis(self.viewer_count_tick_ms.max(10))
    }

    pub fn likes_tick(&self) -> Duration {
        Duration::from_millis(self.likes_tick_ms.max(10))
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(10))
    }
}
