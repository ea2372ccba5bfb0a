//! Hostile clients against the real stack (issue 13, item 3): every listener (ingest's API and admin port, the
//! edge's viewers, internal link and admin port) closes a connection that sends nothing, half its headers or a
//! body that never comes within its timeout (408 where a response is due) and a kept-alive one when idle; long
//! responses (SSE, a long-poll's wait, a WebSocket) outlive every timeout; and half-open connections from one
//! address count against that address only.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::{metric, start_ingest, wait_metric, Cluster, SseReader, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Header, body and idle timeout of the roles under test: short, so that the test takes seconds.
const TIMEOUT: Duration = Duration::from_millis(800);
const FLAGS: &[&str] = &[
    "--header-timeout-ms=800",
    "--body-timeout-ms=800",
    "--idle-timeout-ms=800",
];
/// How much later than its timeout a connection may close on a busy machine.
const SLACK: Duration = Duration::from_secs(4);

/// A connection from `source` (bound before connecting, to pose as another client) that has sent `bytes`.
async fn connect_from(source: [u8; 4], to: SocketAddr, bytes: &[u8]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind the source address");
    let mut stream = tokio::time::timeout(WAIT, socket.connect(to))
        .await
        .expect("connect in time")
        .expect("connect");
    if !bytes.is_empty() {
        // A connection refused at accept may already be reset: what it sent does not matter then.
        let _ = stream.write_all(bytes).await;
    }
    stream
}

async fn connect(to: SocketAddr, bytes: &[u8]) -> TcpStream {
    connect_from([127, 0, 0, 1], to, bytes).await
}

/// Everything the server sent until it closed the connection (a reset counts as a close), and when it did,
/// at most `within` from now.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&all).into_owned();
    assert!(read.is_ok(), "still open after {within:?}; got {text:?}");
    (text, started.elapsed())
}

