//! The public HTTP API of ingest: the router, the two post handlers (the moderation controls are in
//! [`crate::controls`]) and the OpenAPI document. The handlers
//! only translate: extractors ([`crate::extract`]) in, [`Ingest::accept`](crate::post::Ingest::accept), a
//! `202` (or a problem document) out.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use chorus_schemas::EventKind;

use crate::controls;
use crate::extract::{CommentText, LikeBody, PostTarget};
use crate::middleware::{limit_address, observe};
use crate::post::{Answer, Post};
use crate::problem::ApiError;
use crate::state::AppState;

/// Set on a `202` that answers a retry with the first answer (nothing new was written).
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The ingest API: comments, likes, and its OpenAPI description. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so that the per-address limit sees the client address.
pub fn app(state: Arc<AppState>) -> Router {
    let posts = Router::new()
        .route("/v1/streams/{stream_id}/comments", post(post_comment))
        .route("/v1/streams/{stream_id}/likes", post(post_like))
        .route(
            "/v1/streams/{stream_id}/comments/{event_id}",
            delete(controls::take_down),
        )
        .route(
            "/v1/streams/{stream_id}/bans/{user_id}",
            put(controls::ban).delete(controls::lift),
        )
        .route(
            "/v1/bans/{user_id}",
            put(controls::ban).delete(controls::lift),
        )
        .route(
            "/v1/streams/{stream_id}/settings",
            put(controls::put_settings).get(controls::get_settings),
        )
        .route("/v1/streams/{stream_id}", get(controls::standing))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_address));
    let methods = [Method::POST, Method::GET, Method::PUT, Method::DELETE];
    let cors = chorus_service::cors::layer(&state.allowed_origins, &methods);
    let app = Router::new()
        .merge(posts)
        .route("/openapi.json", get(openapi))
        // Every answer is a problem document, also for routes and methods that do not exist.
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state);
    // Outermost: a listed origin's preflight is answered before anything else, and every answer carries
    // the grant.
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

async fn post_comment(
    State(state): State<Arc<AppState>>,
    target: PostTarget,
    CommentText(text): CommentText,
) -> Result<Response, ApiError> {
    accept(&state, target.post(EventKind::Comment, Some(text))).await
}

async fn post_like(
    State(state): State<Arc<AppState>>,
    target: PostTarget,
    _: LikeBody,
) -> Result<Response, ApiError> {
    accept(&state, target.post(EventKind::Like, None)).await
}

/// `202 Accepted` with where the event is, marked when it repeats an earlier answer.
async fn accept(state: &AppState, post: Post) -> Result<Response, ApiError> {
    let Answer { accepted, replayed } = state.ingest.accept(&post).await?;
    let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound {
        method: method.to_string(),
        path: shown_path(&uri),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: shown_path(&uri),
    }
}

/// The request's path as it is echoed in a problem's detail: bounded, so a client cannot inflate answers.
fn shown_path(uri: &Uri) -> String {
    uri.path().chars().take(200).collect()
}

async fn openapi(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.clone(),
    )
}
