//! The scenarios. Each builds what it measures, runs it, and writes one [`RunRecord`].

mod fanout;
mod idle;
mod ingest;
mod join_storm;
mod latency;
mod peer;

use std::path::Path;

use crate::record::{Machine, Row, RunRecord, Series};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Latency,
    Fanout,
    Idle,
    JoinStorm,
    Ingest,
    Peer,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// A few viewers for a few seconds: does it run, is the output well formed.
    Tiny,
    /// The sizes the report quotes.
    Full,
}

impl Size {
    /// `full` or its tiny counterpart.
    pub fn pick<T>(self, full: T, tiny: T) -> T {
        match self {
            Size::Full => full,
            Size::Tiny => tiny,
        }
    }

    fn name(self) -> &'static str {
        self.pick("full", "tiny")
    }
}

/// What a scenario measured.
#[derive(Debug, Default)]
pub struct Measured {
    pub rows: Vec<Row>,
    pub series: Vec<Series>,
    pub notes: Vec<String>,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

pub async fn run(scenario: Scenario, size: Size, out: &Path, command: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let all = [
        Scenario::Latency,
        Scenario::Fanout,
        Scenario::Peer,
        Scenario::Idle,
        Scenario::JoinStorm,
        Scenario::Ingest,
    ];
    let chosen: Vec<Scenario> = if scenario == Scenario::All {
        all.to_vec()
    } else {
        vec![scenario]
    };
    for scenario in chosen {
        let started_ms = chorus_service::clock::now_ms();
        let (name, measured) = match scenario {
            Scenario::Latency => ("latency", latency::run(size).await?),
            Scenario::Fanout => ("fanout", fanout::run(size).await?),
            Scenario::Idle => ("idle", idle::run(size).await?),
            Scenario::JoinStorm => ("join-storm", join_storm::run(size).await?),
            Scenario::Ingest => ("ingest", ingest::run(size).await?),
            Scenario::Peer => ("peer", peer::run(size).await?),
            Scenario::All => continue,
        };
        let record = RunRecord {
            scenario: name.to_owned(),
            size: size.name().to_owned(),
            command: command.to_owned(),
            started_ms,
            machine: machine(),
            rows: measured.rows,
            series: measured.series,
            notes: measured.notes,
        };
        for row in &record.rows {
            let figures: Vec<String> = row
                .figures
                .iter()
                .map(|(n, v, u)| format!("{n} {v:.2}{u}"))
                .collect();
            println!("{name} | {} | {}", row.name, figures.join(", "));
        }
        let path = out.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)?;
        println!("{name}: record written to {}", path.display());
    }
    Ok(())
}
