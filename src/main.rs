//! `chorus`: one binary, one subcommand per role. It only parses options and wires; the work is in the crates.

mod dev;

use std::ffi::OsString;
use std::path::PathBuf;

use chorus::{config_file, stack, watch};
use chorus_edge::EdgeConfig;
use chorus_fanout::FanoutConfig;
use chorus_ingest::IngestConfig;
use chorus_service::shutdown::token_on_signal;
use chorus_service::{telemetry, KafkaArgs};
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chorus",
    version,
    about = "Live comments and likes for live video streams"
)]
struct Cli {
    /// A file of `CHORUS_*=value` lines (each an option's variable, as listed here); the environment and flags
    /// win over it.
    #[arg(long, global = true, env = config_file::VARIABLE)]
    config: Option<PathBuf>,
    /// Log filter (`RUST_LOG` syntax) when RUST_LOG is not set.
    #[arg(long, global = true, env = "CHORUS_LOG", default_value = "info")]
    log: String,
    /// Log JSON lines instead of text.
    #[arg(long, global = true, env = "CHORUS_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The HTTP API that accepts comments and likes and writes them to Kafka.
    Ingest {
        #[command(flatten)]
        config: IngestConfig,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Consumes `events` and pushes each event to the edges with viewers of its stream.
    Fanout {
        #[command(flatten)]
        config: FanoutConfig,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Holds viewer connections and writes the events fanout pushes to them.
    Edge {
        // Boxed: the largest configuration by far, and the enum is as large as its largest variant.
        #[command(flatten)]
        config: Box<EdgeConfig>,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// The reference analytics consumer: comment and like counts per stream and minute, from the topics.
    Analytics {
        #[command(flatten)]
        config: chorus_analytics::AnalyticsConfig,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Copies another region's `events` into `<region>.events` on this region's cluster (MM2 naming).
    Mirror {
        #[command(flatten)]
        config: chorus_mirror::MirrorConfig,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Everything on one machine: a local broker (unless --kafka is given), ingest, fanout and edge.
    Dev(dev::DevArgs),
    /// Serves the demo page: a player placeholder with live comments and likes, made with the browser client.
    Demo(chorus::demo::DemoArgs),
    /// How many edges, fanouts, ingests and partitions an event needs, from the benchmarks' per-node figures.
    Plan(chorus::plan::PlanArgs),
    /// Connects to a viewer URL and prints every frame.
    Watch {
        /// e.g. ws://127.0.0.1:8081/v1/streams/demo/ws
        url: String,
    },
}

fn main() -> anyhow::Result<()> {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Before any thread starts: the file's settings become environment variables for the parser below.
    if let Some(path) = config_file::path_in(&args) {
        config_file::load(&path, &config_file::option_variables(&Cli::command()))?;
    }
    let cli = Cli::parse_from(args);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(&cli.log, cli.log_json);
    let shutdown = token_on_signal();
    match cli.command {
        Command::Ingest { config, kafka } => {
            let role = stack::spawn_ingest(config, kafka, shutdown).await?;
            role.task.await??;
        }
        Command::Fanout { config, kafka } => {
            let role = stack::spawn_fanout(config, kafka, shutdown).await?;
            role.task.await??;
        }
        Command::Edge { config, kafka } => {
            let role = stack::spawn_edge(*config, kafka, shutdown).await?;
            role.task.await??;
        }
        Command::Analytics { config, kafka } => {
            let role = stack::spawn_analytics(config, kafka, shutdown).await?;
            role.task.await??;
        }
        Command::Mirror { config, kafka } => {
            let role = stack::spawn_mirror(config, kafka, shutdown).await?;
            role.task.await??;
        }
        Command::Dev(args) => dev::run(args, shutdown).await?,
        Command::Demo(args) => chorus::demo::run(args, shutdown).await?,
        Command::Watch { url } => watch::run(&url, shutdown).await?,
        Command::Plan(args) => {
            let records = chorus::plan::Records::load(&args.results)?;
            print!("{}", chorus::plan::plan(&args, &records)?);
        }
    }
    Ok(())
}
