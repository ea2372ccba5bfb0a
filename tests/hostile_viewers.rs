//! Viewers that break the rules, against the real stack. Ten that flood pings without reading are closed with
//! 1008, cost the edge next to no memory and leave healthy viewers' latency alone; one that stays within the
//! rate but never reads stops being read (the edge holds one pong for it, not one per ping); a message too big
//! gets 1009, invalid UTF-8 1007, a frame that breaks the protocol 1002, each before the TCP close; a made-up
//! cursor gets a 400 problem document.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::load::post_at_rate;
use support::viewer::{latencies_without_loss, read_until, small_socket};
use support::{metric, percentile, wait_metric, Cluster, Process, SseReader, WAIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

const FLOODERS: usize = 10;
/// How long the flooders keep at it, as in the acceptance.
const FLOOD: Duration = Duration::from_secs(30);
const HEALTHY: usize = 50;
/// Comments per second, and for how long, in each latency run.
const RATE: u32 = 100;
const LOAD: Duration = Duration::from_secs(10);
/// Longest a flooder's ping write may take: longer, and the edge is no longer reading it.
const BLOCKED: Duration = Duration::from_secs(1);
/// At most this many pings per connection (the edge closes or stops reading a flooder long before).
const MAX_PINGS: u64 = 2_000_000;
const MIB_KIB: u64 = 1024;

type Socket = WebSocketStream<TcpStream>;

/// Pings of the largest size a control frame may have, written without reading anything, until `until`, or
/// the connection fails (the edge closed it), or a write stays blocked for [`BLOCKED`] (the edge stopped
/// reading). The pings written, and whether writes blocked.
async fn flood(socket: &mut Socket, until: Instant) -> (u64, bool) {
    let ping = Message::Ping(Bytes::from(vec![0x5a; 125]));
    let mut sent = 0;
    while sent < MAX_PINGS && Instant::now() < until {
        match tokio::time::timeout(BLOCKED, socket.send(ping.clone())).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) => return (sent, false),
            Err(_) => return (sent, true),
        }
    }
    (sent, false)
}

/// Reads what the edge sent until its Close: the code, if a Close came before the end of the connection.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Some(frame.map_or(1005, |f| u16::from(f.code)))
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// What one flooding client saw: its connections, the close code each ended with, its pings.
#[derive(Debug, Default)]
struct Flooded {
    codes: Vec<Option<u16>>,
    pings: u64,
}

