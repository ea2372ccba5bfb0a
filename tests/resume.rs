//! Reconnects lose nothing: a viewer that comes back with its cursor, to any edge of its region, gets every
//! event after it, in order, each once, then the live stream; one whose cursor cannot be resumed is told so
//! (`resumed: false` and a `not_resumed` gap) and goes on as a live-only join.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::load::{post_at_rate, Posted};
use support::resume::{Resumer, Seen, Wire};
use support::{metric_of, Cluster, Process, TestKafka, Viewer, WAIT};

/// Edges drain in half a second here, and ask viewers back within 200 ms.
const EDGE_FLAGS: [&str; 2] = ["--drain-ms=500", "--reconnect-jitter-ms=200"];

/// Every comment in `posted` (all of one stream, so of one partition) arrived once, in offset order.
fn assert_exactly_once_in_order(seen: &Seen, posted: &[Posted], what: &str) {
    let got: Vec<&str> = seen.events.iter().map(|e| e.event_id.as_str()).collect();
    let unique: HashSet<&str> = got.iter().copied().collect();
    assert_eq!(unique.len(), got.len(), "{what}: an event arrived twice");
    let mut expected: Vec<&Posted> = posted.iter().collect();
    expected.sort_by_key(|p| p.offset);
    let expected: Vec<&str> = expected.iter().map(|p| p.event_id.as_str()).collect();
    let missing: Vec<i64> = posted
        .iter()
        .filter(|p| !unique.contains(p.event_id.as_str()))
        .map(|p| p.offset)
        .collect();
    let offsets: Vec<i64> = seen.events.iter().map(|e| e.offset).collect();
    assert!(
        missing.is_empty(),
        "{what}: offsets {missing:?} of {} never arrived; got {offsets:?}; hellos {:?}; gaps {:?}",
        expected.len(),
        seen.hellos,
        seen.gaps
    );
    assert_eq!(got, expected, "{what}: out of order");
}

/// Resumes counted on an edge with `outcome`.
async fn resumes(admin: SocketAddr, outcome: &str) -> f64 {
    let outcome = format!("outcome=\"{outcome}\"");
    metric_of(admin, "chorus_edge_resumes_total", &outcome).await
}

async fn drain(cluster: &Cluster, edge: usize) {
    let admin = cluster.edges[edge].admin;
    let answer = cluster
        .http
        .post(format!("http://{admin}/drain"))
        .send()
        .await
        .expect("drain");
    assert_eq!(answer.status(), 200);
}

