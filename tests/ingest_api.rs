//! Ingest's HTTP contract: every bad input gets the right status and a problem document, a good one is
//! acknowledged only once stored (checked by reading it back from Kafka), and a missing broker gives a quick 503.

mod support;

use std::time::{Duration, Instant};

use chorus::broker::free_port;
use chorus_schemas::EventKind;
use chorus_service::{parse_args, KafkaArgs};
use serde_json::Value;
use support::{read_events, start_ingest, Answer, Ingest, TestKafka};

/// Posts `body` to `path` as `user` with `content_type`, each left out when `None`.
async fn post(
    ingest: &Ingest,
    path: &str,
    user: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = ingest.post(path).body(body);
    if let Some(user) = user {
        request = request.user(user);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.send().await
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
    let ingest = start_ingest(&kafka.args, &[]).await;
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
            "a comment that is a JSON array",
            COMMENTS,
            Some("u"),
            JSON,
            br#"["hi"]"#.to_vec(),
            422,
            "invalid-field",
        ),
        (
            "a comment that is an array of two",
            COMMENTS,
            Some("u"),
            JSON,
            br#"["a","b"]"#.to_vec(),
            422,
            "invalid-field",
        ),
        (
            "a stream id that does not decode",
            "/v1/streams/%FF/comments",
            Some("u"),
            JSON,
            br#"{"text":"hi"}"#.to_vec(),
            400,
            "bad-stream-id",
        ),
        (
            "no such route",
            "/v1/streams/final/shares",
            Some("u"),
            JSON,
            b"{}".to_vec(),
            404,
            "not-found",
        ),
        (
            "a method the route does not take",
            "/openapi.json",
            Some("u"),
            None,
            Vec::new(),
            405,
            "method-not-allowed",
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
        let answer = post(&ingest, path, user, content_type, body).await;
        let problem = &answer.body;
        assert_eq!(answer.status, status, "{name}: {problem}");
        assert_eq!(
            answer.content_type(),
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
    let comment = post(
        &ingest,
        COMMENTS,
        Some("alice"),
        JSON,
        format!(r#"{{"text":"{text}"}}"#),
    )
    .await;
    assert_eq!(comment.status, 202, "{}", comment.body);
    let comment = comment.body;
    let like = post(&ingest, "/v1/streams/final/likes", Some("bob"), None, "").await;
    assert_eq!(like.status, 202, "{}", like.body);
    let like = like.body;

    let stored = read_events(&kafka.args, 2).await;
    assert_eq!(
        stored.len(),
        2,
        "exactly the two accepted events are in Kafka"
    );
    let event = &stored[0].event;
    assert_eq!(stored[0].key, "final");
    assert_eq!(stored[0].event_id_header, event.event_id);
    assert_eq!(comment["event_id"], event.event_id.as_str());
    assert_eq!(comment["partition"], stored[0].partition);
    assert_eq!(comment["offset"], stored[0].offset);
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
    let liked = &stored[1].event;
    assert_eq!(liked.kind, EventKind::Like);
    assert_eq!(liked.user_id, "bob");
    assert_eq!(liked.text, None);
    assert_eq!(like["event_id"], liked.event_id.as_str());

    let spec: Value = ingest
        .http
        .get(format!("{}/openapi.json", ingest.base()))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("openapi JSON");
    assert!(spec["paths"]["/v1/streams/{stream_id}/comments"]["post"].is_object());
    ingest.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_gives_a_quick_503_with_retry_after() {
    // Nothing listens on this port.
    let port = free_port().expect("port").to_string();
    let nowhere = format!("127.0.0.1:{port}");
    let kafka: KafkaArgs = parse_args(&["--kafka", &nowhere]).expect("args");
    let ingest = Ingest::spawn(&kafka, &["--produce-timeout-ms", "1500"]).await;
    let started = Instant::now();
    let answer = post(&ingest, COMMENTS, Some("u"), JSON, r#"{"text":"anyone?"}"#).await;
    let took = started.elapsed();
    println!("broker down: answered {} in {took:?}", answer.status);
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.content_type(), Some("application/problem+json"));
    assert_eq!(answer.body["type"], "urn:chorus:problem:unavailable");
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert!(
        took < Duration::from_millis(1500 + 1500),
        "bounded by the produce timeout, took {took:?}"
    );
    ingest.shutdown.cancel();
}

/// `--allowed-origins`: a listed page's preflight is granted and its posts carry the grant (errors too); an
/// unlisted page gets no grant, so its browser neither posts nor reads the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_origins_get_a_cors_grant() {
    let kafka = TestKafka::start().await;
    let page = "http://player.example";
    let ingest = start_ingest(&kafka.args, &["--allowed-origins", page]).await;
    let url = format!("{}{COMMENTS}", ingest.base());
    let preflight = |origin: &'static str| {
        ingest
            .http
            .request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,idempotency-key,x-user-id",
            )
            .send()
    };
    let granted = preflight(page).await.expect("preflight");
    assert!(granted.status().is_success(), "{}", granted.status());
    assert_eq!(granted.headers()["access-control-allow-origin"], page);
    let headers = granted.headers()["access-control-allow-headers"]
        .to_str()
        .expect("ascii");
    assert!(
        headers.contains("idempotency-key") && headers.contains("x-user-id"),
        "{headers}"
    );
    let refused = preflight("http://elsewhere.example")
        .await
        .expect("preflight");
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let posted = ingest
        .comment("final", "from a page")
        .user("u")
        .header("origin", page)
        .send()
        .await;
    assert_eq!(posted.status, 202);
    assert_eq!(posted.header("access-control-allow-origin"), Some(page));
    let bad = ingest
        .comment("final", " ")
        .user("u")
        .header("origin", page)
        .send()
        .await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.header("access-control-allow-origin"),
        Some(page),
        "errors carry it too"
    );
    let exposed = bad
        .header("access-control-expose-headers")
        .unwrap_or_default();
    assert!(exposed.contains("retry-after"), "{exposed}");
    ingest.shutdown.cancel();
}
