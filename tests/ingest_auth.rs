//! Who may post: with a JWT key configured, ingest accepts a post only with a valid bearer token, records the
//! token's subject and role in the event (read back from Kafka), and refuses every bad token with a 401 that says
//! what is wrong, writing nothing.

mod support;

use std::time::Duration;

use chorus_schemas::{EventKind, UserRole};
use chorus_service::clock;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::{metric, read_events, start_ingest, stored_before, Answer, Ingest, TestKafka, WAIT};

const SECRET: &str = "test-secret-of-this-test-only";
const ISSUER: &str = "https://id.example.test";
const AUDIENCE: &str = "chorus";
const RS256_PRIVATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt-test-rs256-private.pem"
);
const RS256_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt-test-rs256-public.pem"
);

/// Posts a comment with `authorization` (when given) as the `Authorization` header.
async fn comment(ingest: &Ingest, stream: &str, authorization: Option<&str>, text: &str) -> Answer {
    let mut post = ingest.comment(stream, text);
    if let Some(authorization) = authorization {
        post = post.header("authorization", authorization);
    }
    post.send().await
}

/// An ingest that verifies HS256 tokens signed with [`SECRET`] for [`ISSUER`] and [`AUDIENCE`].
async fn start_hs256_ingest(kafka: &TestKafka, extra: &[&str]) -> Ingest {
    let mut args = vec![
        "--jwt-hs256-secret",
        SECRET,
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ];
    args.extend_from_slice(extra);
    start_ingest(&kafka.args, &args).await
}

fn in_seconds(delta: i64) -> i64 {
    clock::now_ms() / 1000 + delta
}

/// Claims that the HS256 ingest below accepts; tests change one thing at a time.
fn good_claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": in_seconds(600), "iss": ISSUER, "aud": AUDIENCE })
}

fn hs256(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign HS256")
}

fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(RS256_PRIVATE).expect("test private key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA private key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign RS256")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_posts_as_its_subject_with_its_role() {
    let kafka = TestKafka::start().await;
    let ingest = start_hs256_ingest(&kafka, &[]).await;

    // A moderator everywhere, and the owner of their own stream.
    let mut claims = good_claims("alice");
    claims["role"] = json!("moderator");
    claims["roles"] = json!({ "alices-stream": "owner" });
    let token = hs256(&claims, SECRET);
    let answer = comment(&ingest, "final", Some(&format!("Bearer {token}")), "hello").await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let liked = ingest.like("alices-stream").bearer(&token).accepted().await;
    // No role claim: a viewer.
    let viewer = hs256(&good_claims("bob"), SECRET);
    let bobs = comment(&ingest, "final", Some(&format!("bearer {viewer}")), "hi").await;
    assert_eq!(bobs.status, 202, "the scheme is case-insensitive");

    let mut stored: Vec<_> = read_events(&kafka.args, 3)
        .await
        .into_iter()
        .map(|s| s.event)
        .collect();
    stored.sort_by_key(|e| e.created_ms);
    let by_id = |id: &Value| {
        stored
            .iter()
            .find(|e| *id == e.event_id.as_str())
            .unwrap_or_else(|| panic!("{id} in Kafka: {stored:?}"))
            .clone()
    };
    let comment = by_id(&answer.body["event_id"]);
    assert_eq!(comment.user_id, "alice");
    assert_eq!(comment.role, UserRole::Moderator);
    assert_eq!(comment.kind, EventKind::Comment);
    assert_eq!(comment.text.as_deref(), Some("hello"));
    let like = by_id(&liked["event_id"]);
    assert_eq!(
        (like.user_id.as_str(), like.role),
        ("alice", UserRole::Owner)
    );
    let bob = by_id(&bobs.body["event_id"]);
    assert_eq!((bob.user_id.as_str(), bob.role), ("bob", UserRole::Viewer));
    assert_eq!(
        metric(ingest.role.admin, "chorus_ingest_auth_failures_total").await,
        0.0
    );
    ingest.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_saying_what_is_wrong_and_store_nothing() {
    let kafka = TestKafka::start().await;
    let ingest = start_hs256_ingest(&kafka, &["--jwt-leeway-s", "5"]).await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good_claims("mallory");
        change(&mut claims);
        format!("Bearer {}", hs256(&claims, SECRET))
    };
    let expired = with(&|c| c["exp"] = json!(in_seconds(-60)));
    let wrong_audience = with(&|c| c["aud"] = json!("someone-else"));
    let wrong_issuer = with(&|c| c["iss"] = json!("https://evil.example.test"));
    let no_expiry = with(&|c| {
        c.as_object_mut().map(|o| o.remove("exp"));
    });
    let wrong_signature = format!(
        "Bearer {}",
        hs256(&good_claims("mallory"), "not-the-secret")
    );
    // (name, Authorization header, problem type, words the detail must contain)
    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        ("missing token", None, "unauthenticated", "no bearer token"),
        (
            "not a bearer header",
            Some("Basic bWFsbG9yeTpwdw==".into()),
            "invalid-token",
            "malformed",
        ),
        (
            "not a JWT",
            Some("Bearer not.a.jwt".into()),
            "invalid-token",
            "malformed",
        ),
        ("expired", Some(expired), "invalid-token", "expired"),
        (
            "wrong signature",
            Some(wrong_signature),
            "invalid-token",
            "signature",
        ),
        (
            "wrong audience",
            Some(wrong_audience),
            "invalid-token",
            "audience",
        ),
        (
            "wrong issuer",
            Some(wrong_issuer),
            "invalid-token",
            "issuer",
        ),
        ("no exp claim", Some(no_expiry), "invalid-token", "exp"),
    ];
    let count = cases.len();
    for (name, authorization, kind, words) in cases {
        let answer = comment(&ingest, "final", authorization.as_deref(), "let me in").await;
        assert_eq!(answer.status, 401, "{name}: {}", answer.body);
        assert_eq!(
            answer.body["type"],
            format!("urn:chorus:problem:{kind}"),
            "{name}"
        );
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(words), "{name}: {detail:?}");
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        if authorization.is_some() {
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{name}: {challenge}"
            );
        }
    }

    // A valid token with a role Chorus does not know: authenticated, but not allowed.
    let mut claims = good_claims("mallory");
    claims["role"] = json!("emperor");
    let answer = comment(
        &ingest,
        "final",
        Some(&format!("Bearer {}", hs256(&claims, SECRET))),
        "bow",
    )
    .await;
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.body["type"], "urn:chorus:problem:forbidden");

    assert_eq!(
        metric(ingest.role.admin, "chorus_ingest_auth_failures_total").await,
        (count + 1) as f64
    );
    let sentinel = comment(
        &ingest,
        "final",
        Some(&format!("Bearer {}", hs256(&good_claims("sam"), SECRET))),
        "the end",
    )
    .await;
    assert_eq!(sentinel.status, 202, "{}", sentinel.body);
    assert_eq!(
        stored_before(&kafka.args, &sentinel.body).await,
        [],
        "no refused post was written"
    );
    ingest.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_are_verified_with_the_public_key_file() {
    let kafka = TestKafka::start().await;
    // No issuer or audience configured: neither is checked.
    let ingest = start_ingest(&kafka.args, &["--jwt-rs256-public-key-file", RS256_PUBLIC]).await;
    let mut claims =
        json!({ "sub": "carol", "exp": in_seconds(600), "aud": "anyone", "role": "owner" });
    let answer = comment(
        &ingest,
        "final",
        Some(&format!("Bearer {}", rs256(&claims))),
        "signed",
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    // Only RS256 is configured: an HS256 token is refused, whatever its secret.
    let answer = comment(
        &ingest,
        "final",
        Some(&format!("Bearer {}", hs256(&claims, SECRET))),
        "sneaky",
    )
    .await;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body["type"], "urn:chorus:problem:invalid-token");
    claims["sub"] = json!("");
    let answer = comment(
        &ingest,
        "final",
        Some(&format!("Bearer {}", rs256(&claims))),
        "who?",
    )
    .await;
    assert_eq!(
        answer.status, 403,
        "an empty subject is no user: {}",
        answer.body
    );

    claims["sub"] = json!("sam");
    let sentinel = comment(
        &ingest,
        "final",
        Some(&format!("Bearer {}", rs256(&claims))),
        "the end",
    )
    .await;
    assert_eq!(sentinel.status, 202, "{}", sentinel.body);
    let stored = stored_before(&kafka.args, &sentinel.body).await;
    assert_eq!(stored.len(), 1, "only the accepted post: {stored:?}");
    assert_eq!(stored[0].user_id, "carol");
    assert_eq!(stored[0].role, UserRole::Owner);
    assert_eq!(stored[0].text.as_deref(), Some("signed"));
    tokio::time::timeout(Duration::from_secs(10), async {
        ingest.shutdown.cancel();
        let _ = ingest.role.task.await;
    })
    .await
    .expect("ingest stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_that_requires_a_watch_token_refuses_viewers_without_one() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error as WsError;

    let cluster =
        support::Cluster::start_with(1, 1, &["--require-token", "--jwt-hs256-secret", SECRET])
            .await;
    let url = cluster.viewer_url(0, "final");
    let handshake = |authorization: Option<String>| {
        let mut request = url.as_str().into_client_request().expect("request");
        if let Some(authorization) = authorization {
            request.headers_mut().insert(
                "authorization",
                authorization.parse().expect("header value"),
            );
        }
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
    };
    for (name, authorization) in [
        ("no token", None),
        (
            "wrong signature",
            Some(format!("Bearer {}", hs256(&good_claims("eve"), "guess"))),
        ),
    ] {
        match handshake(authorization).await.expect("answered in time") {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), 401, "{name}");
                let challenge = response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
            }
            other => panic!("{name}: expected a 401, got {other:?}"),
        }
    }
    let watch = json!({ "sub": "viewer-1", "exp": in_seconds(600) });
    let (socket, _) = handshake(Some(format!("Bearer {}", hs256(&watch, SECRET))))
        .await
        .expect("answered in time")
        .expect("a valid watch token is admitted");
    drop(socket);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_sent_twice_are_refused_and_store_nothing() {
    let kafka = TestKafka::start().await;
    // A gateway that appends its `x-user-id` instead of replacing the client's would let "mallory" through
    // if the first one won.
    let gateway = start_ingest(&kafka.args, &["--auth=trusted-header"]).await;
    let twice = [
        ("user", ("x-user-id", "mallory"), ("x-user-id", "alice")),
        ("role", ("x-user-role", "owner"), ("x-user-role", "viewer")),
    ];
    for (name, (h1, v1), (h2, v2)) in twice {
        let answer = gateway
            .comment("final", "who am I?")
            .user("alice")
            .header(h1, v1)
            .header(h2, v2)
            .send()
            .await;
        assert_eq!(answer.status, 400, "{name}: {}", answer.body);
        assert_eq!(answer.content_type(), Some("application/problem+json"));
        assert_eq!(answer.body["type"], "urn:chorus:problem:duplicate-header");
        let detail = answer.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(h1), "{name}: {detail}");
    }
    let sentinel = gateway
        .comment("final", "the end")
        .user("alice")
        .accepted()
        .await;
    assert_eq!(
        stored_before(&kafka.args, &sentinel).await,
        Vec::new(),
        "nothing refused was stored"
    );
    gateway.shutdown.cancel();

    let verifying = start_hs256_ingest(&kafka, &[]).await;
    let token = hs256(&good_claims("alice"), SECRET);
    let forged = hs256(&good_claims("mallory"), "guess");
    let answer = verifying
        .comment("final", "two tokens")
        .bearer(&token)
        .bearer(&forged)
        .send()
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["type"], "urn:chorus:problem:duplicate-header");
    verifying.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_without_a_key_or_an_explicit_trusted_header_mode_refuses_to_start() {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"));
    command
        .args([
            "--log=warn",
            "ingest",
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            // Never reached: the start stops before any connection.
            "--kafka=127.0.0.1:1",
        ])
        .env_remove("CHORUS_CONFIG")
        .env_remove("CHORUS_AUTH")
        .env_remove("CHORUS_JWT_HS256_SECRET")
        .env_remove("CHORUS_JWT_RS256_PUBLIC_KEY_FILE")
        .kill_on_drop(true);
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("ingest stopped in time")
        .expect("run chorus ingest");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused to start: {stderr}");
    for hint in ["--auth trusted-header", "--jwt-hs256-secret"] {
        assert!(stderr.contains(hint), "the message names {hint}: {stderr}");
    }
}
