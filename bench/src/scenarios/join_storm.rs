//! `join-storm`: 10k viewers joining within 10 s while events flow (100/s): join-to-hello latency, and
//! correctness: no event before a viewer's join position, none missed after its first.

use std::time::Duration;

use crate::client::Kind;
use crate::measure::{figure, progress};
use crate::pool::Pool;
use crate::publish::publish;
use crate::record::{Row, Series};
use crate::report::latency_cdf;
use crate::scenarios::{Measured, Size};
use crate::stack::Stack;
use chorus::procstat::CpuMeter;

pub async fn run(size: Size) -> anyhow::Result<Measured> {
    let viewers = size.pick(10_000, 100);
    let window = size.pick(10u64, 2);
    let rate = size.pick(100, 20);
    let stack = Stack::start(1, &[]).await?;
    let target = stack.publish_target("storm");
    let edge = CpuMeter::start(vec![stack.edges[0].pid()]);
    // Events flow from before the first join until after the last.
    let load = tokio::spawn(publish(target, rate, Duration::from_secs(window + 4), 64));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bar = progress(format!("join-storm: {viewers} joins in {window} s"), 1);
    let per_process_rate = (viewers as u64 / window / 2).max(1) as u32;
    let pool = Pool::start(
        Kind::ChorusWs,
        &stack.ws_url(0, "storm"),
        viewers,
        2,
        2,
        per_process_rate,
    )
    .await?;
    bar.finish_and_clear();
    let published = load.await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let edge_cpu = edge.used();
    let merged = pool.stop().await?;
    stack.stop().await;
    let ms = |q: f64| merged.hello.value_at_quantile(q) as f64 / 1000.0;
    let report = &merged.report;
    let mut measured = Measured {
        rows: vec![Row {
            name: format!("{viewers} joins over {window} s at {rate} ev/s"),
            figures: vec![
                figure("joined", report.connected as f64, ""),
                figure("failed", report.failed as f64, ""),
                figure("hello p50", ms(0.5), "ms"),
                figure("hello p99", ms(0.99), "ms"),
                figure("hello max", ms(1.0), "ms"),
                figure("events published", published.acked as f64, ""),
                figure("deliveries", report.deliveries as f64, ""),
                figure("before join", report.before_join as f64, ""),
                figure("missed after first", report.missed as f64, ""),
                figure("gaps", report.gaps as f64, ""),
                figure("edge CPU", edge_cpu.as_secs_f64(), "s"),
            ],
        }],
        series: vec![Series {
            plot: "join-storm-hello".to_owned(),
            kind: "latency-cdf".to_owned(),
            label: "connect to hello".to_owned(),
            x_label: "connect to hello (ms)".to_owned(),
            y_label: "fraction of joins".to_owned(),
            points: latency_cdf(&merged.hello, 1000.0),
        }],
        notes: Vec::new(),
    };
    measured.notes.push(
        "Connect-to-hello includes the TCP connect and WebSocket handshake from the client's side; `before join` \
         counts events older than the viewer's hello.join offset, `missed after first` the holes in each viewer's \
         sequence numbers from its first event to its last: both must be 0."
            .to_owned(),
    );
    Ok(measured)
}