/// A client that floods pings without reading until `until`; each time the edge closes it, it reads what it
/// was sent (the close code) and comes back, a few times a second (faster would be a connection flood, which
/// is not this test's).
async fn flooder(url: String, until: Instant) -> Flooded {
    let mut flooded = Flooded::default();
    while Instant::now() < until {
        let mut socket = small_socket(&url).await;
        let (pings, blocked) = flood(&mut socket, until).await;
        assert!(
            !blocked,
            "the edge closed the flooder before its writes blocked"
        );
        flooded.pings += pings;
        flooded.codes.push(close_code(&mut socket).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    flooded
}

/// The healthy viewers of `stream` through one load run: their p99 latency in ms; none loses a comment.
async fn healthy_p99(cluster: &Cluster, edge: &Process, stream: &str) -> i64 {
    let url = format!("ws://{}/v1/streams/{stream}/ws", edge.addr);
    let joined = metric(edge.admin, "chorus_edge_joins_total").await;
    let viewers: Vec<_> = (0..HEALTHY)
        .map(|_| tokio::spawn(read_until(url.clone(), "the end", LOAD + FLOOD + WAIT)))
        .collect();
    wait_metric(edge.admin, "chorus_edge_joins_total", |v| {
        v >= joined + HEALTHY as f64
    })
    .await;
    let streams = vec![stream.to_owned()];
    let posted = post_at_rate(cluster.ingest_url(""), streams, RATE, LOAD, 64).await;
    assert_eq!(
        posted.len() as u64,
        u64::from(RATE) * LOAD.as_secs(),
        "every comment acknowledged"
    );
    tokio::time::timeout(WAIT, cluster.comment(stream, "test", "the end"))
        .await
        .expect("the last comment acknowledged in time");
    let latencies = latencies_without_loss(viewers, &posted).await;
    percentile(&latencies, 0.99)
}

/// An edge of its own (to measure its memory) on `cluster`, with `extra` flags.
async fn edge(cluster: &Cluster, extra: &[&str]) -> Process {
    let mut flags = cluster.kafka_flags();
    flags.push("--max-connections-per-address=1000".to_owned());
    flags.extend(extra.iter().map(|f| f.to_string()));
    let edge = Process::start("edge", &flags).await;
    wait_metric(edge.admin, "chorus_edge_push_sessions", |v| v >= 1.0).await;
    edge
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flooders_are_closed_with_1008_and_hurt_nobody() {
    let cluster = Cluster::start(0, 1).await;
    let edge = edge(&cluster, &[]).await;
    let baseline = healthy_p99(&cluster, &edge, "calm").await;

    let before_kib = edge.rss_kib();
    let url = format!("ws://{}/v1/streams/rough/ws", edge.addr);
    let until = Instant::now() + FLOOD;
    let flooders: Vec<_> = (0..FLOODERS)
        .map(|_| tokio::spawn(flooder(url.clone(), until)))
        .collect();
    let done = CancellationToken::new();
    let flooding = async {
        let mut flooded = Vec::new();
        for flooder in flooders {
            flooded.push(flooder.await.expect("flooder"));
        }
        done.cancel();
        flooded
    };
    // The edge's memory, sampled while the flooders are at it.
    let sampling = async {
        let mut peak = 0;
        loop {
            peak = edge.rss_kib().max(peak);
            tokio::select! {
                () = done.cancelled() => return peak,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    };
    let (with_flooders, flooded, peak_kib) =
        tokio::join!(healthy_p99(&cluster, &edge, "rough"), flooding, sampling);
    let after_kib = edge.rss_kib();

    let codes: Vec<Option<u16>> = flooded.iter().flat_map(|f| f.codes.clone()).collect();
    let pings: u64 = flooded.iter().map(|f| f.pings).sum();
    let violations = metric(edge.admin, "chorus_edge_viewer_violations_total").await;
    println!(
        "{FLOODERS} ping flooders for {FLOOD:?}: {} connections, {pings} pings written, {violations} closed for \
         what they sent; edge RSS {before_kib} KiB before, {peak_kib} KiB at the peak, {after_kib} KiB after; \
         p99 of {HEALTHY} healthy viewers {baseline} ms alone, {with_flooders} ms beside the flooders",
        codes.len()
    );
    assert!(codes.len() >= FLOODERS, "every flooder connected");
    let not_1008: Vec<_> = codes.iter().filter(|c| **c != Some(1008)).collect();
    assert!(
        not_1008.is_empty(),
        "each flooder finds a Close with 1008 before the end of its connection: {not_1008:?} of {}",
        codes.len()
    );
    assert_eq!(violations, codes.len() as f64, "each counted");
    assert!(
        peak_kib.max(after_kib) <= before_kib + 16 * MIB_KIB,
        "the flooders added at most 16 MB to the edge: {before_kib} KiB before, {peak_kib} KiB at the peak"
    );
    // Within 2x of the run without them (with 25 ms of slack for scheduling noise on a shared machine).
    assert!(
        with_flooders <= 2 * baseline.max(25),
        "p99 {with_flooders} ms vs {baseline} ms"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_is_not_read_either() {
    let cluster = Cluster::start(0, 1).await;
    // A rate limit that never trips and writes that never time out: only the bound on what the edge holds
    // stands between the flooders and its memory.
    let edge = edge(
        &cluster,
        &[
            "--max-inbound-frames-per-s=1000000000",
            "--inbound-frames-burst=1000000000",
            "--write-timeout-ms=120000",
            "--heartbeat-ms=120000",
        ],
    )
    .await;
    let url = format!("ws://{}/v1/streams/quiet/ws", edge.addr);
    let before_kib = edge.rss_kib();
    let until = Instant::now() + WAIT;
    let floods: Vec<_> = (0..FLOODERS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut socket = small_socket(&url).await;
                let flooded = flood(&mut socket, until).await;
                (socket, flooded)
            })
        })
        .collect();
    let mut sockets = Vec::new();
    let mut pings = Vec::new();
    for flood in floods {
        let (socket, (sent, blocked)) = flood.await.expect("flooder");
        assert!(
            blocked,
            "the edge kept reading a viewer it could not write to: {sent} pings in {WAIT:?}"
        );
        pings.push(sent);
        sockets.push(socket);
    }
    let after_kib = edge.rss_kib();
    let per_viewer = after_kib.saturating_sub(before_kib) / FLOODERS as u64;
    println!(
        "{FLOODERS} viewers pinging without reading, never limited: the edge stopped reading each after \
         {pings:?} pings (what the sockets' buffers hold); edge RSS {before_kib} KiB before, {after_kib} KiB \
         after ({per_viewer} KiB per viewer)"
    );
    assert!(
        after_kib <= before_kib + 16 * MIB_KIB,
        "{before_kib} KiB before, {after_kib} KiB after"
    );
    drop(sockets);
    cluster.stop().await;
}

/// A viewer of `stream` on the cluster's edge, its `hello` read.
async fn viewer(cluster: &Cluster, stream: &str) -> Socket {
    let mut socket = small_socket(&cluster.viewer_url(0, stream)).await;
    let hello = tokio::time::timeout(WAIT, socket.next())
        .await
        .expect("hello in time");
    assert!(
        matches!(hello, Some(Ok(Message::Text(_)))),
        "hello first: {hello:?}"
    );
    socket
}

async fn violations(cluster: &Cluster, reason: &str) -> f64 {
    let body = reqwest::get(format!("http://{}/metrics", cluster.edges[0].admin))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics");
    let line = format!("chorus_edge_viewer_violations_total{{reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_big_is_closed_with_1009() {
    let cluster = Cluster::start(1, 1).await;
    let mut socket = viewer(&cluster, "big").await;
    // Over the edge's default `--max-inbound-bytes` (4096); the edge may close before it is all written.
    let _ = socket.send(Message::Text("x".repeat(10_000).into())).await;
    assert_eq!(close_code(&mut socket).await, Some(1009));
    assert_eq!(violations(&cluster, "too_big").await, 1.0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_in_a_text_message_is_closed_with_1007() {
    let cluster = Cluster::start(1, 1).await;
    let mut socket = viewer(&cluster, "garbled").await;
    let text = Frame::message(
        Bytes::from_static(b"ok \xff\xfe"),
        OpCode::Data(Data::Text),
        true,
    );
    socket.send(Message::Frame(text)).await.expect("send");
    assert_eq!(close_code(&mut socket).await, Some(1007));
    assert_eq!(violations(&cluster, "invalid_utf8").await, 1.0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_break_the_protocol_are_closed_with_1002() {
    let cluster = Cluster::start(1, 1).await;
    // Written as raw bytes under the client's WebSocket layer, which would not write them.
    let frames: [(&str, &[u8]); 3] = [
        // FIN, a reserved bit and text; masked (with a zero mask), "hi".
        ("reserved bit", &[0xc1, 0x82, 0, 0, 0, 0, b'h', b'i']),
        ("unmasked", &[0x81, 0x02, b'h', b'i']),
        ("unknown opcode", &[0x83, 0x80, 0, 0, 0, 0]),
    ];
    for (what, bytes) in frames {
        let mut socket = viewer(&cluster, "broken").await;
        socket.get_mut().write_all(bytes).await.expect("write");
        assert_eq!(close_code(&mut socket).await, Some(1002), "{what}");
    }
    assert_eq!(violations(&cluster, "protocol_error").await, 3.0);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_the_edge_did_not_give_out_are_not_resumed_and_the_viewer_stays() {
    let cluster = Cluster::start(1, 1).await;
    let edge = cluster.edges[0].addr;
    let poll = format!("http://{edge}/v1/streams/cursed/poll");
    let sse = format!("http://{edge}/v1/streams/cursed/sse");
    let first: Value = cluster
        .http
        .get(&poll)
        .send()
        .await
        .expect("poll")
        .json()
        .await
        .expect("JSON");
    let cursor = first["cursor"].as_str().expect("cursor").to_owned();
    let (epoch, _) = cursor.split_once(':').expect("an epoch");
    let join = &first["frames"][0]["join"][0];
    let (topic, partition) = (
        join["topic"].as_str().expect("topic"),
        join["partition"].as_i64().expect("partition"),
    );
    let other = (partition + 1) % 4;
    let made_up = [
        format!("{epoch}:{topic}/{partition}/-1"),
        format!("{epoch}:secrets/{partition}/0"),
        format!("{epoch}:{topic}/{other}/0"),
        format!("{epoch}:{topic}/{partition}/1,{topic}/{partition}/2"),
        format!("{topic}/{partition}/0"),
        "not a cursor".to_owned(),
    ];
    for bad in &made_up {
        let polled = cluster
            .http
            .get(&poll)
            .query(&[("cursor", bad.as_str()), ("wait_ms", "0")])
            .send()
            .await
            .expect("poll");
        assert_eq!(polled.status(), 200, "{bad}");
        let answer: Value = polled.json().await.expect("JSON");
        let frames = answer["frames"].as_array().expect("frames");
        assert_eq!(frames[0]["type"], "hello", "{bad}: {answer}");
        assert_eq!(frames[0]["resumed"], false, "{bad}: {answer}");
        assert_eq!(frames[1]["reason"], "not_resumed", "{bad}: {answer}");
        let mut streamed = SseReader::open(&cluster.http, &sse, Some(bad)).await;
        let hello = streamed.next().await.data;
        assert_eq!(hello["resumed"], false, "{bad}: {hello}");
        let gap = streamed.next().await.data;
        assert_eq!(gap["reason"], "not_resumed", "{bad}: {gap}");
    }
    let again = cluster
        .http
        .get(&poll)
        .query(&[("cursor", cursor.as_str()), ("wait_ms", "0")])
        .send()
        .await
        .expect("poll");
    assert_eq!(
        again.status(),
        200,
        "the cursor the edge gave out: {cursor}"
    );
    cluster.stop().await;
}