/// A viewer on edge A is drained while 200 comments a second flow, comes back to edge B with its cursor and
/// ends with every comment of the whole test exactly once and in order.
async fn drained_viewer_resumes_on_another_edge(wire: Wire) {
    let mut cluster = Cluster::start_with(2, 1, &EDGE_FLAGS).await;
    let stream = format!("resumed-{wire:?}").to_lowercase();
    let edges: Vec<SocketAddr> = cluster.edges.iter().map(|e| e.addr).collect();
    let viewer = Resumer::start(wire, edges, &stream, None);
    assert!(
        viewer.wait_for(WAIT, |s| !s.hellos.is_empty()).await,
        "hello"
    );

    let load = tokio::spawn(post_at_rate(
        cluster.ingest_url(""),
        vec![stream.clone()],
        200,
        Duration::from_secs(4),
        64,
    ));
    let flowing = viewer.wait_for(WAIT, |s| s.events.len() >= 50).await;
    assert!(flowing, "comments reach the viewer on edge A");
    drain(&cluster, 0).await;
    let posted = load.await.expect("load");
    assert!(
        posted.len() >= 700,
        "the load ran: {} acknowledged",
        posted.len()
    );
    let ids: HashSet<String> = posted.iter().map(|p| p.event_id.clone()).collect();
    let all = viewer
        .wait_for(WAIT, |s| {
            ids.iter()
                .all(|id| s.events.iter().any(|e| &e.event_id == id))
        })
        .await;
    let seen = viewer.stop().await;
    let hellos: Vec<&Value> = seen.hellos.iter().collect();
    assert!(hellos.len() >= 2, "came back after the drain: {hellos:?}");
    let back = hellos.last().expect("hello");
    assert_eq!(back["resumed"], true, "{back}");
    assert_ne!(back["edge_id"], hellos[0]["edge_id"], "on the other edge");
    assert!(seen.gaps.is_empty(), "no gap: {:?}", seen.gaps);
    assert!(all, "every acknowledged comment arrived");
    assert_exactly_once_in_order(&seen, &posted, &format!("{wire:?}"));
    let resumed = resumes(cluster.edges[1].admin, "resumed").await;
    assert!(resumed >= 1.0, "counted: {resumed}");
    cluster.edges.remove(0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_viewer_drained_resumes_on_another_edge_with_nothing_lost() {
    drained_viewer_resumes_on_another_edge(Wire::WebSocket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_viewer_drained_resumes_on_another_edge_with_last_event_id() {
    drained_viewer_resumes_on_another_edge(Wire::Sse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_viewer_drained_resumes_on_another_edge_with_its_cursor() {
    drained_viewer_resumes_on_another_edge(Wire::LongPoll).await;
}

/// A long-poll client pausing between polls while its stream's only viewer on the edge: what was posted in
/// the pause is not lost when the room closed meanwhile (fanout replays it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_client_pausing_between_polls_misses_nothing() {
    let cluster = Cluster::start(1, 1).await;
    let poll = format!("http://{}/v1/streams/paused/poll", cluster.edges[0].addr);
    let first: Value = cluster
        .http
        .get(&poll)
        .send()
        .await
        .expect("poll")
        .json()
        .await
        .expect("JSON");
    let mut cursor = first["cursor"].as_str().expect("cursor").to_owned();
    for round in 0..3 {
        // The room lingers 100 ms after its last poll: this comment comes after it closed.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let posted = cluster
            .comment("paused", "u", &format!("in pause {round}"))
            .await;
        let answer: Value = cluster
            .http
            .get(&poll)
            .query(&[("cursor", cursor.as_str()), ("wait_ms", "5000")])
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("JSON");
        let frames = answer["frames"].as_array().expect("frames");
        let hello = frames.iter().find(|f| f["type"] == "hello");
        assert!(hello.is_none_or(|h| h["resumed"] == true), "{answer}");
        let ids: Vec<&Value> = frames
            .iter()
            .filter(|f| f["type"] == "events")
            .flat_map(|f| f["events"].as_array().expect("events"))
            .map(|e| &e["event_id"])
            .collect();
        assert_eq!(ids, [&posted["event_id"]], "round {round}: {answer}");
        cursor = answer["cursor"].as_str().expect("cursor").to_owned();
    }
    cluster.stop().await;
}

/// The viewer was not resumed, was told so, and still gets the live stream (and nothing from before).
async fn assert_not_resumed(cluster: &Cluster, url: &str, stream: &str, what: &str) {
    let mut viewer = Viewer::connect(url).await;
    assert_eq!(viewer.hello["resumed"], false, "{what}: {}", viewer.hello);
    let gap = viewer.next_frame().await;
    assert_eq!(gap["type"], "gap", "{what}: {gap}");
    assert_eq!(gap["reason"], "not_resumed", "{what}: {gap}");
    let live = cluster.comment(stream, "u", "after").await;
    let events = viewer
        .events_until(live["event_id"].as_str().expect("id"))
        .await;
    assert_eq!(
        events.len(),
        1,
        "{what}: only what came after the join: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_that_cannot_be_resumed_say_so_and_keep_the_connection() {
    let fanout = [
        "--resume-window-ms=1000".to_owned(),
        "--staleness-ms=1000".to_owned(),
    ];
    let edge_flags = ["--resume-window-ms=1000"];
    let cluster = Cluster::start_full(TestKafka::start().await, 1, 1, &edge_flags, &fanout).await;
    let edge = cluster.edges[0].addr;
    let url = |stream: &str, cursor: &str| {
        let cursor: String = url_escape(cursor);
        format!("ws://{edge}/v1/streams/{stream}/ws?cursor={cursor}")
    };
    // A cursor of its time, then the window passes while comments flow and the room closes.
    let mut viewer = cluster.viewer(0, "windowed").await;
    let first = cluster.comment("windowed", "u", "one").await;
    let old = cursor_after(&mut viewer, first["event_id"].as_str().expect("id")).await;
    viewer.close().await;
    cluster.comment("windowed", "u", "missed").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let evicts = cluster
        .comment("windowed", "u", "evicts what is older than the window")
        .await;
    // The pipeline has passed it (a watcher of another stream on the partition would see it): wait until a
    // live join of the stream starts after it.
    let passed = evicts["offset"].as_i64().expect("offset") + 1;
    known_on(edge, "windowed", passed).await;
    assert_not_resumed(
        &cluster,
        &url("windowed", &old),
        "windowed",
        "older than the window",
    )
    .await;
    let window = resumes(cluster.edges[0].admin, "window").await;
    assert_eq!(window, 1.0);

    // Another stream's cursor, and garbage.
    let other = cluster.viewer(0, "other-stream").await;
    let foreign = other.hello["cursor"].as_str().expect("cursor").to_owned();
    other.close().await;
    for bad in [foreign.as_str(), "garbage", "00ff:events/0/-1", ""] {
        assert_not_resumed(&cluster, &url("windowed", bad), "windowed", bad).await;
    }
    let malformed = resumes(cluster.edges[0].admin, "malformed").await;
    assert!(malformed >= 3.0, "counted: {malformed}");
    cluster.stop().await;
}

fn url_escape(text: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("c", text)])
        .expect("url")
        .query()
        .expect("query")
        .trim_start_matches("c=")
        .to_owned()
}

/// A cursor from before the broker was replaced (same cluster id, the topic created anew): another epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_from_a_log_that_is_gone_is_another_epoch() {
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let cluster =
        Cluster::start_on(TestKafka::start_region(&prefix, "local").await, 1, 1, &[]).await;
    let mut viewer = cluster.viewer(0, "epoch").await;
    let mut last = Value::Null;
    for n in 0..5 {
        last = cluster.comment("epoch", "u", &format!("before {n}")).await;
    }
    let cursor = cursor_after(&mut viewer, last["event_id"].as_str().expect("id")).await;
    cluster.stop().await;
    let again = Cluster::start_on(TestKafka::start_region(&prefix, "local").await, 1, 1, &[]).await;
    let edge = again.edges[0].addr;
    let url = format!(
        "ws://{edge}/v1/streams/epoch/ws?cursor={}",
        url_escape(&cursor)
    );
    assert_not_resumed(&again, &url, "epoch", "a log that is gone").await;
    let epoch = resumes(again.edges[0].admin, "epoch").await;
    assert_eq!(epoch, 1.0);
    again.stop().await;
}

/// The cursor of the `events` frame that brings `event_id`.
async fn cursor_after(viewer: &mut Viewer, event_id: &str) -> String {
    loop {
        let frame = viewer.next_frame().await;
        let has = frame["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["event_id"] == event_id));
        if has {
            return frame["cursor"].as_str().expect("cursor").to_owned();
        }
    }
}

/// 1,000 viewers on two edges (as processes); one edge is SIGKILLed while comments flow, and its viewers come
/// back to the survivor with their cursors: none missed a comment, none saw one twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_viewers_of_a_killed_edge_resume_on_the_survivor() {
    let cluster = Cluster::start(0, 1).await;
    let mut flags = cluster.kafka_flags();
    // One test client, so one address for every viewer: let them all in at once.
    flags.extend(
        [
            "--max-connections-per-address=4000",
            "--max-pending-per-address=4000",
            "--lease-ttl-ms=3000",
        ]
        .map(String::from),
    );
    let named = |id: &str| [flags.clone(), vec![format!("--edge-id={id}")]].concat();
    let a = Process::start("edge", &named("edge-killed")).await;
    let b = Process::start("edge", &named("edge-survivor")).await;
    let streams: Vec<String> = (0..10).map(|n| format!("herd-{n}")).collect();
    // Until fanout has announced where the partitions stand, a join has no position to start from (and a
    // subscription none to fill from): wait until both edges know them.
    for edge in [a.addr, b.addr] {
        for stream in &streams {
            known_on(edge, stream, 0).await;
        }
    }
    // Half the streams have viewers on both edges (the survivor holds them), half only on the edge killed
    // (fanout replays them).
    let mut viewers = Vec::new();
    for n in 0..1_000 {
        let stream = &streams[n % streams.len()];
        let on_a = n % streams.len() >= 5 || n % 2 == 0;
        let edges = if on_a {
            vec![a.addr, b.addr]
        } else {
            vec![b.addr, a.addr]
        };
        viewers.push((
            on_a,
            stream.clone(),
            Resumer::start(Wire::WebSocket, edges, stream, None),
        ));
    }
    for (_, _, viewer) in &viewers {
        assert!(
            viewer.wait_for(WAIT, |s| !s.hellos.is_empty()).await,
            "hello"
        );
    }
    let load = tokio::spawn(post_at_rate(
        cluster.ingest_url(""),
        streams.clone(),
        100,
        Duration::from_secs(6),
        64,
    ));
    for (_, _, viewer) in &viewers {
        assert!(
            viewer.wait_for(WAIT, |s| s.events.len() >= 3).await,
            "events flow"
        );
    }
    let killed = tokio::time::Instant::now();
    a.kill().await;
    let posted = load.await.expect("load");
    assert!(posted.len() >= 500, "the load ran: {}", posted.len());
    let mut caught_up = Vec::new();
    let mut resumed = 0;
    for (on_a, stream, viewer) in viewers {
        let mine: Vec<Posted> = posted
            .iter()
            .filter(|p| p.stream == stream)
            .cloned()
            .collect();
        let ids: HashSet<&str> = mine.iter().map(|p| p.event_id.as_str()).collect();
        viewer
            .wait_for(WAIT, |s| {
                ids.iter()
                    .all(|id| s.events.iter().any(|e| e.event_id == *id))
            })
            .await;
        let seen = viewer.stop().await;
        assert_exactly_once_in_order(&seen, &mine, &stream);
        let first = &seen.hellos[0]["edge_id"];
        assert_eq!(
            first,
            if on_a { "edge-killed" } else { "edge-survivor" },
            "{stream}"
        );
        if on_a {
            let back = seen.hellos.last().expect("hello");
            assert_eq!(back["resumed"], true, "{stream}: {back}");
            resumed += 1;
            // Back: its first event after the kill (what it missed, replayed, or the next live one).
            let back = seen.events.iter().map(|e| e.at).find(|at| *at > killed);
            caught_up.push(back.map_or(Duration::ZERO, |at| at - killed));
        }
    }
    caught_up.sort();
    println!(
        "{resumed} viewers of the killed edge resumed on the survivor; from the kill to each one's first \
         event back: p50 {:?}, p99 {:?}, last {:?}",
        support::percentile(&caught_up, 0.5),
        support::percentile(&caught_up, 0.99),
        caught_up.last().copied().unwrap_or_default()
    );
    let counted = resumes(b.admin, "resumed").await;
    assert_eq!(counted, f64::from(resumed));
    b.kill().await;
    cluster.stop().await;
}

/// Waits until a live join of `stream` on `edge` starts at a known position, `at_least` or later.
async fn known_on(edge: SocketAddr, stream: &str, at_least: i64) {
    let started = tokio::time::Instant::now();
    loop {
        let probe = Viewer::connect(&format!("ws://{edge}/v1/streams/{stream}/ws")).await;
        let join = probe.hello["join"][0]["offset"].as_i64();
        probe.close().await;
        if join.is_some_and(|j| j >= at_least) {
            return;
        }
        let stands = format!("{join:?}");
        assert!(
            started.elapsed() < WAIT,
            "{edge} stands at {stands} for {stream}, not {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
