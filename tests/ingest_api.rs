//! Ingest's HTTP contract: every bad input gets the right status and a problem document, a good one is
//! acknowledged only once stored (checked by reading it back from Kafka), and a missing broker gives a quick 503.

mod support;

use std::time::{Duration, Instant};

use chorus::broker::free_port;
use chorus::stack;
use chorus_schemas::{Codec, EventKind, StreamEvent};
use chorus_service::{parse_args, KafkaArgs};
use rdkafka::message::Headers;
use rdkafka::Message;
use serde_json::Value;
use support::{TestKafka, WAIT};
use tokio_util::sync::CancellationToken;

struct Ingest {
    base: String,
    http: reqwest::Client,
    shutdown: CancellationToken,
}

async fn start_ingest(kafka: KafkaArgs, extra: &[&str]) -> Ingest {
    let mut args = vec!["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let shutdown = CancellationToken::new();
    let role = stack::spawn_ingest(parse_args(&args).expect("args"), kafka, shutdown.clone())
        .await
        .expect("start ingest");
    Ingest {
        base: format!("http://{}", role.addr),
        http: reqwest::Client::new(),
        shutdown,
    }
}

impl Ingest {
    async fn post(
        &self,
        path: &str,
        user: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Option<String>, Value, reqwest::header::HeaderMap) {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(user) = user {
            request = request.header("x-user-id", user);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.json().await.unwrap_or(Value::Null);
        (status, content_type, body, headers)
    }
}

const JSON: Option<&str> = Some("application/json");

/// A bad request: (name, path, user, content type, body, expected status, expected problem type).
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Vec<u8>,
    u16,
    &'a str,
);
const COMMENTS: &str = "/v1/streams/final/comments";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_problem_documents_and_good_ones_are_stored() {
    let kafka = TestKafka::start().await;
    let ingest = start_ingest(kafka.args.clone(), &[]).await;
    let long = format!(r#"{{"text":"{}"}}"#, "x".repeat(501));
    let huge = format!(r#"{{"text":"{}"}}"#, "x".repeat(5000));
    let invalid_utf8: Vec<u8> = [&br#"{"text":"caf"#[..], &[0xff, 0xfe], &br#""}"#[..]].concat();
    let cases: Vec<Case> = vec![
        (
            "bad stream id",
            "/v1/streams/no%20spaces/comments",
            Some("u"),
            JSON,
            br#"{"text":"hi"}"#.to_vec(),
            400,
            "bad-stream-id",
        ),
        (
            "stream id with a symbol first",
            "/v1/streams/-x/comments",
            Some("u"),
            JSON,
            br#"{"text":"hi"}"#.to_vec(),
            400,
            "bad-stream-id",
        ),
        (
            "no user",
            COMMENTS,
            None,
            JSON,
            br#"{"text":"hi"}"#.to_vec(),
            401,
            "unauthenticated",
        ),
        (
            "not JSON content type",
            COMMENTS,
            Some("u"),
            Some("text/plain"),
            b"hi".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "no content type",
            COMMENTS,
            Some("u"),
            None,
            br#"{"text":"hi"}"#.to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "body too large",
            COMMENTS,
            Some("u"),
            JSON,
            huge.into_bytes(),
            413,
            "body-too-large",
        ),
        (
            "malformed JSON",
            COMMENTS,
            Some("u"),
            JSON,
            br#"{"text":"#.to_vec(),
            400,
            "malformed-json",
        ),
        (
            "invalid UTF-8",
            COMMENTS,
            Some("u"),
            JSON,
            invalid_utf8,
            400,
            "malformed-json",
        ),
        (
            "missing text",
            COMMENTS,
            Some("u"),
            JSON,
            b"{}".to_vec(),
            422,
            "invalid-field",
        ),
        (
            "text of the wrong type",
            COMMENTS,
            Some("u"),
            JSON,
            br#"{"text":5}"#.to_vec(),
            422,
            "invalid-field",
        ),
        (
            "empty text",
            COMMENTS,
            Some("u"),
            JSON,
            br#"{"text":""}"#.to_vec(),
            422,
            "invalid-field",
        ),
        (
            "blank text",
            COMMENTS,
            Some("u"),
            JSON,
            br#"{"text":"   "}"#.to_vec(),
            422,
            "invalid-field",
        ),
        (
            "501 characters",
            COMMENTS,
            Some("u"),
            JSON,
            long.into_bytes(),
            422,
            "invalid-field",
        ),
        (
            "control character",
            COMMENTS,
            Some("u"),
            JSON,
            br#"{"text":"bell\u0007"}"#.to_vec(),
            422,
            "invalid-field",
        ),
        (
            "like with a malformed body",
            "/v1/streams/final/likes",
            Some("u"),
            JSON,
            br#"{"a":"#.to_vec(),
            400,
            "malformed-json",
        ),
        (
            "like with a body that is not an object",
            "/v1/streams/final/likes",
            Some("u"),
            JSON,
            b"[1]".to_vec(),
            422,
            "invalid-field",
        ),
    ];
    for (name, path, user, content_type, body, status, kind) in cases {
        let (got, got_type, problem, _) = ingest.post(path, user, content_type, body).await;
        assert_eq!(got, status, "{name}: {problem}");
        assert_eq!(
            got_type.as_deref(),
            Some("application/problem+json"),
            "{name}"
        );
        assert_eq!(problem["status"], status, "{name}: {problem}");
        assert_eq!(
            problem["type"],
            format!("urn:chorus:problem:{kind}"),
            "{name}"
        );
        assert!(
            !problem["detail"].as_str().unwrap_or("").is_empty(),
            "{name}: a detail says what is wrong"
        );
    }

    // Nothing of the above was written; the good requests that follow are, with every field.
    let text = "é".repeat(500);
    let (status, _, comment, _) = ingest
        .post(
            COMMENTS,
            Some("alice"),
            JSON,
            format!(r#"{{"text":"{text}"}}"#),
        )
        .await;
    assert_eq!(status, 202, "{comment}");
    let (status, _, like, _) = ingest
        .post("/v1/streams/final/likes", Some("bob"), None, "")
        .await;
    assert_eq!(status, 202, "{like}");

    let stored = read_events(&kafka.args, 2).await;
    assert_eq!(
        stored.len(),
        2,
        "exactly the two accepted events are in Kafka"
    );
    let (key, header, partition, offset, event) = &stored[0];
    assert_eq!(key, "final");
    assert_eq!(header, &event.event_id);
    assert_eq!(comment["event_id"], event.event_id.as_str());
    assert_eq!(comment["partition"], *partition);
    assert_eq!(comment["offset"], *offset);
    assert_eq!(event.stream_id, "final");
    assert_eq!(event.user_id, "alice");
    assert_eq!(event.kind, EventKind::Comment);
    assert_eq!(event.text.as_deref(), Some(text.as_str()));
    assert_eq!(event.origin, "local");
    let age = chorus_service::clock::now_ms() - event.created_ms;
    assert!(
        (0..60_000).contains(&age),
        "created_ms is now-ish: {age} ms ago"
    );
    let (_, _, _, _, liked) = &stored[1];
    assert_eq!(liked.kind, EventKind::Like);
    assert_eq!(liked.user_id, "bob");
    assert_eq!(liked.text, None);
    assert_eq!(like["event_id"], liked.event_id.as_str());

    let (status, _, spec, _) = ingest.post("/openapi.json", Some("u"), None, "").await;
    assert_eq!(
        status, 405,
        "the OpenAPI document is served on GET only: {spec}"
    );
    let spec: Value = ingest
        .http
        .get(format!("{}/openapi.json", ingest.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("openapi JSON");
    assert!(spec["paths"]["/v1/streams/{stream_id}/comments"]["post"].is_object());
    ingest.shutdown.cancel();
}

/// Reads `count` records of `events` from the beginning: (key, event_id header, partition, offset, event).
async fn read_events(
    kafka: &KafkaArgs,
    count: usize,
) -> Vec<(String, String, i32, i64, StreamEvent)> {
    let consumer = support::read_from_start(kafka, &kafka.topics().events, 0..kafka.partitions);
    let codec = Codec::stream_event().expect("codec");
    let mut found = Vec::new();
    while found.len() < count {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("events in Kafka in time")
            .expect("consume");
        let header = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "event_id"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        found.push((
            String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
            header,
            message.partition(),
            message.offset(),
            codec
                .decode(message.payload().unwrap_or_default())
                .expect("a StreamEvent"),
        ));
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_gives_a_quick_503_with_retry_after() {
    // Nothing listens on this port.
    let port = free_port().expect("port").to_string();
    let nowhere = format!("127.0.0.1:{port}");
    let kafka: KafkaArgs = parse_args(&["--kafka", &nowhere]).expect("args");
    let ingest = start_ingest(kafka, &["--produce-timeout-ms", "1500"]).await;
    let started = Instant::now();
    let (status, content_type, problem, headers) = ingest
        .post(COMMENTS, Some("u"), JSON, r#"{"text":"anyone?"}"#)
        .await;
    let took = started.elapsed();
    println!("broker down: answered {status} in {took:?}");
    assert_eq!(status, 503, "{problem}");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(problem["type"], "urn:chorus:problem:unavailable");
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(
        took < Duration::from_millis(1500 + 1500),
        "bounded by the produce timeout, took {took:?}"
    );
    ingest.shutdown.cancel();
}