/// The stalled connections of the issue against one listener (`name` at `addr`); `post` is a path whose
/// handler reads the body (a `408` is due there), `None` where no handler does.
async fn probe(name: &str, addr: SocketAddr, post: Option<&str>) {
    let half = connect(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: chorus\r\nAccept: */*\r\n",
    )
    .await;
    let silent = connect(addr, b"").await;
    let path = post.unwrap_or("/healthz");
    let head = |framing: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: chorus\r\nX-User-Id: mallory\r\nContent-Type: application/json\r\n\
             {framing}\r\n\r\n"
        )
    };
    let length = connect(addr, head("Content-Length: 100").as_bytes()).await;
    let chunked = connect(
        addr,
        format!(
            "{}10\r\n{{\"text\": \"hi",
            head("Transfer-Encoding: chunked")
        )
        .as_bytes(),
    )
    .await;
    let idle = connect(addr, b"GET /healthz HTTP/1.1\r\nHost: chorus\r\n\r\n").await;

    let closes = join_all(
        [half, silent, length, chunked, idle]
            .into_iter()
            .map(|mut stream| async move { until_closed(&mut stream, TIMEOUT + SLACK).await }),
    )
    .await;
    let [half, silent, length, chunked, idle] = closes.try_into().expect("five probes");
    for (kind, (answer, after)) in [("half headers", &half), ("silent", &silent)] {
        assert_eq!(answer, "", "{name}, {kind}: closed without an answer");
        assert!(
            *after >= TIMEOUT / 2,
            "{name}, {kind}: closed after {after:?}, before its timeout"
        );
    }
    for (kind, (answer, _)) in [("Content-Length body", &length), ("chunked body", &chunked)] {
        if post.is_some() {
            assert!(
                answer.starts_with("HTTP/1.1 408"),
                "{name}, {kind}: {answer}"
            );
            assert!(
                answer.contains("application/problem+json")
                    && answer.contains("urn:chorus:problem:request-timeout"),
                "{name}, {kind}: {answer}"
            );
        }
    }
    let (answer, after) = idle;
    assert!(answer.starts_with("HTTP/1.1 "), "{name}, idle: {answer}");
    assert!(
        after >= TIMEOUT / 2,
        "{name}, idle: closed after {after:?}, before its idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_within_their_timeouts_on_every_listener() {
    let cluster = Cluster::start_with(1, 1, FLAGS).await;
    let edge = 0;
    let edge_admin = cluster.edges[edge].admin;
    let internal = cluster.edges[edge]
        .internal
        .expect("an edge's internal address");
    let ingest = start_ingest(&cluster.kafka.args, FLAGS).await;

    // Long responses, opened before the probes and used after them (past every timeout).
    let mut viewer = cluster.viewer(edge, "patient").await;
    let sse_url = format!("http://{}/v1/streams/patient/sse", cluster.edges[edge].addr);
    let mut sse = SseReader::open(&cluster.http, &sse_url, None).await;
    assert_eq!(sse.next().await.data["type"], "hello");
    let poll_url = format!(
        "http://{}/v1/streams/patient/poll",
        cluster.edges[edge].addr
    );
    let first: serde_json::Value = cluster
        .http
        .get(&poll_url)
        .send()
        .await
        .expect("poll")
        .json()
        .await
        .expect("poll body");
    let cursor = first["cursor"].as_str().expect("cursor").to_owned();
    let long_poll = {
        let (http, url) = (cluster.http.clone(), poll_url.clone());
        tokio::spawn(async move {
            // It waits (up to 25 s) until the comment posted after the probes arrives.
            let response = http
                .get(&url)
                .query(&[("cursor", cursor.as_str()), ("wait_ms", "25000")])
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .expect("long poll");
            (
                response.status().as_u16(),
                response.text().await.unwrap_or_default(),
            )
        })
    };

    let comments = "/v1/streams/probed/comments";
    join_all([
        probe("ingest public", ingest.role.addr, Some(comments)),
        probe("ingest admin", ingest.role.admin, None),
        probe("edge public", cluster.edges[edge].addr, None),
        probe("edge internal", internal, None),
        probe("edge admin", edge_admin, None),
    ])
    .await;

    // Each listener: half headers, silent (headers) and idle; ingest's API also the two bodies.
    let ingest_timed_out = metric(
        ingest.role.admin,
        "chorus_ingest_connections_timed_out_total",
    )
    .await;
    assert!(
        ingest_timed_out >= 8.0,
        "ingest timed out {ingest_timed_out}"
    );
    let edge_timed_out = metric(edge_admin, "chorus_edge_connections_timed_out_total").await;
    assert!(edge_timed_out >= 9.0, "edge timed out {edge_timed_out}");

    // Every long response is still there, past several timeouts.
    let comment = cluster.comment("patient", "u", "still here?").await;
    let event_id = comment["event_id"].as_str().expect("event_id");
    viewer.events_until(event_id).await;
    sse.events_until(event_id).await;
    let (status, body) = tokio::time::timeout(WAIT, long_poll)
        .await
        .expect("long poll answers")
        .expect("long poll task");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(event_id),
        "the long-poll got the comment: {body}"
    );
    ingest.shutdown.cancel();
    cluster.stop().await;
}

/// Half-open connections from one address, and the default `--max-pending-per-address`.
const FLOOD: usize = 1_000;
const PENDING_PER_ADDRESS: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_from_one_address_count_against_it_and_keep_no_one_else_out() {
    // Long enough a header timeout that the half-open connections stay pending for the whole test.
    let cluster = Cluster::start_with(1, 1, &["--header-timeout-ms=120000"]).await;
    let (public, admin) = (cluster.edges[0].addr, cluster.edges[0].admin);
    let upgrade_start =
        b"GET /v1/streams/flooded/ws HTTP/1.1\r\nHost: chorus\r\nUpgrade: websocket\r\n";
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(connect_from([127, 0, 0, 2], public, upgrade_start).await);
    }
    // As many as `--max-pending-per-address` (its default) wait for their headers; the others were closed
    // at accept, and counted.
    let turned_away = (FLOOD - PENDING_PER_ADDRESS) as f64;
    wait_metric(
        admin,
        "chorus_edge_connections_refused_pending_total",
        |v| v >= turned_away,
    )
    .await;
    let pending = metric(admin, "chorus_edge_connections_pending").await;
    assert_eq!(pending, PENDING_PER_ADDRESS as f64);

    // A viewer from another address is let in...
    let mut viewer = cluster.viewer(0, "flooded").await;
    let comment = cluster.comment("flooded", "u", "through the flood").await;
    viewer
        .events_until(comment["event_id"].as_str().expect("event_id"))
        .await;

    // ...while a new connection from the flooding address is closed at once (well before the header
    // timeout), and a WebSocket from it is not admitted.
    let mut refused = connect_from([127, 0, 0, 2], public, b"").await;
    let (answer, _) = until_closed(&mut refused, SLACK).await;
    assert_eq!(answer, "");
    let stream = connect_from([127, 0, 0, 2], public, b"").await;
    let url = format!("ws://{public}/v1/streams/flooded/ws");
    let handshake = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("the handshake ends in time");
    assert!(handshake.is_err(), "a WebSocket from the flooding address");
    wait_metric(
        admin,
        "chorus_edge_connections_refused_pending_total",
        |v| v >= turned_away + 2.0,
    )
    .await;

    // Closed, they no longer count.
    drop(flood);
    wait_metric(admin, "chorus_edge_connections_pending", |v| v == 0.0).await;
    viewer.close().await;
    cluster.stop().await;
}
