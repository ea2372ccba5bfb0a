//! The whole path against a real broker: HTTP POST -> ingest -> Kafka -> fanout -> edges -> WebSocket viewers.

mod support;

use std::time::Instant;

use chorus_schemas::partition_for;
use rdkafka::Message;
use support::{metric, Cluster, WAIT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_and_likes_reach_every_viewer_of_their_stream_once() {
    let cluster = Cluster::start(2, 1).await;
    let mut a1 = cluster.viewer(0, "match-a").await;
    let mut a2 = cluster.viewer(1, "match-a").await;
    let mut b1 = cluster.viewer(0, "match-b").await;
    let partitions = cluster.kafka.args.partitions;
    assert_eq!(
        a1.hello["join"][0]["partition"],
        partition_for("match-a", partitions),
        "hello names the stream's partition: {}",
        a1.hello
    );

    // A comment to A reaches both viewers of A, on two edges, with what was posted.
    let posted = Instant::now();
    let accepted = cluster.comment("match-a", "alice", "What a catch!").await;
    let event_id = accepted["event_id"].as_str().expect("event_id").to_owned();
    assert_eq!(accepted["partition"], partition_for("match-a", partitions));
    let seen_a1 = a1.events_until(&event_id).await;
    let latency = posted.elapsed();
    let seen_a2 = a2.events_until(&event_id).await;
    for seen in [&seen_a1, &seen_a2] {
        assert_eq!(seen.len(), 1, "only the posted comment: {seen:?}");
        let event = &seen[0];
        assert_eq!(event["text"], "What a catch!");
        assert_eq!(event["user_id"], "alice");
        assert_eq!(event["kind"], "comment");
        assert_eq!(event["offset"], accepted["offset"]);
    }
    println!("end-to-end latency of one comment (POST to first viewer): {latency:?}");
    // The edge measures the same path for operators: the event's age when it arrived, within what we saw.
    let arrived = cluster.edges[0].admin;
    assert_eq!(
        metric(arrived, "chorus_edge_event_age_seconds_count").await,
        1.0
    );
    let age = metric(arrived, "chorus_edge_event_age_seconds_sum").await;
    assert!(
        age > 0.0 && age <= latency.as_secs_f64() + 0.001,
        "edge-measured age {age} s within the observed {latency:?}"
    );
    let fanout = cluster.fanouts[0].admin;
    assert_eq!(
        metric(fanout, "chorus_fanout_event_age_seconds_count").await,
        1.0
    );

    // Exactly once: the next thing each viewer of A sees is the next comment, not a repeat.
    let next = cluster.comment("match-a", "bob", "second").await;
    for viewer in [&mut a1, &mut a2] {
        let seen = viewer
            .events_until(next["event_id"].as_str().expect("id"))
            .await;
        assert_eq!(seen.len(), 1, "no repeat before the next comment: {seen:?}");
    }

    // B's viewer never saw A's comments: the first thing it receives is B's own comment.
    let for_b = cluster.comment("match-b", "carol", "over here").await;
    let seen_b = b1
        .events_until(for_b["event_id"].as_str().expect("id"))
        .await;
    assert_eq!(seen_b.len(), 1, "nothing of stream A reached B: {seen_b:?}");

    // A like arrives as a `likes` frame.
    cluster.like("match-a", "dave").await;
    for viewer in [&mut a1, &mut a2] {
        let frame = viewer.next_frame().await;
        assert_eq!(frame["type"], "likes", "{frame}");
        assert_eq!(frame["delta"], 1);
        assert_eq!(frame["total"], 1);
    }

    // A viewer that leaves stops receiving; the other one keeps receiving.
    let edge0 = cluster.edges[0].admin;
    a1.close().await;
    support::wait_metric(edge0, "chorus_edge_connections", |v| v == 1.0).await;
    let delivered_before = metric(edge0, "chorus_edge_events_delivered_total").await;
    let after = cluster.comment("match-a", "erin", "still here?").await;
    a2.events_until(after["event_id"].as_str().expect("id"))
        .await;
    assert_eq!(
        metric(edge0, "chorus_edge_events_delivered_total").await,
        delivered_before,
        "edge 0 delivered nothing after its only viewer of A left"
    );

    // Once every viewer of A is gone, both edges write A's subscription tombstone.
    a2.close().await;
    let tombstones = subscription_tombstones(&cluster, "match-a", 2).await;
    assert_eq!(
        tombstones.len(),
        2,
        "one tombstone per edge: {tombstones:?}"
    );

    b1.close().await;
    cluster.stop().await;
}

/// Reads `subscriptions` from the beginning until `count` tombstones of `stream` were seen.
async fn subscription_tombstones(cluster: &Cluster, stream: &str, count: usize) -> Vec<String> {
    let kafka = &cluster.kafka.args;
    let consumer =
        support::read_from_start(kafka, &kafka.topics().subscriptions, 0..kafka.partitions);
    let mut found = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while found.len() < count {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {found:?} tombstones of {stream} within {WAIT:?}"))
            .expect("consume");
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        if message.payload().is_none() && key.starts_with(&format!("{stream}/")) {
            found.push(key);
        }
    }
    found.sort();
    found.dedup();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_nothing_sent_before_it_joined() {
    let cluster = Cluster::start(1, 1).await;
    let mut early = cluster.viewer(0, "live").await;
    let before = cluster.comment("live", "u1", "before the join").await;
    early
        .events_until(before["event_id"].as_str().expect("id"))
        .await;

    let mut late = cluster.viewer(0, "live").await;
    let join = late.hello["join"][0]["offset"]
        .as_i64()
        .expect("known join offset");
    assert!(
        join > before["offset"].as_i64().expect("offset"),
        "join position {join} is past the earlier comment"
    );
    let after = cluster.comment("live", "u2", "after the join").await;
    let seen = late
        .events_until(after["event_id"].as_str().expect("id"))
        .await;
    assert_eq!(seen.len(), 1, "only what was sent after the join: {seen:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_of_one_tick_reach_viewers_as_one_frame() {
    let cluster = Cluster::start_with(1, 1, &["--coalesce-ms=400", "--coalesce-min-ms=400"]).await;
    let mut viewer = cluster.viewer(0, "burst").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let accepted = cluster.comment("burst", "u", &format!("burst {i}")).await;
        ids.push(accepted["event_id"].as_str().expect("id").to_owned());
    }
    let mut frames = 0;
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < ids.len() {
        let frame = viewer.next_frame().await;
        assert_eq!(frame["type"], "events", "{frame}");
        frames += 1;
        for event in frame["events"].as_array().expect("events") {
            seen.push(event["event_id"].as_str().expect("id").to_owned());
        }
    }
    assert_eq!(seen, ids, "each once, in order");
    println!("5 comments posted back to back reached the viewer in {frames} frame(s)");
    assert!(
        frames <= 2,
        "coalesced per 400 ms tick, got {frames} frames"
    );
    cluster.stop().await;
}
