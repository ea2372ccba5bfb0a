//! Two regions, each with its own broker and roles, and `chorus mirror` both ways: comments cross regions
//! exactly once, never loop, survive a mirror crash, and keep live-only joins; cross-region latency is
//! reported beside in-region latency.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use chorus_service::KafkaArgs;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;
use support::load::{post_at_rate, Posted};
use support::regions::{mirror, two_regions_with};
use support::{percentile, Cluster, TestKafka, Viewer, WAIT};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Two regions `a` and `b` sharing a topic prefix, each with one ingest, fanout and edge.
async fn two_regions() -> (Cluster, Cluster) {
    two_regions_with(&[]).await
}

fn id(accepted: &Value) -> &str {
    accepted["event_id"].as_str().expect("event_id")
}

/// The event ids of one partition of `topic`, from the beginning up to and including `last`.
async fn ids_until(kafka: &KafkaArgs, topic: &str, partition: i32, last: &str) -> Vec<String> {
    let consumer = support::read_from_start(kafka, topic, [partition]);
    let codec = chorus_schemas::Codec::stream_event().expect("codec");
    let mut ids = Vec::new();
    loop {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{last} not in {topic} in time; saw {ids:?}"))
            .expect("consume");
        let event = codec
            .decode(message.payload().unwrap_or_default())
            .expect("a StreamEvent");
        ids.push(event.event_id.clone());
        if event.event_id == last {
            return ids;
        }
    }
}

