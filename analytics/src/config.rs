//! Options of the reference analytics consumer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsConfig {
    /// Address of the admin port (/metrics, /healthz, /readyz).
    #[arg(
        long = "admin-listen",
        env = "CHORUS_ANALYTICS_ADMIN_LISTEN",
        default_value = "127.0.0.1:9183"
    )]
    pub admin_listen: SocketAddr,
    /// The admin port's header, body and idle timeouts and its cap on connections still to send their request.
    #[command(flatten)]
    pub serve: chorus_service::ServeArgs,
    /// Consumer group (its committed offsets show the consumer's lag; they never affect delivery).
    #[arg(
        long,
        env = "CHORUS_ANALYTICS_GROUP",
        default_value = "chorus-analytics"
    )]
    pub group: String,
    /// Checkpoint of counts and offsets; a restart resumes from it.
    #[arg(
        long,
        env = "CHORUS_ANALYTICS_STATE",
        default_value = ".chorus/analytics-state.json"
    )]
    pub state: PathBuf,
    /// Also append each checkpoint's changed per-minute counts to this file as JSON lines.
    #[arg(long, env = "CHORUS_ANALYTICS_JSON_LINES")]
    pub json_lines: Option<PathBuf>,
    /// Interval of checkpoints and of the printed table, in milliseconds.
    #[arg(long, env = "CHORUS_ANALYTICS_CHECKPOINT_MS", default_value_t = 1000)]
    pub checkpoint_ms: u64,
    /// Streams shown in the table.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Minutes of per-minute counts kept (totals are kept for every stream).
    #[arg(long, default_value_t = 60)]
    pub keep_minutes: i64,
    /// Do not print the live table (for scripts).
    #[arg(long)]
    pub quiet: bool,
}

impl AnalyticsConfig {
    pub fn checkpoint(&self) -> Duration {
        Duration::from_millis(self.checkpoint_ms.max(50))
    }
}
