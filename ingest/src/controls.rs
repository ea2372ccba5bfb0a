//! The moderation API over HTTP: take a comment down, ban and lift, chat settings, and a stream's standing
//! (viewers, likes, settings). The handlers only translate: [`Moderator`] (who may use a control) and the
//! bodies in, the domain ([`crate::moderate`]) called, `202` (or `200` for reads) out.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chorus_schemas::{Ban, CommentsOpenTo, StreamSettings};
use chorus_service::clock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::extract::{authenticate, body_rejection, is_json, parse_json};
use crate::moderate::BanRequest;
use crate::post::Caller;
use crate::problem::ApiError;
use crate::state::AppState;
use crate::validate;

/// Longest ban by duration: a year.
const MAX_BAN_S: u64 = 365 * 24 * 3600;
/// Longest window of a ban's take-down of recent comments.
const MAX_RETRACT_RECENT_S: u64 = 3600;
/// Longest slow mode: a day.
pub const MAX_SLOW_MODE_S: u32 = 24 * 3600;
const MAX_REASON_CHARS: usize = 500;
const MAX_BLOCKED_TERMS: usize = 1000;
const MAX_TERM_CHARS: usize = 100;

/// The caller of a control, allowed to use it: the stream's owner or a moderator (an administrator is the
/// owner of every stream); for the platform-wide routes (no stream in the path), an administrator.
#[derive(Debug)]
pub struct Moderator {
    pub caller: Caller,
    /// The stream the control is about; `None` on the platform-wide routes.
    pub stream_id: Option<String>,
    /// The other path parameters (`event_id`, `user_id`), validated by their handler.
    pub path: HashMap<String, String>,
}

impl FromRequestParts<Arc<AppState>> for Moderator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Path(mut path) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::BadPath(rejection.body_text()))?;
        let stream_id = match path.remove("stream_id") {
            Some(raw) => Some(validate::stream_id(&raw)?.to_owned()),
            None => None,
        };
        let on = stream_id.as_deref().unwrap_or_default();
        let caller = authenticate(&state.authenticator, &state.metrics, &parts.headers, on)?;
        let allowed = match stream_id {
            Some(_) => caller.role.is_privileged(),
            None => caller.admin,
        };
        if !allowed {
            let who = if stream_id.is_some() {
                "the stream's owner and moderators"
            } else {
                "the platform's administrators"
            };
            return Err(ApiError::Forbidden(format!(
                "only {who} may use this control"
            )));
        }
        Ok(Moderator {
            caller,
            stream_id,
            path,
        })
    }
}

impl Moderator {
    fn param(&self, name: &str) -> &str {
        self.path.get(name).map_or("", String::as_str)
    }

    fn stream(&self) -> &str {
        self.stream_id.as_deref().unwrap_or_default()
    }
}

/// A JSON body; an empty one is `T::default()` (a ban without a body is until lifted).
#[derive(Debug)]
pub struct ControlBody<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<Arc<AppState>> for ControlBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let json = is_json(request.headers());
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_rejection(rejection, state.max_body_bytes))?;
        if body.is_empty() {
            return Ok(ControlBody(T::default()));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        // An object, and only an object (serde would take an array for a struct too).
        let object: serde_json::Map<String, serde_json::Value> = parse_json(&body)?;
        let body = serde_json::from_value(serde_json::Value::Object(object)).map_err(|error| {
            ApiError::InvalidField {
                field: "body",
                detail: format!("the body does not fit this control: {error}"),
            }
        })?;
        Ok(ControlBody(body))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanBody {
    duration_s: Option<u64>,
    reason: Option<String>,
    retract_recent_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    #[serde(default)]
    slow_mode_s: u32,
    #[serde(default)]
    comments: Comments,
    #[serde(default)]
    blocked_terms: Vec<String>,
}

/// Who may comment, as the API spells it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Comments {
    #[default]
    Open,
    Moderators,
    Closed,
}

impl From<Comments> for CommentsOpenTo {
    fn from(c: Comments) -> Self {
        match c {
            Comments::Open => CommentsOpenTo::Open,
            Comments::Moderators => CommentsOpenTo::Moderators,
            Comments::Closed => CommentsOpenTo::Closed,
        }
    }
}

impl From<CommentsOpenTo> for Comments {
    fn from(c: CommentsOpenTo) -> Self {
        match c {
            CommentsOpenTo::Open => Comments::Open,
            CommentsOpenTo::Moderators => Comments::Moderators,
            CommentsOpenTo::Closed => Comments::Closed,
        }
    }
}

/// A ban as answered.
#[derive(Debug, Serialize)]
struct BanAnswer {
    stream_id: Option<String>,
    user_id: String,
    until_ms: Option<i64>,
    reason: Option<String>,
    lifted: bool,
}

impl From<Ban> for BanAnswer {
    fn from(ban: Ban) -> Self {
        BanAnswer {
            stream_id: ban.stream_id,
            user_id: ban.user_id,
            until_ms: ban.until_ms,
            reason: ban.reason,
            lifted: ban.lifted,
        }
    }
}

/// Chat settings as answered.
#[derive(Debug, Serialize)]
struct SettingsAnswer {
    stream_id: String,
    slow_mode_s: u32,
    comments: Comments,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocked_terms: Option<Vec<String>>,
}

