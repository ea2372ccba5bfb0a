//! Why a post was refused by its stream's moderation, and the problem document that says so.

use std::time::Duration;

use axum::http::StatusCode;
use chorus_service::Problem;

/// Why a post was refused by the stream's moderation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{}", banned_detail(*.until_ms, *.everywhere))]
    Banned {
        until_ms: Option<i64>,
        everywhere: bool,
    },
    #[error("slow mode: one comment every {every_s} s on this stream; retry after {} s", .retry_after.as_secs_f64().ceil())]
    SlowMode { every_s: u32, retry_after: Duration },
    #[error("only the stream's owner and moderators may comment on this stream now")]
    ModeratorsOnly,
    #[error("comments on this stream are closed")]
    Closed,
    #[error("the comment contains a term this stream does not allow")]
    BlockedTerm,
}

fn banned_detail(until_ms: Option<i64>, everywhere: bool) -> String {
    let scope = if everywhere {
        "from every stream"
    } else {
        "from this stream"
    };
    match until_ms {
        Some(until) => {
            format!("you are banned {scope} until {until} (milliseconds since the Unix epoch)")
        }
        None => format!("you are banned {scope} until the ban is lifted"),
    }
}

impl Refusal {
    /// The rule's name, as the problem document and the metric's label say it.
    pub fn rule(&self) -> &'static str {
        match self {
            Refusal::Banned { .. } => "banned",
            Refusal::SlowMode { .. } => "slow_mode",
            Refusal::ModeratorsOnly => "moderators_only",
            Refusal::Closed => "comments_closed",
            Refusal::BlockedTerm => "blocked_term",
        }
    }

    /// Status, problem type and title.
    pub fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Refusal::Banned { .. } => (StatusCode::FORBIDDEN, "banned", "Banned"),
            Refusal::SlowMode { .. } => (StatusCode::TOO_MANY_REQUESTS, "slow-mode", "Slow mode"),
            Refusal::ModeratorsOnly | Refusal::Closed => (
                StatusCode::FORBIDDEN,
                "comments-restricted",
                "Comments restricted",
            ),
            Refusal::BlockedTerm => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "blocked-term",
                "Blocked term",
            ),
        }
    }

    /// The members and headers that go with the refusal.
    pub fn annotate(&self, problem: Problem) -> Problem {
        let problem = problem.rule(self.rule());
        match self {
            Refusal::Banned {
                until_ms: Some(until),
                ..
            } => problem.until_ms(*until),
            Refusal::SlowMode { retry_after, .. } => {
                problem.retry_after(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Refusal::BlockedTerm => problem.field("text"),
            _ => problem,
        }
    }
}
