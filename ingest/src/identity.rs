//! Who is posting, and with which role on the stream.
//!
//! - `--auth jwt`: `Authorization: Bearer <jwt>`, verified by [`TokenVerifier`] (claims in
//!   [`chorus_service::auth`]): `sub` is the user id, `role` / `roles` the role.
//! - `--auth trusted-header`: the gateway in front of ingest has authenticated the user and says who it is in
//!   `--user-header` (default `x-user-id`) and, optionally, the role in `--role-header` (default `x-user-role`).
//!
//! The role is recorded in every event ([`chorus_schemas::StreamEvent::role`]). This module reads the request's
//! headers (which header carries the identity is part of how it is verified) and hands the domain a [`Caller`].

use axum::http::{header, HeaderMap, HeaderValue};
use chorus_schemas::UserRole;
use chorus_service::auth::{parse_role, AuthFailure, AuthSetupError, TokenVerifier};
use chorus_service::AuthMode;

use crate::config::IngestConfig;
use crate::post::Caller;
use crate::problem::ApiError;
use crate::validate;

#[derive(Debug)]
pub enum Authenticator {
    TrustedHeader {
        user_header: String,
        role_header: String,
        admin_role: String,
    },
    Jwt {
        verifier: Box<TokenVerifier>,
        admin_role: String,
    },
}

impl Authenticator {
    /// Ingest never guesses how callers prove who they are: with neither a JWT key nor `--auth
    /// trusted-header` it refuses to start ([`AuthSetupError::Unconfigured`]).
    pub fn new(config: &IngestConfig) -> Result<Self, AuthSetupError> {
        match (config.auth.mode()?, config.auth.verifier()?) {
            (AuthMode::Jwt, Some(verifier)) => Ok(Authenticator::Jwt {
                verifier: Box::new(verifier),
                admin_role: config.admin_role.clone(),
            }),
            _ => {
                tracing::warn!(
                    header = %config.user_header,
                    "--auth trusted-header: trusting the user-id header; run ingest only behind a gateway \
                     that sets it"
                );
                Ok(Authenticator::TrustedHeader {
                    user_header: config.user_header.to_ascii_lowercase(),
                    role_header: config.role_header.to_ascii_lowercase(),
                    admin_role: config.admin_role.clone(),
                })
            }
        }
    }

    /// The caller of a request to `stream_id`, or the 401/403 problem to answer with.
    pub fn authenticate(&self, headers: &HeaderMap, stream_id: &str) -> Result<Caller, ApiError> {
        match self {
            Authenticator::TrustedHeader {
                user_header,
                role_header,
                admin_role,
            } => {
                let raw = single(headers, user_header)?.and_then(|v| v.to_str().ok());
                let user_id = validate::user_id(raw).ok_or_else(|| ApiError::Unauthenticated {
                    header: user_header.clone(),
                })?;
                let raw_role = single(headers, role_header)?;
                let admin = raw_role
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.eq_ignore_ascii_case(admin_role));
                let role = match raw_role {
                    _ if admin => UserRole::Owner,
                    None => UserRole::Viewer,
                    Some(value) => value.to_str().ok().and_then(parse_role).ok_or_else(|| {
                        ApiError::Forbidden(format!(
                            "the `{role_header}` header names no role Chorus knows \
                                 (viewer, moderator, owner)"
                        ))
                    })?,
                };
                Ok(Caller {
                    user_id: user_id.to_owned(),
                    role,
                    admin,
                })
            }
            Authenticator::Jwt {
                verifier,
                admin_role,
            } => {
                single(headers, header::AUTHORIZATION.as_str())?;
                let identity = verifier.verify_headers(headers).map_err(ApiError::Token)?;
                if validate::user_id(Some(&identity.user_id)).is_none() {
                    return Err(ApiError::Forbidden(format!(
                        "the token's subject is not a Chorus user id: 1 to {} visible ASCII characters",
                        validate::MAX_USER_ID_CHARS
                    )));
                }
                let admin = identity.has_role(admin_role);
                let role = identity.role_on(stream_id);
                let role = if admin { Ok(UserRole::Owner) } else { role };
                let role = role.map_err(|role| {
                    ApiError::Forbidden(format!(
                        "the token gives the role {role:?} on this stream, which Chorus does not know \
                         (viewer, moderator, owner)"
                    ))
                })?;
                Ok(Caller {
                    user_id: identity.user_id,
                    role,
                    admin,
                })
            }
        }
    }
}

/// The value of `name`, refused when the request carries it more than once.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h HeaderValue>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::DuplicateHeader(name.to_owned()));
    }
    Ok(first)
}

impl ApiError {
    /// The `reason` label of `chorus_ingest_auth_failures_total`, if this is an authentication failure.
    pub fn auth_failure_reason(&self) -> Option<&'static str> {
        match self {
            ApiError::Unauthenticated { .. } => Some(AuthFailure::Missing.reason()),
            ApiError::Token(failure) => Some(failure.reason()),
            ApiError::Forbidden(_) => Some("forbidden"),
            ApiError::DuplicateHeader(_) => Some("duplicate_header"),
            _ => None,
        }
    }
}
