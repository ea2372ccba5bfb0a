//! The layers around ingest's routes: the per-address limit in front of the post routes, and the request
//! metrics around everything.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chorus_service::ProblemType;

use crate::problem::ApiError;
use crate::state::AppState;

/// The per-address limit, before anything else is looked at.
pub async fn limit_address(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(ip) = client_ip(&request, state.trust_forwarded_for) {
        if let Err(refused) = state.ingest.check_address(ip) {
            return ApiError::RateLimited(refused).into_response();
        }
    }
    next.run(request).await
}

/// The client's address: the connection's peer, or with `--trust-forwarded-for` the last
/// `X-Forwarded-For` entry (the one the trusted proxy in front added).
fn client_ip(request: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .and_then(|last| last.trim().parse().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// Counts and times every request by matched route and status, and every error response by its problem
/// type (`other` for an error that is not a problem document, such as axum's own 404 or 405).
pub async fn observe(
    State(state): State<Arc<AppState>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched
        .as_ref()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.record_response(
        &route,
        response.status().as_str(),
        started.elapsed().as_secs_f64(),
        rejection_reason(&response),
    );
    response
}

/// The `reason` of `chorus_ingest_rejected_total` for an error response: its problem type, or `other`.
fn rejection_reason(response: &Response) -> Option<&'static str> {
    let status = response.status();
    (status.is_client_error() || status.is_server_error()).then(|| {
        response
            .extensions()
            .get::<ProblemType>()
            .map_or("other", |&ProblemType(kind)| kind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;

    use crate::limits::{Limit, Refused};

    fn request(peer: &str, forwarded: &[&str]) -> Request {
        let mut request = Request::new(Body::empty());
        for value in forwarded {
            request
                .headers_mut()
                .append("x-forwarded-for", value.parse().expect("header value"));
        }
        let peer: SocketAddr = peer.parse().expect("peer");
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    }

    #[test]
    fn the_address_is_the_peer_unless_a_trusted_proxy_says_otherwise() {
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let client: IpAddr = "203.0.113.7".parse().expect("ip");
        let proxied = request("10.0.0.1:4000", &["198.51.100.1, 203.0.113.7"]);
        assert_eq!(client_ip(&proxied, false), Some(peer), "not trusted");
        assert_eq!(client_ip(&proxied, true), Some(client), "the last entry");
        let two_headers = request("10.0.0.1:4000", &["198.51.100.1", "203.0.113.7"]);
        assert_eq!(client_ip(&two_headers, true), Some(client));
        let garbage = request("10.0.0.1:4000", &["not an address"]);
        assert_eq!(
            client_ip(&garbage, true),
            Some(peer),
            "falls back to the peer"
        );
    }

    #[test]
    fn refusals_are_counted_by_problem_type_and_other_errors_as_other() {
        let refused = ApiError::RateLimited(Refused {
            limit: Limit::Address,
            retry_after: std::time::Duration::from_secs(1),
        });
        assert_eq!(
            rejection_reason(&refused.into_response()),
            Some("rate-limited")
        );
        let not_found = StatusCode::NOT_FOUND.into_response();
        assert_eq!(rejection_reason(&not_found), Some("other"));
        let accepted = StatusCode::ACCEPTED.into_response();
        assert_eq!(rejection_reason(&accepted), None);
    }
}
