//! The analytics contract from the outside: comments and likes posted through ingest are read back from the
//! real broker by `tests/python/read_events.py`, a Python consumer that knows nothing of Chorus but the
//! `.avsc` files and schemas/README.md, and every field it decodes is checked against what was posted.
//! Needs Python 3.11+ (`scripts/python-env` installs the pinned packages into `.venv/python`).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus::stack;
use chorus_service::parse_args;
use serde_json::{json, Value};
use support::{TestKafka, WAIT};
use tokio_util::sync::CancellationToken;

/// One post: stream, user, and the comment text (`None` for a like).
type Post = (&'static str, &'static str, Option<String>);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit i64")
}

/// Runs `program args` in the repository root within `limit`, killing it if it takes longer.
async fn run(program: &Path, args: &[&str], limit: Duration) -> Output {
    let command = tokio::process::Command::new(program)
        .args(args)
        .current_dir(root())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(limit, command)
        .await
        .unwrap_or_else(|_| panic!("{} did not finish within {limit:?}", program.display()))
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn check_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_analytics_reader_decodes_every_field_of_what_was_posted() {
    let kafka = TestKafka::start().await;
    let shutdown = CancellationToken::new();
    let ingest = stack::spawn_ingest(
        parse_args(&[
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--auth=trusted-header",
        ])
        .expect("ingest args"),
        kafka.args.clone(),
        shutdown.child_token(),
    )
    .await
    .expect("start ingest");
    stack::wait_ready(ingest.admin, WAIT)
        .await
        .expect("ingest ready");

    // 500 characters of 1- to 4-byte UTF-8 (1100 bytes): the longest comment ingest accepts.
    let longest: String = "aé日🏏!".chars().cycle().take(500).collect();
    let posts: Vec<Post> = vec![
        ("final-2026", "alice", Some("What a catch! 🏏".into())),
        ("final-2026", "bob", None),
        ("final-2026", "carol", Some(longest)),
        (
            "semi.1_b",
            "dave",
            Some("Quelle finale ! ¿Qué? 日本語も".into()),
        ),
        ("semi.1_b", "alice", None),
        ("final-2026", "erin", None),
    ];

    let http = reqwest::Client::new();
    let before_ms = now_ms();
    let mut acks = Vec::new();
    for (stream, user, text) in &posts {
        let base = format!("http://{}/v1/streams/{stream}", ingest.addr);
        let request = match text {
            Some(text) => http
                .post(format!("{base}/comments"))
                .json(&json!({ "text": text })),
            None => http.post(format!("{base}/likes")),
        };
        let response = request
            .header("x-user-id", *user)
            .header("x-user-role", role_of(user))
            .send()
            .await
            .expect("post to ingest");
        assert_eq!(response.status(), 202, "{stream} {user} {text:?}");
        let ack: Value = response.json().await.expect("202 body is JSON");
        acks.push(ack);
    }
    let after_ms = now_ms();

    let env_output = run(
        &root().join("scripts/python-env"),
        &[],
        Duration::from_secs(600),
    )
    .await;
    check_success("scripts/python-env", &env_output);
    let python = String::from_utf8(env_output.stdout).expect("UTF-8 path");
    let python = PathBuf::from(python.lines().last().expect("a python path").trim());

    let topic = format!("{}events", kafka.args.topic_prefix);
    let count = posts.len().to_string();
    let schemas = root().join("schemas/avro");
    let script = root().join("tests/python/read_events.py");
    let args = [
        script.to_str().expect("UTF-8 path"),
        "--bootstrap",
        &kafka.args.brokers,
        "--topic",
        &topic,
        "--count",
        &count,
        "--timeout",
        "60",
        "--schemas",
        schemas.to_str().expect("UTF-8 path"),
    ];
    let output = run(&python, &args, Duration::from_secs(90)).await;
    check_success("read_events.py", &output);
    let read: Vec<Value> = String::from_utf8(output.stdout)
        .expect("UTF-8 output")
        .lines()
        .inspect(|line| println!("read_events.py: {line}"))
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(read.len(), posts.len(), "one line per record: {read:#?}");

    for ((stream, user, text), ack) in posts.iter().zip(&acks) {
        let event_id = ack["event_id"].as_str().expect("event_id in the 202");
        let record = read
            .iter()
            .find(|r| r["event_id"] == event_id)
            .unwrap_or_else(|| panic!("event {event_id} not read back: {read:#?}"));
        let created_ms = record["created_ms"]
            .as_i64()
            .expect("created_ms is a number");
        assert!(
            (before_ms..=after_ms).contains(&created_ms),
            "created_ms {created_ms} outside the posting window {before_ms}..={after_ms}"
        );
        // The whole record, so a field added, missing or wrong fails alike.
        let expected = json!({
            "key": stream,
            "partition": ack["partition"],
            "offset": ack["offset"],
            "headers": { "event_id": event_id },
            "timestamp_ms": created_ms,
            "event_id": event_id,
            "stream_id": stream,
            "user_id": user,
            "kind": if text.is_some() { "COMMENT" } else { "LIKE" },
            "text": text,
            "created_ms": created_ms,
            "origin": "local",
            "retraction": null,
            "role": role_of(user).to_uppercase(),
        });
        assert_eq!(*record, expected, "record of {stream} {user} {text:?}");
    }

    shutdown.cancel();
    let _ = tokio::time::timeout(WAIT, ingest.task).await;
}

/// Alice moderates; the others watch.
fn role_of(user: &str) -> &'static str {
    if user == "alice" {
        "moderator"
    } else {
        "viewer"
    }
}
