//! `chorus-bench`: Chorus's benchmark scenarios, each one command, each writing a JSON record to
//! `bench/results/` and regenerating `bench/REPORT.md` with its tables and plots.
//!
//! ```text
//! cargo build --release --workspace --bins
//! target/release/chorus-bench run latency        # or fanout, idle, join-storm, ingest, peer, all
//! target/release/chorus-bench run all --size tiny --out target/bench-smoke   # the CI smoke run
//! ```
//!
//! Every load loop is bounded in count and time; viewers are split over client processes (`chorus-bench
//! client`) from many 127.0.0.x source addresses.

mod client;
mod measure;
mod nchan;
mod pool;
mod publish;
mod record;
mod report;
mod scenarios;
mod stack;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "chorus-bench", about = "Chorus benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a scenario (or `all`), writes its record and regenerates the report.
    Run {
        #[arg(value_enum)]
        scenario: scenarios::Scenario,
        /// `tiny` for a smoke run, `full` for the figures in the report.
        #[arg(long, value_enum, default_value = "full")]
        size: scenarios::Size,
        /// Where records and the report go.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Regenerates the report from the records in a directory.
    Report {
        #[arg(long, default_value = "bench/results")]
        results: PathBuf,
    },
    /// One load-generator process (started by `run`).
    Client(client::ClientArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Client(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(client::run(args)),
        Command::Run {
            scenario,
            size,
            out,
        } => {
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(scenarios::run(scenario, size, &out, &command))?;
            report::write_report(&out, &out.join("../REPORT.md"))
        }
        Command::Report { results } => {
            report::write_report(&results, &results.join("../REPORT.md"))
        }
    }
}
