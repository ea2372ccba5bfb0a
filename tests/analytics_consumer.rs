//! The reference analytics consumer against a real broker: its counts equal what ingest acknowledged, also
//! when it is killed mid-run and restarted, and the delivery path is undisturbed meanwhile.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chorus_analytics::{Counts, State};
use support::load::post_at_rate;
use support::{Cluster, Process, WAIT};
use tokio::time::Instant;

/// Waits until the checkpoint file counts `expected` events in total (polled every 50 ms, at most WAIT).
async fn wait_for_total(state: &Path, expected: u64) -> State {
    let started = Instant::now();
    loop {
        if let Ok(loaded) = State::load(state) {
            if loaded.grand_total().total() >= expected {
                return loaded;
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "the consumer did not count {expected} events in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_are_exact_across_a_crash_and_delivery_is_undisturbed() {
    let cluster = Cluster::start(1, 1).await;
    let dir = std::env::temp_dir().join(format!("chorus-analytics-{}", uuid::Uuid::new_v4()));
    let state = dir.join("state.json");
    let mut flags = cluster.kafka_flags();
    flags.extend([
        format!("--state={}", state.display()),
        format!("--json-lines={}", dir.join("minutes.jsonl").display()),
        "--checkpoint-ms=200".to_owned(),
        "--quiet".to_owned(),
    ]);
    let first = Process::start("analytics", &flags).await;
    let mut viewer = cluster.viewer(0, "stream-a").await;

    let mut expected: BTreeMap<String, Counts> = BTreeMap::new();
    for i in 0..30 {
        let stream = format!("stream-{}", ["a", "b", "c"][i % 3]);
        cluster.like(&stream, "fan").await;
        expected.entry(stream).or_default().likes += 1;
    }
    let streams: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|s| format!("stream-{s}"))
        .collect();
    let load = tokio::spawn(post_at_rate(
        cluster.ingest_url(""),
        streams,
        100,
        Duration::from_secs(4),
        16,
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.kill().await;
    let second = Process::start("analytics", &flags).await;
    let posted = load.await.expect("load");
    assert_eq!(posted.len(), 400, "every comment was acknowledged");
    for p in &posted {
        expected.entry(p.stream.clone()).or_default().comments += 1;
    }
    let total: u64 = expected.values().map(Counts::total).sum();

    // Then one more event, on a stream of its own: once it is counted, everything before it was read.
    cluster.comment("stream-z", "fan", "the end").await;
    expected.entry("stream-z".into()).or_default().comments += 1;
    let counted = wait_for_total(&state, total + 1).await;
    assert_eq!(counted.totals, expected, "exact counts per stream and kind");
    println!(
        "counted {} events exactly, across a SIGKILL and a restart",
        total + 1
    );

    // The delivery path never noticed: the viewer of stream-a got every comment of its stream.
    let of_a: Vec<_> = posted.iter().filter(|p| p.stream == "stream-a").collect();
    let last_a = of_a.last().expect("comments on stream-a");
    let seen = viewer.events_until(&last_a.event_id).await;
    assert_eq!(seen.len(), of_a.len(), "the viewer saw each comment once");
    drop(second);
    std::fs::remove_dir_all(&dir).ok();
    cluster.stop().await;
}
