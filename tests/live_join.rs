//! Live-only delivery from the join position, against a real broker: joins under load, an edge and a fanout
//! killed mid-stream (as processes, no clean shutdown), and a restart of the whole pipeline.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::load::{post_at_rate, Posted};
use support::{metric, wait_metric, Cluster, Process, Viewer};
use tokio::time::Instant;

/// Fanout's position heartbeat (its default), the bound on how early a join position can be.
const HEARTBEAT: Duration = Duration::from_millis(50);

/// What one viewer saw.
struct Seen {
    edge: usize,
    connect: Instant,
    hello: Instant,
    join: Option<i64>,
    /// (offset, event_id, arrival)
    events: Vec<(i64, String, Instant)>,
}

/// Connects at `at` and collects events until one with text `sentinel` arrives.
async fn watch(url: String, edge: usize, at: Instant, sentinel: &'static str) -> Seen {
    tokio::time::sleep_until(at).await;
    let connect = Instant::now();
    let mut viewer = Viewer::connect(&url).await;
    let hello = Instant::now();
    let join = viewer.hello["join"][0]["offset"].as_i64();
    let mut events = Vec::new();
    loop {
        let frame = viewer.next_frame().await;
        if frame["type"] != "events" {
            continue;
        }
        let mut done = false;
        for event in frame["events"].as_array().expect("events") {
            let offset = event["offset"].as_i64().expect("offset");
            let id = event["event_id"].as_str().expect("id").to_owned();
            events.push((offset, id, Instant::now()));
            done |= event["text"] == sentinel;
        }
        if done {
            viewer.close().await;
            return Seen {
                edge,
                connect,
                hello,
                join,
                events,
            };
        }
    }
}

