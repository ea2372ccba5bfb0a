//! `idle`: memory per idle viewer on the edge, for WebSocket, Server-Sent Events and long-poll (edge RSS and
//! PSS delta divided by the viewers), then 100k idle WebSocket viewers spread over several edge processes.

use std::time::Duration;

use crate::client::Kind;
use crate::measure::{figure, progress};
use crate::pool::Pool;
use crate::record::Row;
use crate::scenarios::{Measured, Size};
use crate::stack::Stack;
use chorus::procstat::{pss_kib, rss_kib};

/// Lets the edge settle (timers, first pings) before memory is read.
const SETTLE: Duration = Duration::from_secs(3);

async fn one_edge(kind: Kind, viewers: usize, first_source: u8) -> anyhow::Result<Row> {
    let stack = Stack::start(1, &[]).await?;
    let edge = stack.edges[0].pid();
    let url = match kind {
        Kind::ChorusSse => format!("http://{}/v1/streams/idle/sse", stack.edges[0].addr),
        Kind::ChorusPoll => format!("http://{}/v1/streams/idle/poll", stack.edges[0].addr),
        _ => stack.ws_url(0, "idle"),
    };
    let (rss0, pss0) = (rss_kib(edge), pss_kib(edge));
    let bar = progress(format!("idle: {viewers} {kind:?} viewers"), 1);
    let pool = Pool::start(kind, &url, viewers, 2, first_source, 2000).await?;
    bar.finish_and_clear();
    tokio::time::sleep(SETTLE).await;
    let (rss1, pss1) = (rss_kib(edge), pss_kib(edge));
    let connected = pool.connected.max(1) as f64;
    let row = Row {
        name: format!("{kind:?} on one edge"),
        figures: vec![
            figure("viewers", pool.connected as f64, ""),
            figure("failed", pool.failed as f64, ""),
            figure("edge RSS before", rss0 as f64 / 1024.0, "MiB"),
            figure("edge RSS after", rss1 as f64 / 1024.0, "MiB"),
            figure(
                "RSS per viewer",
                rss1.saturating_sub(rss0) as f64 / connected,
                "KiB",
            ),
            figure(
                "PSS per viewer",
                pss1.saturating_sub(pss0) as f64 / connected,
                "KiB",
            ),
        ],
    };
    pool.stop().await?;
    stack.stop().await;
    Ok(row)
}

async fn many_edges(viewers: usize, edges: usize) -> anyhow::Result<Row> {
    let stack = Stack::start(edges, &[]).await?;
    let pids: Vec<u32> = stack.edges.iter().map(|e| e.pid()).collect();
    let before: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
    let bar = progress(format!("idle: {viewers} viewers over {edges} edges"), 1);
    let mut pools = Vec::new();
    for (i, _) in stack.edges.iter().enumerate() {
        let share = viewers / edges + usize::from(i < viewers % edges);
        let url = stack.ws_url(i, &format!("idle-{i}"));
        pools.push(Pool::start(Kind::ChorusWs, &url, share, 2, 2 + (i as u8) * 4, 2000).await?);
    }
    bar.finish_and_clear();
    tokio::time::sleep(SETTLE).await;
    let after: u64 = pids.iter().map(|p| rss_kib(*p)).sum();
    let connected: usize = pools.iter().map(|p| p.connected).sum();
    let failed: usize = pools.iter().map(|p| p.failed).sum();
    for pool in pools {
        pool.stop().await?;
    }
    stack.stop().await;
    Ok(Row {
        name: format!("WebSocket over {edges} edges"),
        figures: vec![
            figure("viewers", connected as f64, ""),
            figure("failed", failed as f64, ""),
            figure("edge RSS before", before as f64 / 1024.0, "MiB"),
            figure("edge RSS after", after as f64 / 1024.0, "MiB"),
            figure(
                "RSS per viewer",
                after.saturating_sub(before) as f64 / connected.max(1) as f64,
                "KiB",
            ),
        ],
    })
}

pub async fn run(size: Size) -> anyhow::Result<Measured> {
    let per_edge = size.pick(18_000, 200);
    let mut measured = Measured::default();
    measured
        .rows
        .push(one_edge(Kind::ChorusWs, per_edge, 2).await?);
    measured
        .rows
        .push(one_edge(Kind::ChorusSse, per_edge, 10).await?);
    measured
        .rows
        .push(one_edge(Kind::ChorusPoll, per_edge, 18).await?);
    measured
        .rows
        .push(many_edges(size.pick(100_000, 400), size.pick(6, 2)).await?);
    measured.notes.push(
        "One process may hold at most 20,000 open files here, so one edge is measured at 18k viewers and 100k \
         viewers are spread over 6 edge processes. RSS counts the edge process only (the clients run in their \
         own processes); PSS splits shared pages, so it is the fairer per-process figure."
            .to_owned(),
    );
    Ok(measured)
}
