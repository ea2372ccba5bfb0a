//! Shared secrets Chorus's own processes present to each other as `Authorization: Bearer <token>`:
//!
//! - the internal token ([`InternalTokenArgs`], `--internal-token`): fanout sends it on the upgrade of its push
//!   link, and the edge verifies it before upgrading. It is required on both: an edge that took pushes from
//!   anyone would let anyone write to its viewers, so neither role starts without one (fail closed);
//! - the admin token ([`AdminTokenArgs`], `--admin-token`): when set, the admin port's mutating routes (the
//!   edge's `POST /drain`) require it; `/metrics`, `/healthz` and `/readyz` stay open.
//!
//! A [`Secret`] never shows in `Debug` and is compared in constant time, so neither logs nor the time a refusal
//! takes tell how much of a guess was right. A refusal is a 401 problem document with its Bearer challenge.

use axum::http::{HeaderMap, StatusCode};

use crate::auth::{bearer_token, AuthFailure};
use crate::problem::{Challenge, Problem};

/// A token shared between Chorus processes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A token that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "no internal token: set --internal-token or CHORUS_INTERNAL_TOKEN, the same secret on every fanout \
         and edge (e.g. `openssl rand -hex 32`); the edge refuses pushes without it, so neither starts \
         without one"
    )]
    NoInternalToken,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} must be printable ASCII without spaces (it travels in an HTTP header)")]
    NotPrintable(&'static str),
}

impl Secret {
    /// `token` as the secret of option `name` (named in the error).
    pub fn new(name: &'static str, token: &str) -> Result<Self, CredentialError> {
        if token.is_empty() {
            return Err(CredentialError::Empty(name));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::NotPrintable(name));
        }
        Ok(Secret(token.to_owned()))
    }

    /// A fresh random secret (256 bits, hex), for `chorus dev`.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Secret(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The token itself, to hand to a process that presents it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this secret, in time that depends only on the lengths.
    pub fn matches(&self, presented: &str) -> bool {
        let (expected, presented) = (self.0.as_bytes(), presented.as_bytes());
        if expected.len() != presented.len() {
            return false;
        }
        let difference = expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }

    /// Checks the bearer token of `headers` against this secret.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match bearer_token(headers) {
            Ok(token) if self.matches(token) => Ok(()),
            Ok(_) | Err(AuthFailure::Malformed(_)) => Err(Refusal::Invalid),
            Err(_) => Err(Refusal::Missing),
        }
    }
}

/// Why a request was refused for its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// A token that is not the configured one (or not a bearer token).
    Invalid,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing_token",
            Refusal::Invalid => "invalid_token",
        }
    }

    /// The 401 problem document, with its challenge.
    pub fn problem(self) -> Problem {
        match self {
            Refusal::Missing => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Unauthenticated",
                "send `Authorization: Bearer <token>`",
            )
            .challenge(Challenge::Missing),
            Refusal::Invalid => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "Invalid token",
                "the bearer token is not the one configured here",
            )
            .challenge(Challenge::InvalidToken),
        }
    }
}

/// The internal link's token, flattened into fanout's and the edge's options. `Debug` never shows it.
#[derive(Clone, Default, clap::Args)]
pub struct InternalTokenArgs {
    /// Shared secret of the internal link from fanout to edges, the same on every fanout and edge: fanout
    /// sends it as `Authorization: Bearer <token>` when it connects, and the edge refuses (401) any push
    /// connection without it. Required: fanout and edge refuse to start without one (`chorus dev` generates
    /// one).
    #[arg(long, env = "CHORUS_INTERNAL_TOKEN", hide_env_values = true)]
    pub internal_token: Option<String>,
}

impl std::fmt::Debug for InternalTokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTokenArgs")
            .field(
                "internal_token",
                &self.internal_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl InternalTokenArgs {
    /// The configured token; its absence is an error (see the module documentation).
    pub fn secret(&self) -> Result<Secret, CredentialError> {
        let token = self
            .internal_token
            .as_deref()
            .ok_or(CredentialError::NoInternalToken)?;
        Secret::new("--internal-token (CHORUS_INTERNAL_TOKEN)", token)
    }
}

/// The admin port's token, flattened into the options of a role with mutating admin routes. `Debug` never
/// shows it.
#[derive(Clone, Default, clap::Args)]
pub struct AdminTokenArgs {
    /// Token the admin port's mutating routes (`POST /drain`) require as `Authorization: Bearer <token>`
    /// (401 otherwise). Without it they are open to whoever reaches the admin port; `/metrics`, `/healthz`
    /// and `/readyz` are open either way.
    #[arg(long, env = "CHORUS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for AdminTokenArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTokenArgs")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl AdminTokenArgs {
    /// The configured token, if any (an empty one is an error, not "no token").
    pub fn secret(&self) -> Result<Option<Secret>, CredentialError> {
        self.admin_token
            .as_deref()
            .map(|token| Secret::new("--admin-token (CHORUS_ADMIN_TOKEN)", token))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let secret = Secret::new("--t", "s3cret").expect("secret");
        assert_eq!(secret.check(&with_authorization("Bearer s3cret")), Ok(()));
        assert_eq!(secret.check(&with_authorization("bearer s3cret")), Ok(()));
        assert_eq!(secret.check(&HeaderMap::new()), Err(Refusal::Missing));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret!",
            "Bearer S3CRET",
            "Basic s3cret",
        ] {
            assert_eq!(
                secret.check(&with_authorization(wrong)),
                Err(Refusal::Invalid),
                "{wrong}"
            );
        }
    }

    #[test]
    fn a_secret_is_never_shown_and_must_be_usable_in_a_header() {
        let args = InternalTokenArgs {
            internal_token: Some("hunter2".into()),
        };
        assert!(!format!("{args:?}").contains("hunter2"));
        let secret = args.secret().expect("secret");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(
            InternalTokenArgs::default().secret(),
            Err(CredentialError::NoInternalToken)
        );
        assert!(Secret::new("--t", "").is_err());
        assert!(Secret::new("--t", "two words").is_err());
        assert_eq!(AdminTokenArgs::default().secret(), Ok(None));
        let generated = Secret::generate();
        assert_eq!(generated.expose().len(), 64);
        assert_ne!(generated, Secret::generate());
    }

    #[test]
    fn refusals_are_401_problems_with_their_challenge() {
        use axum::response::IntoResponse;
        let missing = Refusal::Missing.problem().into_response();
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            missing.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"chorus\""
        );
        let invalid = Refusal::Invalid.problem().into_response();
        assert_eq!(
            invalid.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"chorus\", error=\"invalid_token\""
        );
    }
}