impl SettingsAnswer {
    /// `terms`: whether the blocked terms are shown (to moderators; never to everyone).
    fn of(stream_id: &str, settings: Option<StreamSettings>, terms: bool) -> Self {
        let settings = settings.unwrap_or(StreamSettings {
            stream_id: stream_id.to_owned(),
            slow_mode_s: 0,
            comments: CommentsOpenTo::Open,
            blocked_terms: Vec::new(),
            by: String::new(),
            updated_ms: 0,
        });
        SettingsAnswer {
            stream_id: stream_id.to_owned(),
            slow_mode_s: u32::try_from(settings.slow_mode_s).unwrap_or(0),
            comments: settings.comments.into(),
            blocked_terms: terms.then_some(settings.blocked_terms),
        }
    }
}

fn accepted(body: impl Serialize) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `DELETE /v1/streams/{stream_id}/comments/{event_id}`
pub async fn take_down(
    State(state): State<Arc<AppState>>,
    m: Moderator,
) -> Result<Response, ApiError> {
    let event_id = validate::event_id(m.param("event_id"))?;
    let done = state
        .ingest
        .take_down(&m.caller, m.stream(), event_id)
        .await?;
    Ok(accepted(done))
}

/// `PUT /v1/streams/{stream_id}/bans/{user_id}` and `PUT /v1/bans/{user_id}`
pub async fn ban(
    State(state): State<Arc<AppState>>,
    m: Moderator,
    ControlBody(body): ControlBody<BanBody>,
) -> Result<Response, ApiError> {
    let user_id = validate::path_user_id(m.param("user_id"))?;
    let out_of = |field: &'static str, max: u64| ApiError::InvalidField {
        field,
        detail: format!("`{field}` must be 1 to {max} seconds"),
    };
    if body.duration_s.is_some_and(|s| s == 0 || s > MAX_BAN_S) {
        return Err(out_of("duration_s", MAX_BAN_S));
    }
    if body
        .retract_recent_s
        .is_some_and(|s| s == 0 || s > MAX_RETRACT_RECENT_S)
    {
        return Err(out_of("retract_recent_s", MAX_RETRACT_RECENT_S));
    }
    if m.stream_id.is_none() && body.retract_recent_s.is_some() {
        return Err(ApiError::InvalidField {
            field: "retract_recent_s",
            detail: "a platform-wide ban takes nothing down; ban on the stream to do so".into(),
        });
    }
    if let Some(reason) = &body.reason {
        validate::short_text("reason", reason, MAX_REASON_CHARS)?;
    }
    let request = BanRequest {
        duration_s: body.duration_s,
        reason: body.reason,
        retract_recent_s: body.retract_recent_s,
    };
    let stream = m.stream_id.as_deref();
    let ban = state
        .ingest
        .ban(&m.caller, stream, user_id, request)
        .await?;
    Ok(accepted(BanAnswer::from(ban)))
}

/// `DELETE /v1/streams/{stream_id}/bans/{user_id}` and `DELETE /v1/bans/{user_id}`
pub async fn lift(State(state): State<Arc<AppState>>, m: Moderator) -> Result<Response, ApiError> {
    let user_id = validate::path_user_id(m.param("user_id"))?;
    let stream = m.stream_id.as_deref();
    let ban = state.ingest.lift(&m.caller, stream, user_id).await?;
    Ok(accepted(BanAnswer::from(ban)))
}

/// `PUT /v1/streams/{stream_id}/settings`
pub async fn put_settings(
    State(state): State<Arc<AppState>>,
    m: Moderator,
    ControlBody(body): ControlBody<SettingsBody>,
) -> Result<Response, ApiError> {
    if body.slow_mode_s > MAX_SLOW_MODE_S {
        return Err(ApiError::InvalidField {
            field: "slow_mode_s",
            detail: format!("`slow_mode_s` must be 0 to {MAX_SLOW_MODE_S}"),
        });
    }
    if body.blocked_terms.len() > MAX_BLOCKED_TERMS {
        return Err(ApiError::InvalidField {
            field: "blocked_terms",
            detail: format!("at most {MAX_BLOCKED_TERMS} blocked terms"),
        });
    }
    for term in &body.blocked_terms {
        validate::short_text("blocked_terms", term, MAX_TERM_CHARS)?;
    }
    let comments = body.comments.into();
    let settings = state
        .ingest
        .set_settings(
            &m.caller,
            m.stream(),
            body.slow_mode_s,
            comments,
            body.blocked_terms,
        )
        .await?;
    Ok(accepted(SettingsAnswer::of(
        m.stream(),
        Some(settings),
        true,
    )))
}

/// `GET /v1/streams/{stream_id}/settings` (owner and moderators: the blocked terms too)
pub async fn get_settings(State(state): State<Arc<AppState>>, m: Moderator) -> Response {
    let settings = state.ingest.moderation.settings(m.stream());
    Json(SettingsAnswer::of(m.stream(), settings, true)).into_response()
}

#[derive(Debug, Serialize)]
struct StandingAnswer {
    stream_id: String,
    viewers: u64,
    likes_total: u64,
    settings: SettingsAnswer,
}

/// `GET /v1/streams/{stream_id}`: anyone may ask.
pub async fn standing(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(stream_id) = path.map_err(|rejection| ApiError::BadPath(rejection.body_text()))?;
    let stream_id = validate::stream_id(&stream_id)?;
    let standing = state.ingest.moderation.standing(stream_id, clock::now_ms());
    let answer = StandingAnswer {
        stream_id: stream_id.to_owned(),
        viewers: standing.viewers,
        likes_total: standing.likes_total,
        settings: SettingsAnswer::of(stream_id, standing.settings, false),
    };
    Ok(Json(answer).into_response())
}
