//! The internal link from fanout to edge against the real stack: only the internal token opens it, nothing an
//! authenticated session says about positions stops real comments or moves new viewers' joins, neither role
//! starts without the token, and with an admin token configured the admin port's drain takes it.

mod support;

use std::process::Stdio;
use std::time::Duration;

use chorus_schemas::wire::{PushBatch, PushFrame, PushedEvent};
use chorus_schemas::{partition_for, EventKind, PartitionPosition, StreamEvent, UserRole};
use futures_util::SinkExt;
use serde_json::Value;
use support::{metric, wait_metric, Cluster, INTERNAL_TOKEN, WAIT};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, Response};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const MISSING: &str = "Bearer realm=\"chorus\"";
const INVALID: &str = "Bearer realm=\"chorus\", error=\"invalid_token\"";

fn push_url(cluster: &Cluster) -> String {
    let internal = cluster.edges[0]
        .internal
        .expect("the edge's internal address");
    format!("ws://{internal}/internal/v1/push")
}

/// Upgrades to the push endpoint with `authorization` (if any): the socket, or the refusal.
async fn upgrade(
    url: &str,
    authorization: Option<&str>,
) -> Result<Socket, Box<Response<Option<Vec<u8>>>>> {
    let mut request = url.into_client_request().expect("request");
    if let Some(value) = authorization {
        let value = HeaderValue::from_str(value).expect("header");
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    let attempt = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time");
    match attempt {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) => Err(response),
        Err(error) => panic!("neither upgraded nor refused: {error}"),
    }
}

