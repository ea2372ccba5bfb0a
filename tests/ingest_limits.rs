//! Hot streams and abuse: a user, a client address or a stream over its rate limit gets `429` with `Retry-After`
//! and a problem document naming the limit, others are unaffected, and nothing over a limit reaches Kafka.
//! A retry with the same `Idempotency-Key` gets the first answer back and is stored, and seen by viewers, once.

mod support;

use std::collections::BTreeSet;

use chorus_service::KafkaArgs;
use futures_util::future::join_all;
use serde_json::Value;
use support::{metric, start_ingest, stored_before, Answer, Cluster, Ingest, TestKafka};

/// Posts a comment (`kind` "comments") or a like ("likes") as `user`, with an optional idempotency key.
async fn post(
    http: &reqwest::Client,
    base: &str,
    kind: &str,
    stream: &str,
    user: &str,
    key: Option<&str>,
    text: &str,
) -> Answer {
    let mut post = support::post(http, format!("{base}/v1/streams/{stream}/{kind}")).user(user);
    if kind == "comments" {
        post = post.text(text);
    }
    if let Some(key) = key {
        post = post.key(key);
    }
    post.send().await
}

/// Sends `count` posts at once (so that no bucket refills in between) and returns the answers.
async fn burst(
    ingest: &Ingest,
    kind: &str,
    count: usize,
    stream_of: impl Fn(usize) -> String,
    user_of: impl Fn(usize) -> String,
) -> Vec<Answer> {
    let base = ingest.base();
    join_all((0..count).map(|i| {
        let (stream, user, base) = (stream_of(i), user_of(i), base.clone());
        let http = &ingest.http;
        async move {
            post(
                http,
                &base,
                kind,
                &stream,
                &user,
                None,
                &format!("post {i}"),
            )
            .await
        }
    }))
    .await
}

/// Splits answers into the accepted and the rate-limited; anything else fails the test.
fn sort(answers: Vec<Answer>) -> (Vec<Answer>, Vec<Answer>) {
    let (accepted, limited): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.status == 202);
    for refused in &limited {
        assert_eq!(refused.status, 429, "{}", refused.body);
    }
    (accepted, limited)
}

/// A 429 as the user sees it: `Retry-After` of at least a second and a problem naming `limit`.
fn assert_limited(refused: &Answer, limit: &str) {
    assert_eq!(refused.status, 429);
    assert!(
        refused.retry_after().is_some_and(|s| s >= 1),
        "Retry-After: {:?}",
        refused.retry_after()
    );
    assert_eq!(refused.body["type"], "urn:chorus:problem:rate-limited");
    assert_eq!(refused.body["status"], 429);
    assert_eq!(refused.body["limit"], limit, "{}", refused.body);
    assert!(
        refused.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("retry after")),
        "{}",
        refused.body
    );
}

/// Event ids stored on `streams`' partitions, read from the beginning up to a sentinel comment posted last
/// to each stream (through an ingest without limits): everything any earlier request wrote is before it.
async fn stored_on(kafka: &KafkaArgs, streams: &[&str]) -> BTreeSet<String> {
    let sentinels = start_ingest(kafka, &["--rate-limits=off"]).await;
    let mut stored = BTreeSet::new();
    for stream in streams {
        let sentinel = post(
            &sentinels.http,
            &sentinels.base(),
            "comments",
            stream,
            "sentinel",
            None,
            "the end",
        )
        .await;
        assert_eq!(sentinel.status, 202, "{}", sentinel.body);
        let before = stored_before(kafka, &sentinel.body).await;
        stored.extend(before.into_iter().map(|event| event.event_id));
    }
    sentinels.shutdown.cancel();
    stored
}

