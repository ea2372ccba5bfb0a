//! Mirror options. The target cluster is the one of the flattened Kafka options (this region's).

use std::net::SocketAddr;

#[derive(Debug, Clone, clap::Args)]
pub struct MirrorConfig {
    /// Bootstrap servers of the source region's cluster.
    #[arg(long = "source-kafka", env = "CHORUS_MIRROR_SOURCE_KAFKA")]
    pub source_kafka: String,
    /// Name of the source region: the target topic is `<source region>.<events topic>`.
    #[arg(long = "source-region", env = "CHORUS_MIRROR_SOURCE_REGION")]
    pub source_region: String,
    /// Consumer group on the source cluster (default `chorus-mirror-<source region>-to-<region>`).
    #[arg(long, env = "CHORUS_MIRROR_GROUP")]
    pub group: Option<String>,
    /// Records copied and not yet acknowledged by the target, at most.
    #[arg(long, env = "CHORUS_MIRROR_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Address of the admin port (/metrics, /healthz, /readyz).
    #[arg(
        long = "admin-listen",
        env = "CHORUS_MIRROR_ADMIN_LISTEN",
        default_value = "127.0.0.1:9184"
    )]
    pub admin_listen: SocketAddr,
    /// The admin port's header, body and idle timeouts and its cap on connections still to send their request.
    #[command(flatten)]
    pub serve: chorus_service::ServeArgs,
}
