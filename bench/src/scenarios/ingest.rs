//! `ingest`: comments accepted per second per core of ingest, with response-time percentiles, at a rate above
//! what one ingest process takes on this machine.

use std::time::Duration;

use crate::measure::{figure, progress};
use crate::publish::publish;
use crate::record::{Row, Series};
use crate::report::latency_cdf;
use crate::scenarios::{Measured, Size};
use crate::stack::Stack;
use chorus::procstat::CpuMeter;

pub async fn run(size: Size) -> anyhow::Result<Measured> {
    let rate = size.pick(20_000, 200);
    let seconds = size.pick(10, 2);
    let stack = Stack::start(1, &[]).await?;
    let ingest = CpuMeter::start(vec![stack.ingest.pid()]);
    let broker = CpuMeter::start(vec![stack.broker_pid()]);
    let bar = progress(format!("ingest: offering {rate} comments/s"), seconds);
    let published = publish(
        stack.publish_target("busy"),
        rate,
        Duration::from_secs(seconds),
        512,
    )
    .await;
    bar.finish_and_clear();
    let (ingest_cpu, broker_cpu) = (ingest.used(), broker.used());
    stack.stop().await;
    let wall = published.elapsed.as_secs_f64().max(0.001);
    let accepted = published.acked as f64 / wall;
    let cores = ingest_cpu.as_secs_f64() / wall;
    let ms = |q: f64| published.response.value_at_quantile(q) as f64 / 1000.0;
    Ok(Measured {
        rows: vec![Row {
            name: format!("{rate}/s offered, 512 in flight"),
            figures: vec![
                figure("accepted/s", accepted, "/s"),
                figure("failed", (published.sent - published.acked) as f64, ""),
                figure("ingest CPU", 100.0 * cores, "% of a core"),
                figure("accepted/s per core", accepted / cores.max(0.001), "/s"),
                figure("broker CPU", 100.0 * broker_cpu.as_secs_f64() / wall, "% of a core"),
                figure("p50", ms(0.5), "ms"),
                figure("p99", ms(0.99), "ms"),
                figure("max", ms(1.0), "ms"),
            ],
        }],
        series: vec![Series {
            plot: "ingest-response".to_owned(),
            kind: "latency-cdf".to_owned(),
            label: "POST to 202".to_owned(),
            x_label: "response time (ms)".to_owned(),
            y_label: "fraction of requests".to_owned(),
            points: latency_cdf(&published.response, 1000.0),
        }],
        notes: vec![
            "Every 202 waits for the broker's acknowledgement (acks=all): the broker (Tansu here) and the load \
             generator share the 2 cores with ingest, so accepted/s is bounded by the machine; per core is \
             ingest's own CPU."
                .to_owned(),
        ],
    })
}
