//! The same stream over Server-Sent Events and long-poll, against a real broker: hello with the join position,
//! every comment after it and none before, resumption from a cursor (SSE `Last-Event-ID`, long-poll `cursor`).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Cluster, SseReader};

fn id(accepted: &Value) -> &str {
    accepted["event_id"].as_str().expect("event_id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_deliver_from_the_join_and_resume_from_last_event_id() {
    let cluster = Cluster::start(1, 1).await;
    let url = format!("http://{}/v1/streams/sse-stream/sse", cluster.edges[0].addr);
    // A comment the pipeline has passed (a WebSocket viewer saw it) before the SSE client joins.
    let mut early = cluster.viewer(0, "sse-stream").await;
    let before = cluster.comment("sse-stream", "u", "before the join").await;
    early.events_until(id(&before)).await;

    let mut reader = SseReader::open(&cluster.http, &url, None).await;
    let hello = reader.next().await;
    assert_eq!(hello.data["type"], "hello", "{:?}", hello.data);
    assert!(hello.retry.is_some(), "hello carries retry:");
    let hello_id = hello.id.expect("hello carries id:");
    let join = hello.data["join"][0]["offset"]
        .as_i64()
        .expect("join offset");
    assert!(join > before["offset"].as_i64().expect("offset"));

    let first = cluster.comment("sse-stream", "u", "first").await;
    let (seen, first_id) = reader.events_until(id(&first)).await;
    assert_eq!(seen.len(), 1, "only what came after the join: {seen:?}");
    assert_eq!(seen[0]["text"], "first");
    assert_ne!(
        first_id.as_deref(),
        Some(hello_id.as_str()),
        "the id moves with the stream"
    );
    drop(reader);

    // A browser reconnecting with the hello's id gets what came after it, from the edge's buffer.
    let mut again = SseReader::open(&cluster.http, &url, Some(&hello_id)).await;
    assert_eq!(
        again.next().await.data["resumed"],
        true,
        "resumed from the edge's buffer"
    );
    let (seen, _) = again.events_until(id(&first)).await;
    assert_eq!(seen.len(), 1, "resumed exactly after the hello: {seen:?}");

    // Not a cursor: a live-only join, told so.
    let mut bad = SseReader::open(&cluster.http, &url, Some("not a cursor")).await;
    assert_eq!(bad.next().await.data["resumed"], false);
    assert_eq!(bad.next().await.data["reason"], "not_resumed");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_delivers_everything_between_polls_and_nothing_before_the_join() {
    let cluster = Cluster::start(1, 1).await;
    let base = format!("http://{}/v1/streams/polled/poll", cluster.edges[0].addr);
    let poll = |cursor: Option<String>, wait_ms: u64| {
        let http = cluster.http.clone();
        let base = base.clone();
        async move {
            let mut request = http.get(&base).query(&[("wait_ms", wait_ms.to_string())]);
            if let Some(cursor) = cursor {
                request = request.query(&[("cursor", cursor)]);
            }
            let response = request.send().await.expect("poll");
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("JSON");
            let cursor = body["cursor"].as_str().expect("cursor").to_owned();
            // The viewer count rides along with answers; this test is about the stream's events.
            let frames: Vec<Value> = body["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .filter(|f| f["type"] != "viewers")
                .cloned()
                .collect();
            (frames, cursor)
        }
    };
    let mut early = cluster.viewer(0, "polled").await;
    let before = cluster.comment("polled", "u", "before the join").await;
    early.events_until(id(&before)).await;
    let (frames, mut cursor) = poll(None, 0).await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["type"], "hello");
    assert!(frames[0]["join"][0]["offset"].as_i64() > before["offset"].as_i64());

    // Two comments while the client is between polls: the next polls return both, in order, once.
    let one = cluster.comment("polled", "u", "one").await;
    let two = cluster.comment("polled", "u", "two").await;
    let mut seen: Vec<Value> = Vec::new();
    for _ in 0..10 {
        let (frames, next) = poll(Some(cursor.clone()), 5_000).await;
        cursor = next;
        for frame in frames {
            assert_eq!(frame["type"], "events", "{frame}");
            seen.extend(frame["events"].as_array().expect("events").iter().cloned());
        }
        if seen.iter().any(|e| e["event_id"] == id(&two)) {
            break;
        }
    }
    let ids: Vec<&str> = seen.iter().filter_map(|e| e["event_id"].as_str()).collect();
    assert_eq!(ids, [id(&one), id(&two)]);

    // Nothing new: the poll waits its time and returns the same cursor.
    let (frames, same) = poll(Some(cursor.clone()), 300).await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(same, cursor);

    // A poll that is waiting returns as soon as a comment arrives.
    let waiting = tokio::spawn(poll(Some(cursor.clone()), 15_000));
    let three = cluster.comment("polled", "u", "three").await;
    let (frames, _) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("answered before its wait ran out")
        .expect("poll task");
    assert_eq!(frames[0]["events"][0]["event_id"], id(&three));

    // Not a cursor: a live-only join, told so, with a cursor to go on with.
    let (frames, _) = poll(Some("nonsense".to_owned()), 0).await;
    assert_eq!(frames[0]["resumed"], false, "{frames:?}");
    assert_eq!(frames[1]["reason"], "not_resumed", "{frames:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_a_viewer_request_is_a_problem_document() {
    let cluster = Cluster::start(1, 1).await;
    let edge = &cluster.edges[0];
    let (viewers, admin) = (edge.addr.to_string(), edge.admin.to_string());
    let internal = edge
        .internal
        .expect("the edge's internal address")
        .to_string();
    let cases = [
        (&viewers, "GET", "/v1/streams/s/nowhere", 404, "not-found"),
        (&viewers, "GET", "/", 404, "not-found"),
        (
            &viewers,
            "POST",
            "/v1/streams/s/poll",
            405,
            "method-not-allowed",
        ),
        (
            &viewers,
            "GET",
            "/v1/streams/s/poll?wait_ms=soon",
            400,
            "bad-query",
        ),
        (&viewers, "GET", "/v1/streams/%FF/sse", 400, "bad-stream-id"),
        (&viewers, "GET", "/v1/streams/-s/poll", 400, "bad-stream-id"),
        (&admin, "GET", "/nowhere", 404, "not-found"),
        (&admin, "GET", "/drain", 405, "method-not-allowed"),
        (&internal, "GET", "/nowhere", 404, "not-found"),
    ];
    for (host, method, path, status, kind) in cases {
        let base = format!("http://{host}");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = cluster
            .http
            .request(method, format!("{base}{path}"))
            .send()
            .await
            .expect("answered");
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = response.json().await.expect("a problem document");
        assert_eq!(
            problem["type"],
            format!("urn:chorus:problem:{kind}"),
            "{path}"
        );
        assert_eq!(problem["status"], status, "{path}");
    }
    cluster.stop().await;
}
