//! Ingest options. Flags win over environment variables, which win over the defaults shown.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use chorus_service::{AuthArgs, ServeArgs};

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
    /// Browser origins whose pages may post (comma-separated, e.g. `https://watch.example`): their CORS
    /// preflights are answered and every answer names them. Empty: no CORS headers (only same-origin pages).
    #[arg(long, env = "CHORUS_INGEST_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
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
    /// With `--auth trusted-header`: the header carrying the user id, set by a trusted gateway in front of ingest.
    #[arg(long, env = "CHORUS_INGEST_USER_HEADER", default_value = "x-user-id")]
    pub user_header: String,
    /// With `--auth trusted-header`: the header carrying the user's role on the stream (`viewer`, `moderator`,
    /// `owner`); absent means viewer.
    #[arg(long, env = "CHORUS_INGEST_ROLE_HEADER", default_value = "x-user-role")]
    pub role_header: String,
    /// The role (token claim `role`, or the role header) of the platform's administrators: they moderate every
    /// stream and may ban a user from all of them (`PUT /v1/bans/{user_id}`).
    #[arg(long, env = "CHORUS_INGEST_ADMIN_ROLE", default_value = "admin")]
    pub admin_role: String,
    /// The other regions whose bans, chat settings and viewer counts reach this region's cluster as
    /// `<region>.<topic>` (MirrorMaker 2 naming); they apply here too.
    #[arg(long, env = "CHORUS_INGEST_MIRRORED_REGIONS", value_delimiter = ',')]
    pub mirrored_regions: Vec<String>,
    /// Who is posting: bearer tokens or a trusted header.
    #[command(flatten)]
    pub auth: AuthArgs,
    /// How much one user, one address and one stream may post.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Header, body and idle timeouts, and the cap on connections still to send their request (both ports).
    #[command(flatten)]
    pub serve: ServeArgs,
    /// How long a retry with the same `Idempotency-Key` gets the first answer back from this ingest, in seconds.
    #[arg(
        long,
        env = "CHORUS_INGEST_IDEMPOTENCY_WINDOW_S",
        default_value_t = 600
    )]
    pub idempotency_window_s: u64,
    /// Most idempotency keys this ingest remembers; the oldest are forgotten first.
    #[arg(
        long,
        env = "CHORUS_INGEST_IDEMPOTENCY_MAX_KEYS",
        default_value_t = 100_000
    )]
    pub idempotency_max_keys: usize,
}

/// Rate limits of one ingest instance (token buckets: a sustained rate per second and a burst on top).
/// A request over a limit gets `429 Too Many Requests` with `Retry-After`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// `on` or `off`. Turn the limits off only where something else limits (a load test, a gateway).
    #[arg(
        long = "rate-limits",
        env = "CHORUS_INGEST_RATE_LIMITS",
        default_value = "on",
        value_name = "on|off",
        hide_possible_values = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enabled: bool,
    /// Comments per second one user may post.
    #[arg(long, env = "CHORUS_INGEST_USER_RATE", default_value = "1")]
    pub user_rate: NonZeroU32,
    /// Comments one user may post at once (the bucket's size; it refills at the rate).
    #[arg(long, env = "CHORUS_INGEST_USER_BURST", default_value = "5")]
    pub user_burst: NonZeroU32,
    /// Likes per second one user may post.
    #[arg(long, env = "CHORUS_INGEST_USER_LIKE_RATE", default_value = "10")]
    pub user_like_rate: NonZeroU32,
    /// Likes one user may post at once.
    #[arg(long, env = "CHORUS_INGEST_USER_LIKE_BURST", default_value = "30")]
    pub user_like_burst: NonZeroU32,
    /// Requests per second from one client address (an IPv6 address counts by its /64), before authentication.
    #[arg(long, env = "CHORUS_INGEST_ADDRESS_RATE", default_value = "200")]
    pub address_rate: NonZeroU32,
    /// Requests one client address may send at once.
    #[arg(long, env = "CHORUS_INGEST_ADDRESS_BURST", default_value = "400")]
    pub address_burst: NonZeroU32,
    /// Events per second this ingest accepts for one stream: a circuit breaker for a stream flooding ingest.
    #[arg(long, env = "CHORUS_INGEST_STREAM_RATE", default_value = "5000")]
    pub stream_rate: NonZeroU32,
    /// Events this ingest accepts for one stream at once.
    #[arg(long, env = "CHORUS_INGEST_STREAM_BURST", default_value = "10000")]
    pub stream_burst: NonZeroU32,
    /// Take the client address from the last `X-Forwarded-For` entry (set by a trusted proxy in front).
    #[arg(long, env = "CHORUS_INGEST_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

impl IngestConfig {
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms.max(1))
    }

    pub fn idempotency_window(&self) -> Duration {
        Duration::from_secs(self.idempotency_window_s.max(1))
    }
}
