//! The edge's connection lifecycle against a real broker: lifetimes with jitter, drain, admission limits and
//! liveness, for WebSocket and Server-Sent Events (long-poll requests end by themselves).

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::{metric, wait_metric, Cluster, SseReader, Viewer, WAIT};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The `reconnect` frame that ends a viewer, within WAIT.
async fn reconnect_frame(viewer: &mut Viewer) -> Value {
    loop {
        let frame = viewer.next_frame().await;
        if frame["type"] == "reconnect" {
            return frame;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_end_with_a_jittered_reconnect_when_their_lifetime_is_over() {
    let cluster = Cluster::start_with(
        1,
        1,
        &[
            "--connection-ttl-min-ms=300",
            "--connection-ttl-max-ms=600",
            "--reconnect-jitter-ms=2000",
        ],
    )
    .await;
    let mut delays = Vec::new();
    for _ in 0..5 {
        let mut viewer = cluster.viewer(0, "ttl").await;
        let frame = reconnect_frame(&mut viewer).await;
        assert_eq!(frame["reason"], "ttl");
        let delay = frame["delay_ms"].as_u64().expect("delay");
        assert!(delay <= 2000);
        delays.push(delay);
        assert!(
            viewer.try_next_frame(WAIT).await.is_none(),
            "closed after reconnect"
        );
    }
    assert!(
        delays.windows(2).any(|w| w[0] != w[1]),
        "jittered: {delays:?}"
    );

    let url = format!("http://{}/v1/streams/ttl/sse", cluster.edges[0].addr);
    let mut sse = SseReader::open(&cluster.http, &url, None).await;
    let frame = sse.next_of_type("reconnect").await;
    assert_eq!(frame["reason"], "ttl");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_spreads_reconnects_over_its_window_then_the_edge_stops() {
    let mut cluster = Cluster::start_with(1, 1, &["--drain-ms=1500"]).await;
    let edge = cluster.edges[0].addr;
    let admin = cluster.edges[0].admin;
    let mut viewers = Vec::new();
    for _ in 0..6 {
        viewers.push(cluster.viewer(0, "drained").await);
    }
    let url = format!("http://{edge}/v1/streams/drained/sse");
    let mut sse = SseReader::open(&cluster.http, &url, None).await;
    sse.next_of_type("hello").await;

    let started = tokio::time::Instant::now();
    let drained = cluster
        .http
        .post(format!("http://{admin}/drain"))
        .send()
        .await
        .expect("drain");
    assert_eq!(drained.status(), 200);
    let mut arrivals = Vec::new();
    for viewer in &mut viewers {
        let frame = reconnect_frame(viewer).await;
        assert_eq!(frame["reason"], "drain");
        arrivals.push(started.elapsed());
    }
    assert_eq!(sse.next_of_type("reconnect").await["reason"], "drain");
    arrivals.sort();
    println!("reconnects during a 1.5 s drain arrived at {arrivals:?}");
    assert!(arrivals.last().expect("arrivals") < &Duration::from_millis(1500 + 1000));
    assert!(
        arrivals.last().expect("last") > arrivals.first().expect("first"),
        "spread over the window, not all at once"
    );
    // The edge stops once its viewers are gone, and accepts no one meanwhile.
    let task = cluster.edges.remove(0).task;
    tokio::time::timeout(WAIT, task)
        .await
        .expect("edge stopped")
        .expect("task")
        .expect("clean stop");
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{edge}/v1/streams/drained/ws"))
            .await
            .is_err()
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limits_or_from_other_origins_are_refused() {
    let cluster = Cluster::start_with(
        1,
        1,
        &[
            "--max-connections=3",
            "--max-connections-per-address=2",
            "--allowed-origins=https://watch.example",
        ],
    )
    .await;
    let edge = cluster.edges[0].addr;
    let url = format!("ws://{edge}/v1/streams/limited/ws");
    let status_of = |result: Result<_, tokio_tungstenite::tungstenite::Error>| match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => 101,
    };
    // Another origin: 403. The allowed one, and a client without Origin: admitted.
    let mut request = url.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "origin",
        HeaderValue::from_static("https://elsewhere.example"),
    );
    assert_eq!(
        status_of(tokio_tungstenite::connect_async(request).await.map(|_| ())),
        403
    );
    let mut request = url.as_str().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", HeaderValue::from_static("https://watch.example"));
    let (_first, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("allowed origin");
    let _second = Viewer::connect(&url).await;
    // A third from the same address: 429.
    assert_eq!(
        status_of(tokio_tungstenite::connect_async(&url).await.map(|_| ())),
        429
    );
    // From another address it is admitted, and then the edge is full: 503 with Retry-After.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let sse = other
        .get(format!("http://{edge}/v1/streams/limited/sse"))
        .send()
        .await
        .expect("sse");
    assert_eq!(sse.status(), 200);
    let full = other
        .get(format!("http://{edge}/v1/streams/limited/sse"))
        .send()
        .await
        .expect("request");
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    let problem: Value = full.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:chorus:problem:edge-full");
    assert_eq!(
        metric(
            cluster.edges[0].admin,
            "chorus_edge_connections_rejected_total"
        )
        .await,
        3.0
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_viewer_is_closed_and_freed() {
    let cluster = Cluster::start_with(1, 1, &["--heartbeat-ms=200"]).await;
    let admin = cluster.edges[0].admin;
    let url = format!("ws://{}/v1/streams/quiet/ws", cluster.edges[0].addr);
    // A client that reads (and so answers pings) stays: it reads in the background until "still here".
    let (mut alive, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    let reader = tokio::spawn(async move {
        while let Ok(Some(Ok(message))) = tokio::time::timeout(WAIT, alive.next()).await {
            if let Message::Text(text) = message {
                if text.contains("still here") {
                    return true;
                }
            }
        }
        false
    });
    // A client that never reads never answers a ping.
    let (silent, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connect");
    wait_metric(admin, "chorus_edge_liveness_timeouts_total", |v| v == 1.0).await;
    wait_metric(admin, "chorus_edge_connections", |v| v == 1.0).await;
    let (_, mut read) = silent.split();
    let mut closed = false;
    while let Ok(Some(message)) = tokio::time::timeout(WAIT, read.next()).await {
        match message {
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the silent viewer's connection was closed");
    // The reading viewer is still served.
    cluster.comment("quiet", "u", "still here").await;
    assert!(
        reader.await.expect("reader"),
        "the live viewer got the comment"
    );
    cluster.stop().await;
}