fn assert_ordered_without_repeats(name: &str, seen: &Seen) {
    let ids: HashSet<&String> = seen.events.iter().map(|(_, id, _)| id).collect();
    assert_eq!(ids.len(), seen.events.len(), "{name}: a repeated event");
    for pair in seen.events.windows(2) {
        assert!(
            pair[0].0 < pair[1].0,
            "{name}: offsets out of order: {} then {}",
            pair[0].0,
            pair[1].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_joining_under_load_see_everything_after_their_join_and_nothing_before() {
    let cluster = Cluster::start(2, 1).await;
    let stream = "hot";
    let seed: u64 = rand::random();
    println!("viewer join times from seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let load = tokio::spawn(post_at_rate(
        cluster.ingest_url(""),
        vec![stream.to_owned()],
        500,
        Duration::from_secs(8),
        64,
    ));
    let mut joins: Vec<u64> = (0..50).map(|_| rng.random_range(0..6_000)).collect();
    joins.sort_unstable();
    let viewers: Vec<_> = joins
        .iter()
        .enumerate()
        .map(|(i, at)| {
            let edge = i % 2;
            let at = start + Duration::from_millis(*at);
            tokio::spawn(watch(
                cluster.viewer_url(edge, stream),
                edge,
                at,
                "sentinel",
            ))
        })
        .collect();
    let posted = load.await.expect("load");
    assert_eq!(
        posted.len(),
        4000,
        "every comment of the load was acknowledged"
    );
    cluster.comment(stream, "test", "sentinel").await;
    let by_id: HashMap<&str, &Posted> = posted.iter().map(|p| (p.event_id.as_str(), p)).collect();

    let mut earliest_lead = Duration::ZERO;
    for (i, viewer) in viewers.into_iter().enumerate() {
        let seen = viewer.await.expect("viewer");
        let name = format!("viewer {i} (edge {})", seen.edge);
        assert_ordered_without_repeats(&name, &seen);
        let join = seen
            .join
            .unwrap_or_else(|| panic!("{name}: hello has a join position"));
        let received: HashSet<&str> = seen.events.iter().map(|(_, id, _)| id.as_str()).collect();
        for (offset, id, _) in &seen.events {
            assert!(
                *offset >= join,
                "{name}: offset {offset} is before its join position {join}"
            );
            if let Some(p) = by_id.get(id.as_str()) {
                // Acknowledged before the viewer connected: the join position may trail Kafka by the
                // heartbeat and fanout's consumer lag, never by more.
                if p.acked < seen.connect {
                    earliest_lead = earliest_lead.max(seen.connect - p.acked);
                }
            }
        }
        let missed: Vec<u64> = posted
            .iter()
            .filter(|p| p.sent > seen.hello && !received.contains(p.event_id.as_str()))
            .map(|p| p.seq)
            .collect();
        assert!(
            missed.is_empty(),
            "{name}: missed comments sent after its hello: {missed:?}"
        );
        let first = seen.events.first().map(|(_, _, at)| *at - seen.hello);
        println!(
            "{name}: joined at offset {join}, {} events, hello after {:?}, first event {:?} after hello",
            seen.events.len(),
            seen.hello - seen.connect,
            first.unwrap_or_default()
        );
    }
    println!(
        "earliest event shown to any viewer was acknowledged {earliest_lead:?} before it connected"
    );
    assert!(
        earliest_lead <= HEARTBEAT + Duration::from_millis(500),
        "an event acknowledged {earliest_lead:?} before the join was shown"
    );
    let filled = metric(
        cluster.fanouts[0].admin,
        "chorus_fanout_gap_fill_events_total",
    )
    .await;
    println!("gap fill sent {filled} buffered events to the edges for their first viewers");
    let joins = metric(cluster.edges[0].admin, "chorus_edge_joins_total").await
        + metric(cluster.edges[1].admin, "chorus_edge_joins_total").await;
    assert_eq!(joins, 50.0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_stops_pushing_to_a_crashed_edge_once_its_lease_expires() {
    let cluster = Cluster::start(1, 1).await;
    let fanout = cluster.fanouts[0].admin;
    let ttl = Duration::from_millis(2000);
    let mut flags = cluster.kafka_flags();
    flags.push(format!("--lease-ttl-ms={}", ttl.as_millis()));
    let crashing = Process::start("edge", &flags).await;
    wait_metric(fanout, "chorus_fanout_links_connected", |v| v == 2.0).await;

    let mut live = cluster.viewer(0, "crash").await;
    let mut doomed = Viewer::connect(&format!("ws://{}/v1/streams/crash/ws", crashing.addr)).await;
    let before = cluster.comment("crash", "u", "before the crash").await;
    let before = before["event_id"].as_str().expect("id");
    live.events_until(before).await;
    doomed.events_until(before).await;

    let killed = Instant::now();
    crashing.kill().await;
    wait_metric(fanout, "chorus_fanout_lease_expiries_total", |v| v >= 1.0).await;
    let took = killed.elapsed();
    println!("fanout dropped the crashed edge {took:?} after the kill (lease ttl {ttl:?})");
    assert!(took <= ttl + Duration::from_secs(1), "took {took:?}");
    assert_eq!(metric(fanout, "chorus_fanout_links_connected").await, 1.0);

    // Its subscription is still in the table, and ignored: only the live edge is pushed to.
    let pushed = metric(fanout, "chorus_fanout_deliveries_pushed_total").await;
    let after = cluster.comment("crash", "u", "after the crash").await;
    live.events_until(after["event_id"].as_str().expect("id"))
        .await;
    assert_eq!(
        metric(fanout, "chorus_fanout_deliveries_pushed_total").await,
        pushed + 1.0,
        "one delivery, to the live edge"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_fanouts_partitions_are_taken_over_without_loss_or_repeats() {
    let cluster = Cluster::start(1, 0).await;
    let edge = cluster.edges[0].admin;
    let mut flags = cluster.kafka_flags();
    flags.extend([
        format!("--group={}", cluster.fanout_group()),
        "--kafka-session-timeout-ms=6000".to_owned(),
        // Longer than the takeover, so every event must arrive (the staleness bound has its own tests).
        "--staleness-ms=60000".to_owned(),
    ]);
    let doomed = Process::start("fanout", &flags).await;
    let survivor = Process::start("fanout", &flags).await;
    wait_metric(edge, "chorus_edge_push_sessions", |v| v == 2.0).await;
    // Both own partitions once the group settled after the second member joined.
    wait_metric(doomed.admin, "chorus_fanout_rebalances_total", |v| v >= 3.0).await;

    let streams: Vec<String> = (0..8).map(|i| format!("takeover-{i}")).collect();
    let start = Instant::now();
    let viewers: Vec<_> = streams
        .iter()
        .map(|s| tokio::spawn(watch(cluster.viewer_url(0, s), 0, start, "sentinel")))
        .collect();
    wait_metric(edge, "chorus_edge_joins_total", |v| v == 8.0).await;
    let load = tokio::spawn(post_at_rate(
        cluster.ingest_url(""),
        streams.clone(),
        100,
        Duration::from_secs(12),
        32,
    ));
    tokio::time::sleep_until(start + Duration::from_secs(3)).await;
    let rebalances = "chorus_fanout_rebalances_total";
    let before = metric(survivor.admin, rebalances).await;
    let killed = Instant::now();
    doomed.kill().await;
    // The survivor's partitions are revoked when the group notices, then all of them are assigned to it.
    let phases = async {
        wait_metric(survivor.admin, rebalances, |v| v > before).await;
        let noticed = killed.elapsed();
        wait_metric(survivor.admin, rebalances, |v| v >= before + 2.0).await;
        (noticed, killed.elapsed())
    };
    let (posted, (noticed, assigned)) = tokio::join!(load, phases);
    let posted = posted.expect("load");
    assert_eq!(posted.len(), 1200, "every comment was acknowledged");
    for stream in &streams {
        cluster.comment(stream, "test", "sentinel").await;
    }
    let mut longest_silence = Duration::ZERO;
    for (stream, viewer) in streams.iter().zip(viewers) {
        let seen = viewer.await.expect("viewer");
        assert_ordered_without_repeats(stream, &seen);
        let received: HashSet<&str> = seen.events.iter().map(|(_, id, _)| id.as_str()).collect();
        let missing: Vec<String> = posted
            .iter()
            .filter(|p| &p.stream == stream && !received.contains(p.event_id.as_str()))
            .map(|p| format!("seq {} at {}:{}", p.seq, p.partition, p.offset))
            .collect();
        let offsets: Vec<i64> = seen.events.iter().map(|e| e.0).collect();
        assert!(
            missing.is_empty(),
            "{stream}: missing {missing:?}; received offsets {offsets:?}"
        );
        for pair in seen.events.windows(2) {
            if pair[1].2 > killed {
                longest_silence = longest_silence.max(pair[1].2 - pair[0].2);
            }
        }
    }
    println!(
        "takeover: the group noticed the kill after {noticed:?}, the survivor had every partition after \
         {assigned:?}; the longest silence seen by a viewer after the kill was {longest_silence:?}"
    );
    drop(survivor);
    cluster.stop().await;
}

/// A partition nothing was read from yet still has a committed position: comments posted while fanout was
/// down reach the viewer once a new fanout of the group starts, instead of being skipped by a start at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fanout_restart_skips_nothing_in_a_partition_that_had_no_events() {
    let cluster = Cluster::start(1, 0).await;
    let mut flags = cluster.kafka_flags();
    flags.extend([
        format!("--group={}", cluster.fanout_group()),
        // Longer than the restart, so every comment must arrive.
        "--staleness-ms=60000".to_owned(),
    ]);
    let first = Process::start("fanout", &flags).await;
    wait_metric(cluster.edges[0].admin, "chorus_edge_push_sessions", |v| {
        v == 1.0
    })
    .await;
    // The start positions of the empty partitions are committed.
    wait_metric(first.admin, "chorus_fanout_offset_commits_total", |v| {
        v >= 1.0
    })
    .await;
    let mut viewer = cluster.viewer(0, "quiet").await;
    first.kill().await;
    let mut posted = Vec::new();
    for i in 0..5 {
        let accepted = cluster
            .comment("quiet", "u", &format!("while down {i}"))
            .await;
        posted.push(accepted["event_id"].as_str().expect("id").to_owned());
    }
    let _second = Process::start("fanout", &flags).await;
    let seen = viewer.events_until(&posted[4]).await;
    let ids: Vec<&str> = seen.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(
        ids, posted,
        "every comment posted while fanout was down, once, in order"
    );
    cluster.stop().await;
}

/// An edge that could not renew its lease for a while (frozen here) is given up by fanout; when the lease is
/// renewed, fanout first sends it the events of its streams routed meanwhile, so its viewers miss nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_whose_lease_lapsed_gets_what_was_routed_meanwhile() {
    let cluster = Cluster::start(0, 1).await;
    let fanout = cluster.fanouts[0].admin;
    let mut flags = cluster.kafka_flags();
    flags.push("--lease-ttl-ms=1500".to_owned());
    let edge = Process::start("edge", &flags).await;
    wait_metric(edge.admin, "chorus_edge_push_sessions", |v| v == 1.0).await;
    let mut viewer = Viewer::connect(&format!("ws://{}/v1/streams/lapsed/ws", edge.addr)).await;
    let before = cluster.comment("lapsed", "u", "before").await;
    viewer
        .events_until(before["event_id"].as_str().expect("id"))
        .await;

    edge.freeze(true);
    wait_metric(fanout, "chorus_fanout_lease_expiries_total", |v| v >= 1.0).await;
    let consumed = metric(fanout, "chorus_fanout_events_consumed_total").await;
    let mut posted = Vec::new();
    for i in 0..5 {
        let accepted = cluster
            .comment("lapsed", "u", &format!("while lapsed {i}"))
            .await;
        posted.push(accepted["event_id"].as_str().expect("id").to_owned());
    }
    // Routed (to no edge) before the edge can renew its lease.
    wait_metric(fanout, "chorus_fanout_events_consumed_total", |v| {
        v >= consumed + 5.0
    })
    .await;
    edge.freeze(false);
    let seen = viewer.events_until(&posted[4]).await;
    let ids: Vec<&str> = seen.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(
        ids, posted,
        "what was routed while the lease had lapsed, once, in order"
    );
    let refilled = metric(fanout, "chorus_fanout_gap_fill_events_total").await;
    // At least the five (a lease that lapses twice is refilled twice; the edge drops the repeats).
    assert!(
        refilled >= 5.0,
        "the five came from fanout's buffer, {refilled} refilled"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_pipeline_replays_nothing_to_new_viewers() {
    let cluster = Cluster::start(1, 1).await;
    let mut viewer = cluster.viewer(0, "again").await;
    let mut last = String::new();
    for i in 0..20 {
        last = cluster.comment("again", "u", &format!("old {i}")).await["event_id"]
            .as_str()
            .expect("id")
            .to_owned();
    }
    viewer.events_until(&last).await;
    viewer.close().await;

    let cluster = cluster.restart(1, 1).await;
    let mut fresh = cluster.viewer(0, "again").await;
    let new = cluster.comment("again", "u", "new").await;
    let seen = fresh
        .events_until(new["event_id"].as_str().expect("id"))
        .await;
    assert_eq!(seen.len(), 1, "nothing from before the restart: {seen:?}");
    assert_eq!(seen[0]["text"], "new");
    cluster.stop().await;
}
