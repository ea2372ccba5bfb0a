//! One fan-out measurement: viewers connected through client processes, a publisher at a fixed rate, and the
//! CPU time of the servers and of the clients read apart.

use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{ClientReport, Kind};
use crate::pool::Pool;
use crate::publish::{publish, Published, Target};
use crate::record::{Row, Series};
use crate::report::latency_cdf;
use chorus::procstat::CpuMeter;

/// How long viewers keep reading after the last publish, for what is still on its way.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Shape {
    pub kind: Kind,
    pub url: String,
    pub viewers: usize,
    pub target: Target,
    pub rate: u32,
    pub seconds: u64,
    /// The servers, by name, and their process ids.
    pub servers: Vec<(String, Vec<u32>)>,
    /// The server whose CPU is divided by frames and deliveries (the edge, or nginx).
    pub delivering: String,
    /// First 127.0.0.x source address of the clients.
    pub first_source: u8,
}

#[derive(Debug)]
pub struct Outcome {
    pub row: Row,
    pub latency: Histogram<u64>,
    pub per_second: Vec<u64>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

pub fn figure(name: &str, value: f64, unit: &str) -> (String, f64, String) {
    (name.to_owned(), value, unit.to_owned())
}

/// A progress bar that fills over `seconds` while a phase runs.
pub fn progress(message: String, seconds: u64) -> ProgressBar {
    let bar = ProgressBar::new(seconds.max(1));
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} s") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub async fn run(name: &str, shape: Shape) -> anyhow::Result<Outcome> {
    let connecting = progress(format!("{name}: connecting {} viewers", shape.viewers), 1);
    let pool = Pool::start(
        shape.kind,
        &shape.url,
        shape.viewers,
        2,
        shape.first_source,
        2000,
    )
    .await?;
    connecting.finish_and_clear();
    let clients = CpuMeter::start(pool.pids());
    let servers: Vec<(String, CpuMeter)> = shape
        .servers
        .iter()
        .map(|(n, pids)| (n.clone(), CpuMeter::start(pids.clone())))
        .collect();
    let bar = progress(
        format!("{name}: publishing {} ev/s", shape.rate),
        shape.seconds,
    );
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                bar.inc(1);
            }
        })
    };
    let published = publish(
        shape.target.clone(),
        shape.rate,
        Duration::from_secs(shape.seconds),
        256,
    )
    .await;
    tokio::time::sleep(DRAIN).await;
    ticker.abort();
    bar.finish_and_clear();
    let wall = published.elapsed + DRAIN;
    let server_cpu: Vec<(String, Duration)> =
        servers.iter().map(|(n, m)| (n.clone(), m.used())).collect();
    let client_cpu = clients.used();
    let merged = pool.stop().await?;
    let figures = figures(
        &merged.report,
        &published,
        &merged.latency,
        &server_cpu,
        client_cpu,
        wall,
        &shape,
    );
    Ok(Outcome {
        row: Row {
            name: name.to_owned(),
            figures,
        },
        latency: merged.latency.clone(),
        per_second: merged.report.per_second.clone(),
    })
}

/// The row of one run: delivery, latency percentiles, and CPU of each server and of the clients.
fn figures(
    report: &ClientReport,
    published: &Published,
    latency: &Histogram<u64>,
    server_cpu: &[(String, Duration)],
    client_cpu: Duration,
    wall: Duration,
    shape: &Shape,
) -> Vec<(String, f64, String)> {
    let wanted = published.acked * report.connected as u64;
    let secs = published.elapsed.as_secs_f64().max(0.001);
    let mut figures = vec![
        figure("viewers", report.connected as f64, ""),
        figure("published/s", published.acked as f64 / secs, "/s"),
        figure("deliveries/s", report.deliveries as f64 / secs, "/s"),
        figure("frames/s", report.frames as f64 / secs, "/s"),
        figure(
            "delivered",
            100.0 * report.deliveries as f64 / wanted.max(1) as f64,
            "%",
        ),
        figure("p50", ms(latency, 0.5), "ms"),
        figure("p90", ms(latency, 0.9), "ms"),
        figure("p99", ms(latency, 0.99), "ms"),
        figure("p99.9", ms(latency, 0.999), "ms"),
        figure("max", ms(latency, 1.0), "ms"),
    ];
    let wall_s = wall.as_secs_f64();
    for (server, cpu) in server_cpu {
        figure_cpu(&mut figures, server, *cpu, wall_s);
        if *server == shape.delivering {
            let us = cpu.as_secs_f64() * 1e6;
            figures.push(figure(
                &format!("{server} CPU/frame"),
                us / report.frames.max(1) as f64,
                "us",
            ));
            figures.push(figure(
                &format!("{server} CPU/delivery"),
                us / report.deliveries.max(1) as f64,
                "us",
            ));
        }
    }
    figure_cpu(&mut figures, "clients", client_cpu, wall_s);
    figures.push(figure("gaps", report.gaps as f64, ""));
    figures
}

fn figure_cpu(figures: &mut Vec<(String, f64, String)>, who: &str, cpu: Duration, wall_s: f64) {
    figures.push(figure(
        &format!("{who} CPU"),
        100.0 * cpu.as_secs_f64() / wall_s.max(0.001),
        "% of a core",
    ));
}

/// The latency distribution of an outcome, as a series of plot `plot`.
pub fn latency_series(plot: &str, label: &str, latency: &Histogram<u64>) -> Series {
    Series {
        plot: plot.to_owned(),
        kind: "latency-cdf".to_owned(),
        label: label.to_owned(),
        x_label: "publish to deliver (ms)".to_owned(),
        y_label: "fraction of deliveries".to_owned(),
        points: latency_cdf(latency, 1000.0),
    }
}

/// Deliveries per second over the run, as a series of plot `plot`.
pub fn over_time_series(plot: &str, label: &str, per_second: &[u64]) -> Series {
    Series {
        plot: plot.to_owned(),
        kind: "over-time".to_owned(),
        label: label.to_owned(),
        x_label: "seconds".to_owned(),
        y_label: "deliveries per second".to_owned(),
        points: per_second
            .iter()
            .enumerate()
            .map(|(s, n)| (s as f64, *n as f64))
            .collect(),
    }
}