fn ids<'a>(answers: impl IntoIterator<Item = &'a Answer>) -> BTreeSet<String> {
    answers
        .into_iter()
        .map(|a| a.body["event_id"].as_str().expect("event id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_the_limit_gets_429_and_other_users_do_not() {
    let kafka = TestKafka::start().await;
    let ingest = start_ingest(
        &kafka.args,
        &[
            "--user-rate=1",
            "--user-burst=3",
            "--user-like-rate=1",
            "--user-like-burst=5",
        ],
    )
    .await;
    let (accepted, limited) = sort(
        burst(
            &ingest,
            "comments",
            5,
            |_| "final".into(),
            |_| "alice".into(),
        )
        .await,
    );
    assert_eq!(
        (accepted.len(), limited.len()),
        (3, 2),
        "a burst of 3 comments"
    );
    assert_limited(&limited[0], "user_comments");

    // Another user, and alice's likes, have buckets of their own.
    let bob = post(
        &ingest.http,
        &ingest.base(),
        "comments",
        "final",
        "bob",
        None,
        "me too",
    )
    .await;
    assert_eq!(bob.status, 202, "{}", bob.body);
    let (likes, over) =
        sort(burst(&ingest, "likes", 6, |_| "final".into(), |_| "alice".into()).await);
    assert_eq!((likes.len(), over.len()), (5, 1), "a burst of 5 likes");
    assert_limited(&over[0], "user_likes");

    assert_eq!(
        stored_on(&kafka.args, &["final"]).await,
        ids(accepted.iter().chain([&bob]).chain(&likes)),
        "exactly the accepted posts are in Kafka"
    );
    assert_eq!(
        metric(ingest.role.admin, "chorus_ingest_rate_limited_total").await,
        3.0
    );
    ingest.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_and_one_stream_are_capped() {
    let kafka = TestKafka::start().await;
    let by_address = start_ingest(&kafka.args, &["--address-rate=1", "--address-burst=4"]).await;
    // Many users from one address: the address limit counts them together, before anything else.
    let (accepted_by_address, limited) = sort(
        burst(
            &by_address,
            "likes",
            6,
            |_| "final".into(),
            |i| format!("fan-{i}"),
        )
        .await,
    );
    assert_eq!((accepted_by_address.len(), limited.len()), (4, 2));
    assert_limited(&limited[0], "address");
    by_address.shutdown.cancel();

    let by_stream = start_ingest(&kafka.args, &["--stream-rate=1", "--stream-burst=3"]).await;
    let (accepted, limited) = sort(
        burst(
            &by_stream,
            "likes",
            5,
            |_| "hot".into(),
            |i| format!("fan-{i}"),
        )
        .await,
    );
    assert_eq!(
        (accepted.len(), limited.len()),
        (3, 2),
        "the hot stream is capped"
    );
    assert_limited(&limited[0], "stream");
    let calm = post(
        &by_stream.http,
        &by_stream.base(),
        "likes",
        "calm",
        "fan-0",
        None,
        "",
    )
    .await;
    assert_eq!(calm.status, 202, "another stream is not: {}", calm.body);

    assert_eq!(
        stored_on(&kafka.args, &["final", "hot", "calm"]).await,
        ids(accepted_by_address.iter().chain(&accepted).chain([&calm])),
        "exactly the accepted posts are in Kafka"
    );
    by_stream.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_is_stored_and_delivered_once() {
    let cluster = Cluster::start(1, 1).await;
    let base = cluster.ingest_url("");
    let http = &cluster.http;
    let mut viewer = cluster.viewer(0, "idem").await;

    let first = post(
        http,
        &base,
        "comments",
        "idem",
        "alice",
        Some("k-1"),
        "once",
    )
    .await;
    let retry = post(
        http,
        &base,
        "comments",
        "idem",
        "alice",
        Some("k-1"),
        "once",
    )
    .await;
    assert_eq!(first.status, 202, "{}", first.body);
    assert!(!first.replayed());
    assert_eq!(retry.status, 202);
    assert!(retry.replayed(), "the retry is marked as a replay");
    assert_eq!(
        retry.body, first.body,
        "same event id, partition and offset"
    );

    // Another key is another event; the same key for a different request is refused.
    let other = post(
        http,
        &base,
        "comments",
        "idem",
        "alice",
        Some("k-2"),
        "twice",
    )
    .await;
    assert_eq!(other.status, 202);
    assert_ne!(other.body["event_id"], first.body["event_id"]);
    let reused = post(
        http,
        &base,
        "comments",
        "idem",
        "alice",
        Some("k-1"),
        "changed",
    )
    .await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(
        reused.body["type"],
        "urn:chorus:problem:idempotency-key-reused"
    );
    let bad = post(
        http,
        &base,
        "comments",
        "idem",
        "alice",
        Some("has space"),
        "x",
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.body["type"], "urn:chorus:problem:bad-idempotency-key");

    // Concurrent retries of one key: one write, one answer.
    let racing = join_all((0..3).map(|_| {
        post(
            http,
            &base,
            "comments",
            "idem",
            "bob",
            Some("k-3"),
            "racing",
        )
    }))
    .await;
    for answer in &racing {
        assert_eq!(answer.status, 202, "{}", answer.body);
        assert_eq!(answer.body, racing[0].body);
    }

    let seen = viewer
        .events_until(racing[0].body["event_id"].as_str().expect("event id"))
        .await;
    let times = |id: &Value| seen.iter().filter(|e| e["event_id"] == *id).count();
    assert_eq!(times(&first.body["event_id"]), 1, "{seen:?}");
    assert_eq!(times(&other.body["event_id"]), 1, "{seen:?}");
    assert_eq!(
        stored_on(&cluster.kafka.args, &["idem"]).await,
        ids([&first, &other, &racing[0]]),
        "k-1, k-2 and k-3 once each"
    );
    assert_eq!(
        metric(
            cluster.ingest.admin,
            "chorus_ingest_idempotent_replays_total"
        )
        .await,
        3.0
    );
    viewer.close().await;
    cluster.stop().await;
}
