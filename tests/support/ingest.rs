//! Talking to ingest as a client does: one request builder for every post ([`Post`]), one answer type
//! ([`Answer`]), and an ingest of a test's own ([`Ingest`]) for the tests of its options.

use chorus::stack::{self, Role};
use chorus_service::{parse_args, KafkaArgs};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{LOCAL, WAIT};

/// A response as a user sees it: its status, headers and JSON body (`Null` when it has none).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// `Retry-After`, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")
            .map(|v| v.parse().expect("Retry-After in seconds"))
    }

    /// Whether this `202` replays an earlier answer to the same `Idempotency-Key`.
    pub fn replayed(&self) -> bool {
        self.header("idempotent-replayed") == Some("true")
    }

    /// The event id of a `202`.
    pub fn event_id(&self) -> &str {
        self.body["event_id"].as_str().expect("event_id")
    }
}

/// A POST to ingest being put together; [`Post::send`] sends it.
#[must_use]
pub struct Post {
    request: reqwest::RequestBuilder,
}

/// A POST to `url`.
pub fn post(http: &reqwest::Client, url: String) -> Post {
    Post {
        request: http.post(url).timeout(WAIT),
    }
}

impl Post {
    /// As `user`, the way a trusted gateway says who is posting (`X-User-Id`).
    pub fn user(self, user: &str) -> Post {
        self.header("x-user-id", user)
    }

    pub fn header(self, name: &str, value: &str) -> Post {
        Post {
            request: self.request.header(name, value),
        }
    }

    pub fn bearer(self, token: &str) -> Post {
        Post {
            request: self.request.bearer_auth(token),
        }
    }

    /// With an `Idempotency-Key`.
    pub fn key(self, key: &str) -> Post {
        self.header("idempotency-key", key)
    }

    /// A comment's body: `{"text": text}` as JSON.
    pub fn text(self, text: &str) -> Post {
        self.json(&json!({ "text": text }))
    }

    pub fn json(self, body: &Value) -> Post {
        Post {
            request: self.request.json(body),
        }
    }

    /// A raw body (set the content type with [`Post::header`]).
    pub fn body(self, body: impl Into<reqwest::Body>) -> Post {
        Post {
            request: self.request.body(body),
        }
    }

    pub async fn send(self) -> Answer {
        Answer::read(self.request.send().await.expect("post to ingest")).await
    }

    /// Sends, expects `202 Accepted`, and returns its body (event id, partition, offset).
    pub async fn accepted(self) -> Value {
        let answer = self.send().await;
        assert_eq!(answer.status, 202, "accepted: {}", answer.body);
        answer.body
    }
}

/// An ingest of its own on a test's broker, with the given flags (trusted-header identity unless they say
/// otherwise), for tests of ingest's options.
pub struct Ingest {
    pub role: Role,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Ingest {
    /// Starts it without waiting until it is ready (its broker may be unreachable on purpose).
    pub async fn spawn(kafka: &KafkaArgs, extra: &[&str]) -> Ingest {
        let mut args = vec!["--listen", LOCAL, "--admin-listen", LOCAL];
        if !extra
            .iter()
            .any(|a| a.starts_with("--jwt") || a.starts_with("--auth"))
        {
            args.push("--auth=trusted-header");
        }
        args.extend_from_slice(extra);
        let shutdown = CancellationToken::new();
        let role = stack::spawn_ingest(
            parse_args(&args).expect("ingest args"),
            kafka.clone(),
            shutdown.clone(),
        )
        .await
        .expect("start ingest");
        Ingest {
            role,
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.role.addr)
    }

    /// A POST to `path` (`/v1/streams/{stream}/comments`...).
    pub fn post(&self, path: &str) -> Post {
        post(&self.http, format!("{}{path}", self.base()))
    }

    /// A comment with `text` to `stream`, to be completed (user, token, key) and sent.
    pub fn comment(&self, stream: &str, text: &str) -> Post {
        self.post(&format!("/v1/streams/{stream}/comments"))
            .text(text)
    }

    /// A like of `stream`, to be completed and sent.
    pub fn like(&self, stream: &str) -> Post {
        self.post(&format!("/v1/streams/{stream}/likes"))
    }
}

/// [`Ingest::spawn`], then waits until it is ready.
pub async fn start_ingest(kafka: &KafkaArgs, extra: &[&str]) -> Ingest {
    let ingest = Ingest::spawn(kafka, extra).await;
    stack::wait_ready(ingest.role.admin, WAIT)
        .await
        .expect("ingest ready");
    ingest
}
