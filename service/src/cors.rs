//! CORS for browser pages on other origins (`--allowed-origins`): a preflight from a listed origin is
//! answered with what it may send, and every answer to it (errors included) names the origin and exposes the
//! headers a client needs (`Retry-After`); an unlisted origin gets no grant, so a browser keeps its page from
//! reading or posting. tower-http's layer does the protocol.

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The layer for `origins` answering `methods` with the request headers a Chorus client sends; `None` for
/// no origin (no CORS headers at all: only same-origin pages).
pub fn layer(origins: &[String], methods: &[Method]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods(methods.to_vec())
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-user-id"),
            ])
            .expose_headers([
                header::RETRY_AFTER,
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;
    use axum::Router;
    use tower_service::Service;

    use super::*;

    async fn preflight(app: &mut Router, origin: &str) -> axum::http::Response<Body> {
        let request = Request::builder()
            .method(Method::OPTIONS)
            .uri("/post")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,idempotency-key,x-user-id",
            )
            .body(Body::empty())
            .expect("request");
        app.call(request).await.expect("answer")
    }

    #[tokio::test]
    async fn a_listed_origin_is_granted_and_an_unlisted_one_is_not() {
        let cors = layer(&["http://player.example".into()], &[Method::POST]).expect("a layer");
        let mut app = Router::new()
            .route("/post", post(|| async { StatusCode::ACCEPTED }))
            .layer(cors);
        let granted = preflight(&mut app, "http://player.example").await;
        let headers = granted.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://player.example"
        );
        let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
            .to_str()
            .expect("ascii");
        assert!(
            allowed.contains("idempotency-key") && allowed.contains("x-user-id"),
            "{allowed}"
        );
        let refused = preflight(&mut app, "http://elsewhere.example").await;
        assert!(refused
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        assert!(layer(&[], &[Method::POST]).is_none(), "no origins, no CORS");
    }
}
