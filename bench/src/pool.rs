//! Viewers split over client processes (each `chorus-bench client`), started together, stopped together, and
//! their reports merged.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::client::{self, ClientReport, Kind};

/// Viewers per client process: below the 20,000 open files a process may hold.
pub const PER_PROCESS: usize = 9_000;

#[derive(Debug)]
struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

/// The client processes of one measurement.
#[derive(Debug)]
pub struct Pool {
    workers: Vec<Worker>,
    pub connected: usize,
    pub failed: usize,
}

/// Merged reports of all client processes.
#[derive(Debug)]
pub struct Merged {
    pub report: ClientReport,
    pub latency: Histogram<u64>,
    pub hello: Histogram<u64>,
}

impl Pool {
    /// Starts enough client processes for `viewers` viewers of `url` and waits until every viewer connected or
    /// failed. Each process gets its own 127.0.0.x source addresses (`first_source` on), 4 per 9,000 viewers.
    pub async fn start(
        kind: Kind,
        url: &str,
        viewers: usize,
        processes: usize,
        first_source: u8,
        connect_rate: u32,
    ) -> anyhow::Result<Pool> {
        let processes = processes.max(viewers.div_ceil(PER_PROCESS)).max(1);
        let exe = std::env::current_exe().context("the bench executable")?;
        let mut workers = Vec::new();
        let mut source = first_source;
        for i in 0..processes {
            let count = viewers / processes + usize::from(i < viewers % processes);
            let sources: Vec<String> = (0..2)
                .map(|_| {
                    let address = IpAddr::from([127, 0, 0, source]);
                    source = source.wrapping_add(1).max(2);
                    address.to_string()
                })
                .collect();
            let mut child = tokio::process::Command::new(&exe)
                .arg("client")
                .arg(format!(
                    "--kind={}",
                    match kind {
                        Kind::ChorusWs => "chorus-ws",
                        Kind::ChorusSse => "chorus-sse",
                        Kind::ChorusPoll => "chorus-poll",
                        Kind::Nchan => "nchan",
                    }
                ))
                .arg(format!("--url={url}"))
                .arg(format!("--viewers={count}"))
                .arg(format!("--sources={}", sources.join(",")))
                .arg(format!("--connect-rate={}", connect_rate.max(1)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("start a client process")?;
            let stdout = child.stdout.take().context("client stdout")?;
            workers.push(Worker {
                child,
                lines: BufReader::new(stdout).lines(),
            });
        }
        let (mut connected, mut failed) = (0, 0);
        for worker in &mut workers {
            let line = tokio::time::timeout(Duration::from_secs(300), worker.lines.next_line())
                .await
                .context("clients connect within 5 minutes")??
                .context("a client process ended before it was ready")?;
            let ready: serde_json::Value = serde_json::from_str(&line)?;
            connected += ready["ready"].as_u64().unwrap_or(0) as usize;
            failed += ready["failed"].as_u64().unwrap_or(0) as usize;
        }
        Ok(Pool {
            workers,
            connected,
            failed,
        })
    }

    /// Process ids of the client processes, for their CPU time.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.child.id()).collect()
    }

    /// Stops every client and merges their reports.
    pub async fn stop(mut self) -> anyhow::Result<Merged> {
        for worker in &mut self.workers {
            if let Some(stdin) = worker.child.stdin.as_mut() {
                let _ = stdin.write_all(b"stop\n").await;
            }
        }
        let mut merged = Merged {
            report: ClientReport::default(),
            latency: client::histogram(),
            hello: client::histogram(),
        };
        for worker in &mut self.workers {
            let line = tokio::time::timeout(Duration::from_secs(30), worker.lines.next_line())
                .await
                .context("a client reports within 30 s")??;
            let Some(line) = line else {
                bail!("a client process ended without a report");
            };
            let report: ClientReport = serde_json::from_str(&line)?;
            let total = &mut merged.report;
            total.connected += report.connected;
            total.failed += report.failed;
            total.deliveries += report.deliveries;
            total.frames += report.frames;
            total.gaps += report.gaps;
            total.before_join += report.before_join;
            total.missed += report.missed;
            if total.per_second.len() < report.per_second.len() {
                total.per_second.resize(report.per_second.len(), 0);
            }
            for (slot, n) in total.per_second.iter_mut().zip(&report.per_second) {
                *slot += n;
            }
            client::from_pairs(&mut merged.latency, &report.latency_us);
            client::from_pairs(&mut merged.hello, &report.hello_us);
            let _ = tokio::time::timeout(Duration::from_secs(10), worker.child.wait()).await;
        }
        Ok(merged)
    }
}
