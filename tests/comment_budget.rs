//! A hot stream's comment budget: at 2,000 comments/s with a budget of 50/s, every viewer gets at most 50 per
//! second (of event time), is told how many were left out, and the two add up to what was acknowledged; every
//! viewer, on either edge, gets the same comments; a consumer of `events` still reads every one.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use rdkafka::Message as _;
use serde_json::Value;
use support::load::post_at_rate;
use support::{read_from_start, wait_metric, Cluster, TestKafka};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const BUDGET: usize = 50;
const RATE: u32 = 2_000;
const PER_EDGE: usize = 10;
/// The longest a viewer waits, from its start, to account for every comment.
const RUN: Duration = Duration::from_secs(90);

#[derive(Debug, Default)]
struct Seen {
    /// (event time, event id) of each comment delivered.
    comments: Vec<(i64, String)>,
    left_out: u64,
}

/// Reads until delivered plus left out reaches the number acknowledged (once it is known).
async fn watch_comments(url: String, mut acked: watch::Receiver<Option<u64>>) -> Seen {
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let deadline = tokio::time::Instant::now() + RUN;
    let mut seen = Seen::default();
    let done = |seen: &Seen, acked: Option<u64>| {
        acked.is_some_and(|a| seen.comments.len() as u64 + seen.left_out >= a)
    };
    loop {
        let message = tokio::select! {
            message = tokio::time::timeout_at(deadline, socket.next()) => message,
            Ok(()) = acked.changed() => {
                if done(&seen, *acked.borrow()) {
                    return seen;
                }
                continue;
            }
        };
        let Ok(Some(Ok(message))) = message else {
            panic!(
                "not every comment was accounted for: {} delivered, {} left out, {:?} acknowledged",
                seen.comments.len(),
                seen.left_out,
                *acked.borrow()
            );
        };
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).expect("JSON");
        match frame["type"].as_str() {
            Some("events") => {
                for event in frame["events"].as_array().expect("events") {
                    seen.comments.push((
                        event["created_ms"].as_i64().expect("created_ms"),
                        event["event_id"].as_str().expect("event_id").to_owned(),
                    ));
                }
            }
            Some("gap") if frame["reason"] == "sampled" => {
                seen.left_out += frame["missed_events"].as_u64().expect("missed_events");
            }
            _ => continue,
        }
        if done(&seen, *acked.borrow()) {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_streams_comments_are_sampled_to_its_budget_the_same_for_every_viewer() {
    let fanout_args = [
        format!("--comment-budget={BUDGET}"),
        // Every comment must be either delivered or counted as left out, however loaded the machine.
        "--staleness-ms=60000".to_owned(),
    ];
    let cluster = Cluster::start_full(TestKafka::start().await, 2, 1, &[], &fanout_args).await;
    let (acked_tx, acked) = watch::channel(None);
    let viewers: Vec<_> = (0..2 * PER_EDGE)
        .map(|i| {
            let url = cluster.viewer_url(i % 2, "hot");
            tokio::spawn(watch_comments(url, acked.clone()))
        })
        .collect();
    for edge in &cluster.edges {
        wait_metric(edge.admin, "chorus_edge_joins_total", |v| {
            v == PER_EDGE as f64
        })
        .await;
    }

    let posted = post_at_rate(
        cluster.ingest_url(""),
        vec!["hot".to_owned()],
        RATE,
        Duration::from_secs(10),
        256,
    )
    .await;
    let count = posted.len() as u64;
    acked_tx.send_replace(Some(count));
    println!("{count} comments acknowledged");
    assert!(count >= u64::from(RATE) * 9, "the load ran: {count}");

    let mut sets = Vec::new();
    for viewer in viewers {
        let seen = viewer.await.expect("viewer");
        assert_eq!(
            seen.comments.len() as u64 + seen.left_out,
            count,
            "delivered and left out add up to what was acknowledged"
        );
        let mut times: Vec<i64> = seen.comments.iter().map(|(t, _)| *t).collect();
        times.sort_unstable();
        let busiest = times
            .iter()
            .enumerate()
            .map(|(i, t)| times[i..].iter().take_while(|u| **u < t + 1000).count())
            .max()
            .unwrap_or(0);
        assert!(
            busiest <= BUDGET,
            "at most {BUDGET} comments in any second: {busiest}"
        );
        sets.push(
            seen.comments
                .into_iter()
                .map(|(_, id)| id)
                .collect::<BTreeSet<String>>(),
        );
    }
    let delivered = sets[0].len();
    println!(
        "each viewer got {delivered} comments ({:.0}/s) and was told of {} left out",
        delivered as f64 / 10.0,
        count - delivered as u64
    );
    assert!(delivered >= BUDGET * 5, "the budget was used: {delivered}");
    assert!(
        sets.iter().all(|s| *s == sets[0]),
        "every viewer, on both edges, got the same comments"
    );

    // Analytics reads them all.
    let args = &cluster.kafka.args;
    let consumer = read_from_start(args, &args.topics().events, 0..args.partitions);
    let wanted: BTreeSet<String> = posted.iter().map(|p| p.event_id.clone()).collect();
    let mut found = BTreeSet::new();
    let codec = chorus_schemas::Codec::stream_event().expect("codec");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while found.len() < wanted.len() {
        // Checked apart: a broker that redelivers records never lets `recv` time out.
        assert!(
            tokio::time::Instant::now() < deadline,
            "every event in Kafka in time: {} of {}",
            found.len(),
            wanted.len()
        );
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .expect("every event in Kafka in time")
            .expect("consume");
        if let Some(event) = message.payload().and_then(|p| codec.decode(p).ok()) {
            if wanted.contains(&event.event_id) {
                found.insert(event.event_id);
            }
        }
    }
    cluster.stop().await;
}