async fn topic_names(kafka: &KafkaArgs) -> Vec<String> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.brokers)
        .create()
        .expect("client");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_cross_regions_exactly_once_and_never_loop() {
    let (a, b) = two_regions().await;
    let _a_to_b = mirror(&a, &b).await;
    let _b_to_a = mirror(&b, &a).await;
    let mut in_a = a.viewer(0, "world").await;
    let mut in_b = b.viewer(0, "world").await;

    let from_a = a.comment("world", "ana", "from a").await;
    for viewer in [&mut in_a, &mut in_b] {
        let seen = viewer.events_until(id(&from_a)).await;
        assert_eq!(seen.len(), 1, "once: {seen:?}");
        assert_eq!(seen[0]["origin"], "a");
    }
    let from_b = b.comment("world", "bob", "from b").await;
    for viewer in [&mut in_a, &mut in_b] {
        let seen = viewer.events_until(id(&from_b)).await;
        assert_eq!(seen.len(), 1, "once, and nothing of a's again: {seen:?}");
        assert_eq!(seen[0]["origin"], "b");
    }

    // Count with a consumer: each event once in each region's topics, up to a last event per region.
    let end_a = a.comment("world", "ana", "end a").await;
    let end_b = b.comment("world", "bob", "end b").await;
    let partition = from_a["partition"].as_i64().expect("partition") as i32;
    let events = a.kafka.args.topics().events;
    let (ka, kb) = (&a.kafka.args, &b.kafka.args);
    let expect = [
        (ka, events.clone(), &from_a, &end_a),
        (ka, format!("b.{events}"), &from_b, &end_b),
        (kb, events.clone(), &from_b, &end_b),
        (kb, format!("a.{events}"), &from_a, &end_a),
    ];
    for (kafka, topic, event, end) in expect {
        let ids = ids_until(kafka, &topic, partition, id(end)).await;
        assert_eq!(ids, [id(event), id(end)], "{topic} on {}", kafka.region);
    }
    for kafka in [ka, kb] {
        let names = topic_names(kafka).await;
        let looped: Vec<&String> = names
            .iter()
            .filter(|n| n.matches('.').count() > 2)
            .collect();
        assert!(
            looped.is_empty(),
            "a mirrored topic was mirrored again: {looped:?}"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// A viewer in `b` for each of four streams `{name}-{i}`, then `a` posting to them at 100 comments/s for
/// `seconds`: the streams, their viewers, and the load to await (the comments acknowledged in `a`).
async fn b_watches_while_a_posts(
    a: &Cluster,
    b: &Cluster,
    name: &str,
    seconds: u64,
) -> (Vec<String>, Vec<Viewer>, JoinHandle<Vec<Posted>>) {
    let streams: Vec<String> = (0..4).map(|i| format!("{name}-{i}")).collect();
    let mut viewers = Vec::new();
    for stream in &streams {
        viewers.push(b.viewer(0, stream).await);
    }
    let load = tokio::spawn(post_at_rate(
        a.ingest_url(""),
        streams.clone(),
        100,
        Duration::from_secs(seconds),
        16,
    ));
    (streams, viewers, load)
}

/// Every comment acknowledged in `a` is in `a.events` in `b`, and `b`'s viewers (one per stream) saw each
/// comment of their stream exactly once, whatever was copied twice.
async fn assert_mirrored_once(
    a: &Cluster,
    b: &Cluster,
    posted: &[Posted],
    streams: &[String],
    viewers: &mut [Viewer],
) {
    // Every acknowledged event reached `a.events` in b.
    let mirrored_topic = format!("a.{}", b.kafka.args.topics().events);
    let mut in_b: HashSet<String> = HashSet::new();
    for partition in 0..b.kafka.args.partitions {
        let Some(last) = posted.iter().rfind(|p| p.partition == i64::from(partition)) else {
            continue;
        };
        in_b.extend(ids_until(&b.kafka.args, &mirrored_topic, partition, &last.event_id).await);
    }
    let lost: Vec<u64> = posted
        .iter()
        .filter(|p| !in_b.contains(&p.event_id))
        .map(|p| p.seq)
        .collect();
    assert!(lost.is_empty(), "acknowledged in a, missing in b: {lost:?}");

    // Viewers in b saw every comment of their stream once: the copies made twice around the crash were
    // dropped by event id.
    for (stream, viewer) in streams.iter().zip(viewers.iter_mut()) {
        let end = a.comment(stream, "ana", "end").await;
        let seen = viewer.events_until(id(&end)).await;
        let ids: Vec<&str> = seen.iter().filter_map(|e| e["event_id"].as_str()).collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{stream}: a repeat reached a viewer"
        );
        let mine = posted.iter().filter(|p| &p.stream == stream);
        let missed: Vec<u64> = mine
            .filter(|p| !unique.contains(p.event_id.as_str()))
            .map(|p| p.seq)
            .collect();
        assert!(
            missed.is_empty(),
            "{stream}: viewers in b missed {missed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_mirror_resumes_without_losing_acknowledged_events() {
    // Longer than the mirror's restart, so every event must also reach the viewers (the staleness bound has
    // tests of its own).
    let (a, b) = two_regions_with(&["--staleness-ms=60000"]).await;
    let a_to_b = mirror(&a, &b).await;
    let (streams, mut viewers, load) = b_watches_while_a_posts(&a, &b, "mirror", 3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a_to_b.kill().await;
    let a_to_b = mirror(&a, &b).await;
    let posted = load.await.expect("load");
    assert_eq!(posted.len(), 300, "every comment was acknowledged in a");

    assert_mirrored_once(&a, &b, &posted, &streams, &mut viewers).await;
    let copies = support::metric(b.edges[0].admin, "chorus_edge_duplicates_dropped_total").await;
    println!("repeated copies dropped by the edge in b: {copies}");
    drop(a_to_b);
    a.stop().await;
    b.stop().await;
}

/// Which region's cluster goes away while the mirror copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Away {
    Source,
    Target,
}

/// Comments flow from a to b while one cluster is cut off for 2 s (every connection to it reset, new ones
/// refused) and then comes back: the mirror resumes by itself and nothing acknowledged is lost or shown twice.
/// With edge leases longer than the outage none lapses; with shorter ones b's fanout gives its edge up and,
/// once the lease is renewed, first sends it what was routed meanwhile.
async fn the_mirror_rides_out(away: Away, lease_ttl_ms: u64) {
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let (a, b, proxy) = match away {
        Away::Source => {
            let (a, proxy) = TestKafka::start_region_behind_proxy(&prefix, "a").await;
            (a, TestKafka::start_region(&prefix, "b").await, proxy)
        }
        Away::Target => {
            let a = TestKafka::start_region(&prefix, "a").await;
            let (b, proxy) = TestKafka::start_region_behind_proxy(&prefix, "b").await;
            (a, b, proxy)
        }
    };
    let flags = |other: &str| {
        vec![
            format!("--mirrored-regions={other}"),
            "--staleness-ms=60000".to_owned(),
        ]
    };
    let lease = format!("--lease-ttl-ms={lease_ttl_ms}");
    let edges = [lease.as_str()];
    let a = Cluster::start_full(a, 1, 1, &edges, &flags("b")).await;
    let b = Cluster::start_full(b, 1, 1, &edges, &flags("a")).await;
    let a_to_b = mirror(&a, &b).await;
    let (streams, mut viewers, load) = b_watches_while_a_posts(&a, &b, "away", 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    assert!(
        proxy.connections_cut() > 0,
        "the cut reset the cluster's clients"
    );
    let posted = load.await.expect("load");
    let slowest = posted
        .iter()
        .map(|p| p.acked - p.sent)
        .max()
        .unwrap_or_default();
    println!(
        "{away:?} cluster away for 2 s ({} connections cut): {} of 500 comments acknowledged in a, the \
         slowest after {slowest:?}",
        proxy.connections_cut(),
        posted.len()
    );
    match away {
        // Ingest in a answered 503 while its cluster was away; the rest was acknowledged.
        Away::Source => assert!(posted.len() >= 200, "only {} acknowledged", posted.len()),
        // a never noticed.
        Away::Target => assert_eq!(posted.len(), 500, "every comment was acknowledged in a"),
    }
    let expiries = support::metric(b.fanouts[0].admin, "chorus_fanout_lease_expiries_total").await;
    if lease_ttl_ms > 5_000 {
        assert_eq!(expiries, 0.0, "no lease lapsed in a 2 s outage");
    } else {
        assert!(
            expiries >= 1.0,
            "the {lease_ttl_ms} ms lease lapsed in the outage"
        );
    }
    assert_mirrored_once(&a, &b, &posted, &streams, &mut viewers).await;
    let copied = support::metric(a_to_b.admin, "chorus_mirror_records_total").await;
    println!(
        "the mirror copied {copied} records, {} acknowledged in a",
        posted.len()
    );
    drop(a_to_b);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_rides_out_its_source_cluster_going_away() {
    the_mirror_rides_out(Away::Source, 10_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_rides_out_its_target_cluster_going_away() {
    the_mirror_rides_out(Away::Target, 10_000).await;
}

/// The outage outlasts the edge's lease in b: b's fanout stops pushing to it, and when the lease is renewed it
/// first sends the edge the events routed meanwhile, so its viewers still miss nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_lease_lapsed_in_an_outage_gets_what_it_missed() {
    the_mirror_rides_out(Away::Target, 1_500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_in_one_region_are_live_only_for_the_other_regions_events() {
    let (a, b) = two_regions().await;
    let _a_to_b = mirror(&a, &b).await;
    let mut early = b.viewer(0, "live").await;
    let before = a.comment("live", "ana", "before the join").await;
    early.events_until(id(&before)).await;

    let mut late = b.viewer(0, "live").await;
    let mirrored = format!("a.{}", b.kafka.args.topics().events);
    let join = late.hello["join"]
        .as_array()
        .expect("join positions")
        .iter()
        .find(|j| j["topic"] == mirrored.as_str())
        .unwrap_or_else(|| panic!("a join position on {mirrored}: {}", late.hello))
        .clone();
    assert!(join["offset"].as_i64().expect("known") > before["offset"].as_i64().expect("offset"));
    let after = a.comment("live", "ana", "after the join").await;
    let seen = late.events_until(id(&after)).await;
    assert_eq!(seen.len(), 1, "only what a sent after the join: {seen:?}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_region_latency_beside_in_region_latency() {
    let (a, b) = two_regions().await;
    let _a_to_b = mirror(&a, &b).await;
    let mut in_a = a.viewer(0, "lat").await;
    let mut in_b = b.viewer(0, "lat").await;
    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let sent = Instant::now();
        let accepted = a.comment("lat", "ana", &format!("ping {i}")).await;
        in_a.events_until(id(&accepted)).await;
        local.push(sent.elapsed());
        in_b.events_until(id(&accepted)).await;
        remote.push(sent.elapsed());
    }
    local.sort();
    remote.sort();
    println!(
        "publish-to-deliver, 100 comments posted in region a: in a p50 {:?} p99 {:?}; in b (via the mirror) p50 {:?} p99 {:?}",
        percentile(&local, 0.5),
        percentile(&local, 0.99),
        percentile(&remote, 0.5),
        percentile(&remote, 0.99)
    );
    assert!(
        percentile(&remote, 0.5) >= percentile(&local, 0.5),
        "the mirror adds a hop"
    );
    a.stop().await;
    b.stop().await;
}