/// A 401 problem document with the `challenge`.
fn assert_unauthorized(status: u16, headers: &header::HeaderMap, body: &[u8], challenge: &str) {
    assert_eq!(status, 401);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(headers[header::WWW_AUTHENTICATE], challenge);
    let problem: Value = serde_json::from_slice(body).expect("a JSON problem");
    assert_eq!(problem["status"], 401);
    assert!(problem["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("urn:chorus:problem:")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_internal_token_opens_the_link() {
    let cluster = Cluster::start(1, 1).await;
    let url = push_url(&cluster);
    let refusals = [
        (None, MISSING),
        (Some("Bearer not-the-token".to_owned()), INVALID),
        (Some(format!("Basic {INTERNAL_TOKEN}")), INVALID),
        (Some(format!("Bearer {INTERNAL_TOKEN}x")), INVALID),
    ];
    for (authorization, challenge) in &refusals {
        let refused = upgrade(&url, authorization.as_deref())
            .await
            .err()
            .unwrap_or_else(|| panic!("{authorization:?} was let in"));
        let body = refused.body().clone().unwrap_or_default();
        assert_unauthorized(
            refused.status().as_u16(),
            refused.headers(),
            &body,
            challenge,
        );
    }
    let admin = cluster.edges[0].admin;
    wait_metric(admin, "chorus_edge_push_refused_total", |v| v == 4.0).await;
    assert_eq!(
        metric(admin, "chorus_edge_push_sessions").await,
        1.0,
        "only the real fanout is connected"
    );
    let token = format!("Bearer {INTERNAL_TOKEN}");
    let socket = upgrade(&url, Some(&token))
        .await
        .expect("the token opens it");
    drop(socket);
    cluster.stop().await;
}

/// A stream other than `stream` whose events share its partition (out of `partitions`).
fn neighbour(stream: &str, partitions: i32) -> String {
    let partition = partition_for(stream, partitions);
    (0..)
        .map(|i| format!("{stream}-neighbour-{i}"))
        .find(|s| partition_for(s, partitions) == partition)
        .expect("some stream shares the partition")
}

fn forged_comment(at: &PartitionPosition, stream: &str) -> PushedEvent {
    PushedEvent {
        topic: at.topic.clone(),
        partition: at.partition,
        offset: at.offset,
        event: StreamEvent {
            event_id: "forged-event".into(),
            stream_id: stream.into(),
            user_id: "alice".into(),
            kind: EventKind::Comment,
            text: Some("forged far ahead".into()),
            created_ms: chorus_service::clock::now_ms(),
            origin: "local".into(),
            role: UserRole::default(),
            retraction: None,
        },
    }
}

fn offset_of(answer: &Value) -> i64 {
    answer["offset"].as_i64().expect("the 202's offset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_positions_from_an_authenticated_session_stop_no_real_comment() {
    let cluster = Cluster::start(1, 1).await;
    let stream = "forged-positions";
    let partitions = cluster.kafka.args.partitions;
    let mut watcher = cluster.viewer(0, stream).await;
    let first = cluster.comment(stream, "alice", "before").await;
    watcher
        .events_until(first["event_id"].as_str().expect("id"))
        .await;
    let events = cluster.kafka.args.topics().events;
    let at = |offset| PartitionPosition {
        topic: events.clone(),
        partition: partition_for(stream, partitions),
        offset,
    };
    let real_next = offset_of(&first) + 1;
    let far_ahead = real_next + 100_000;

    // An authenticated session (the token is all a fanout needs) says the partition is far ahead, then behind,
    // and pushes an event as far ahead.
    let admin = cluster.edges[0].admin;
    let refused_before = metric(admin, "chorus_edge_positions_refused_total").await;
    let mut forger = upgrade(
        &push_url(&cluster),
        Some(&format!("Bearer {INTERNAL_TOKEN}")),
    )
    .await
    .expect("the token opens the link");
    let batch = PushBatch {
        frames: vec![
            PushFrame::Hello {
                fanout_id: "evil-fanout".into(),
                partitions,
            },
            PushFrame::Positions(vec![at(far_ahead)]),
            PushFrame::Subscribed {
                stream_id: stream.into(),
                positions: vec![at(far_ahead)],
            },
            PushFrame::Positions(vec![at(0)]),
            PushFrame::Events(vec![forged_comment(&at(real_next + 10_000_000), stream)]),
        ],
    };
    let bytes = batch.encode().expect("encode");
    forger
        .send(Message::binary(bytes))
        .await
        .expect("send the batch");
    wait_metric(admin, "chorus_edge_positions_refused_total", |v| {
        v >= refused_before + 4.0
    })
    .await;

    // A real comment posted after it reaches the viewer, and the forged event never did.
    let after = cluster.comment(stream, "bob", "after the forgery").await;
    let seen = watcher
        .events_until(after["event_id"].as_str().expect("id"))
        .await;
    assert!(
        seen.iter().all(|e| e["event_id"] != "forged-event"),
        "the forged event was delivered: {seen:?}"
    );

    // New viewers, of the stream and of a new one in the same partition, join at the real position, and get
    // what is posted next.
    let neighbour = neighbour(stream, partitions);
    let mut real_next = offset_of(&after) + 1;
    for joining in [stream, neighbour.as_str()] {
        let mut newcomer = cluster.viewer(0, joining).await;
        let join = &newcomer.hello["join"][0];
        assert_eq!(join["topic"], events.as_str());
        let offset = join["offset"].as_i64().expect("a known join position");
        assert!(
            offset <= real_next && offset < far_ahead,
            "{joining} joined at {offset}, not at the real position {real_next}"
        );
        let next = cluster.comment(joining, "carol", "for the newcomer").await;
        assert!(offset_of(&next) >= offset, "posted after the join");
        newcomer
            .events_until(next["event_id"].as_str().expect("id"))
            .await;
        real_next = offset_of(&next) + 1;
    }
    let _ = forger.close(None).await;
    cluster.stop().await;
}

#[tokio::test]
async fn neither_fanout_nor_edge_starts_without_the_internal_token() {
    let local = "127.0.0.1:0";
    for (role, listeners) in [
        (
            "edge",
            vec![
                format!("--listen={local}"),
                format!("--internal-listen={local}"),
                format!("--admin-listen={local}"),
            ],
        ),
        ("fanout", vec![format!("--admin-listen={local}")]),
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
            .arg(role)
            .arg("--kafka=127.0.0.1:1")
            .args(&listeners)
            .env_remove("CHORUS_INTERNAL_TOKEN")
            .env_remove("CHORUS_CONFIG")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(10), output)
            .await
            .unwrap_or_else(|_| panic!("chorus {role} did not stop at once"))
            .expect("run chorus");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{role}: {stderr}");
        assert!(
            stderr.contains("CHORUS_INTERNAL_TOKEN"),
            "{role}: the message says what to set: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_admin_token_the_drain_takes_it_and_health_and_metrics_stay_open() {
    let cluster = Cluster::start_with(1, 1, &["--admin-token=test-admin-token"]).await;
    let admin = cluster.edges[0].admin;
    let drain = format!("http://{admin}/drain");
    for (authorization, challenge) in [(None, MISSING), (Some("Bearer wrong"), INVALID)] {
        let mut request = cluster.http.post(&drain).timeout(WAIT);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION.as_str(), value);
        }
        let response = request.send().await.expect("drain answers");
        let status = response.status().as_u16();
        let mut headers = header::HeaderMap::new();
        for name in [header::CONTENT_TYPE, header::WWW_AUTHENTICATE] {
            if let Some(value) = response.headers().get(name.as_str()) {
                let value = HeaderValue::from_bytes(value.as_bytes()).expect("header");
                headers.insert(name, value);
            }
        }
        let body = response.bytes().await.expect("body");
        assert_unauthorized(status, &headers, &body, challenge);
    }
    for open in ["metrics", "healthz", "readyz"] {
        let response = cluster
            .http
            .get(format!("http://{admin}/{open}"))
            .timeout(WAIT)
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200, "/{open} needs no token");
    }
    assert_eq!(metric(admin, "chorus_edge_admin_refused_total").await, 2.0);
    // Not draining: a viewer still gets in, and is told to reconnect once the right token drains the edge.
    let mut viewer = cluster.viewer(0, "drained").await;
    let drained = cluster
        .http
        .post(&drain)
        .bearer_auth("test-admin-token")
        .timeout(WAIT)
        .send()
        .await
        .expect("drain");
    assert_eq!(drained.status(), 200);
    let frame = viewer.next_frame().await;
    assert_eq!(frame["type"], "reconnect", "{frame}");
    assert_eq!(frame["reason"], "drain");
    cluster.stop().await;
}
