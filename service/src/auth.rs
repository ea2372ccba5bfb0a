//! Who is posting: bearer tokens (JWT) verified with a key the operator configures.
//!
//! A client sends `Authorization: Bearer <jwt>`. The token must be signed with HS256 (a shared secret,
//! `--jwt-hs256-secret`) or RS256 (the identity provider's public key, `--jwt-rs256-public-key-file`); with both
//! keys configured, the token's `alg` header picks the key. Its claims:
//!
//! - `sub` (required): the user id Chorus records with every comment and like;
//! - `exp` (required): expiry, in seconds since the epoch; `nbf` is honoured when present;
//! - `iss` / `aud`: checked against `--jwt-issuer` / `--jwt-audience` when those are set;
//! - `role` (optional): `"viewer"`, `"moderator"` or `"owner"`, the user's role on every stream; missing means
//!   viewer;
//! - `roles` (optional): per-stream roles, `{"<stream_id>": "owner"}`; an entry for the stream posted to wins
//!   over `role`.
//!
//! Clock skew between the issuer and Chorus is tolerated up to `--jwt-leeway-s`.
//!
//! Which mode a role runs in: `--auth jwt` or `--auth trusted-header`. Without `--auth`, a role verifies
//! tokens when a JWT key is configured and otherwise trusts a user-id header set by a gateway in front of it.

use std::collections::HashMap;
use std::path::PathBuf;

use axum::http::{header, HeaderMap};
use chorus_schemas::UserRole;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How a request proves who sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// `Authorization: Bearer <jwt>`, verified with the configured key.
    Jwt,
    /// A user-id header set by a trusted gateway in front of Chorus; nothing is verified.
    TrustedHeader,
}

/// Token verification options, flattened into a role's configuration. `Debug` never shows the secret.
#[derive(Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// `jwt` or `trusted-header`. Default: `jwt` when a JWT key is configured; without one it must be given
    /// (trusting a header is never a silent default).
    #[arg(long = "auth", env = "CHORUS_AUTH", value_enum)]
    pub auth: Option<AuthMode>,
    /// Shared secret of HS256-signed tokens.
    #[arg(long, env = "CHORUS_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,
    /// PEM file with the public key of RS256-signed tokens.
    #[arg(long, env = "CHORUS_JWT_RS256_PUBLIC_KEY_FILE")]
    pub jwt_rs256_public_key_file: Option<PathBuf>,
    /// Required `iss` claim, when set.
    #[arg(long, env = "CHORUS_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` claim, when set.
    #[arg(long, env = "CHORUS_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Clock skew tolerated when checking `exp` and `nbf`, in seconds.
    #[arg(long, env = "CHORUS_JWT_LEEWAY_S", default_value_t = 30)]
    pub jwt_leeway_s: u64,
}

impl std::fmt::Debug for AuthArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthArgs")
            .field("auth", &self.auth)
            .field(
                "jwt_hs256_secret",
                &self.jwt_hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_rs256_public_key_file", &self.jwt_rs256_public_key_file)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_leeway_s", &self.jwt_leeway_s)
            .finish()
    }
}

/// A configuration that cannot verify anything.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("--auth jwt needs --jwt-hs256-secret or --jwt-rs256-public-key-file")]
    NoKey,
    #[error(
        "no way to tell who is posting: configure a JWT key (--jwt-hs256-secret or \
         --jwt-rs256-public-key-file), or pass --auth trusted-header when a gateway in front sets the \
         user-id header"
    )]
    Unconfigured,
    #[error("--jwt-hs256-secret must not be empty")]
    EmptySecret,
    #[error("cannot read the RS256 public key {path:?}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path:?} is not an RSA public key in PEM: {source}")]
    BadKey {
        path: PathBuf,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

impl AuthArgs {
    /// The mode in force: `--auth` if given, else `jwt` when a key is configured; neither is an error.
    pub fn mode(&self) -> Result<AuthMode, AuthSetupError> {
        match self.auth {
            Some(mode) => Ok(mode),
            None if self.jwt_hs256_secret.is_some() || self.jwt_rs256_public_key_file.is_some() => {
                Ok(AuthMode::Jwt)
            }
            None => Err(AuthSetupError::Unconfigured),
        }
    }

    /// The verifier for `--auth jwt` (reads the key file now), or `None` in trusted-header mode.
    pub fn verifier(&self) -> Result<Option<TokenVerifier>, AuthSetupError> {
        match self.mode()? {
            AuthMode::TrustedHeader => Ok(None),
            AuthMode::Jwt => TokenVerifier::new(self).map(Some),
        }
    }
}

/// Why a request's token was not accepted. Each has a short [`reason`](AuthFailure::reason) for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's audience (aud) is not this service")]
    WrongAudience,
    #[error("the token's issuer (iss) is not the configured one")]
    WrongIssuer,
    #[error("the token is signed with {0}, which this service does not accept")]
    Algorithm(String),
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
}

impl AuthFailure {
    /// Short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed(_) => "malformed",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::Algorithm(_) => "algorithm",
            AuthFailure::MissingClaim(_) => "missing_claim",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthFailure {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            ErrorKind::ExpiredSignature => AuthFailure::Expired,
            ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
            ErrorKind::InvalidSignature => AuthFailure::BadSignature,
            ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
            ErrorKind::InvalidIssuer => AuthFailure::WrongIssuer,
            ErrorKind::InvalidAlgorithm => AuthFailure::Algorithm("another algorithm".into()),
            ErrorKind::MissingRequiredClaim(claim) => AuthFailure::MissingClaim(claim.clone()),
            _ => AuthFailure::Malformed(error.to_string()),
        }
    }
}

/// The claims Chorus reads; others are ignored.
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    roles: HashMap<String, String>,
}

/// Who a verified token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    role: Option<String>,
    roles: HashMap<String, String>,
}

impl Identity {
    /// The caller's role on `stream_id`: its `roles` entry, else `role`, else viewer. `Err` names a role claim
    /// Chorus does not know (the token is valid, but Chorus cannot tell what it allows).
    /// Whether the token's platform-wide `role` claim is `name` (in any case): an administrator's.
    pub fn has_role(&self, name: &str) -> bool {
        self.role
            .as_deref()
            .is_some_and(|role| role.eq_ignore_ascii_case(name))
    }

    pub fn role_on(&self, stream_id: &str) -> Result<UserRole, String> {
        match self.roles.get(stream_id).or(self.role.as_ref()) {
            None => Ok(UserRole::Viewer),
            Some(role) => parse_role(role).ok_or_else(|| role.clone()),
        }
    }
}

/// `viewer`, `moderator` or `owner` (any case).
pub fn parse_role(raw: &str) -> Option<UserRole> {
    match raw.to_ascii_lowercase().as_str() {
        "viewer" => Some(UserRole::Viewer),
        "moderator" => Some(UserRole::Moderator),
        "owner" => Some(UserRole::Owner),
        _ => None,
    }
}

/// Verifies bearer tokens with the configured keys, issuer, audience and leeway.
#[derive(Clone)]
pub struct TokenVerifier {
    hs256: Option<(DecodingKey, Validation)>,
    rs256: Option<(DecodingKey, Validation)>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .finish()
    }
}

impl TokenVerifier {
    pub fn new(args: &AuthArgs) -> Result<Self, AuthSetupError> {
        let validation = |algorithm| {
            let mut validation = Validation::new(algorithm);
            validation.leeway = args.jwt_leeway_s;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub"]);
            match &args.jwt_issuer {
                Some(issuer) => validation.set_issuer(&[issuer]),
                None => validation.iss = None,
            }
            match &args.jwt_audience {
                Some(audience) => validation.set_audience(&[audience]),
                None => validation.validate_aud = false,
            }
            validation
        };
        let hs256 = match &args.jwt_hs256_secret {
            Some(secret) if secret.is_empty() => return Err(AuthSetupError::EmptySecret),
            Some(secret) => Some((
                DecodingKey::from_secret(secret.as_bytes()),
                validation(Algorithm::HS256),
            )),
            None => None,
        };
        let rs256 = match &args.jwt_rs256_public_key_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|source| AuthSetupError::ReadKey {
                    path: path.clone(),
                    source,
                })?;
                let key =
                    DecodingKey::from_rsa_pem(&pem).map_err(|source| AuthSetupError::BadKey {
                        path: path.clone(),
                        source,
                    })?;
                Some((key, validation(Algorithm::RS256)))
            }
            None => None,
        };
        if hs256.is_none() && rs256.is_none() {
            return Err(AuthSetupError::NoKey);
        }
        Ok(TokenVerifier { hs256, rs256 })
    }

    /// Verifies the bearer token of `headers` (see [`bearer_token`]).
    pub fn verify_headers(&self, headers: &HeaderMap) -> Result<Identity, AuthFailure> {
        self.verify(bearer_token(headers)?)
    }

    /// Verifies `token`: signature, `exp`, `nbf`, and `iss`/`aud` when configured.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        let header = jsonwebtoken::decode_header(token)?;
        let (key, validation) = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| AuthFailure::Algorithm(format!("{:?}", header.alg)))?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)?.claims;
        Ok(Identity {
            user_id: claims.sub,
            role: claims.role,
            roles: claims.roles,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme in any case).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthFailure::Malformed("the Authorization header is not ASCII".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthFailure::Malformed(
            "the Authorization header is not `Bearer <token>`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_the_configured_key_and_is_never_guessed() {
        let mut args = AuthArgs::default();
        assert!(matches!(args.mode(), Err(AuthSetupError::Unconfigured)));
        assert!(matches!(args.verifier(), Err(AuthSetupError::Unconfigured)));
        args.jwt_hs256_secret = Some("s".into());
        assert_eq!(args.mode().ok(), Some(AuthMode::Jwt));
        args.auth = Some(AuthMode::TrustedHeader);
        assert_eq!(args.mode().ok(), Some(AuthMode::TrustedHeader));
        let no_key = AuthArgs {
            auth: Some(AuthMode::Jwt),
            ..AuthArgs::default()
        };
        assert!(matches!(no_key.verifier(), Err(AuthSetupError::NoKey)));
    }

    #[test]
    fn per_stream_roles_win() {
        let identity = Identity {
            user_id: "u".into(),
            role: Some("moderator".into()),
            roles: HashMap::from([
                ("mine".into(), "owner".into()),
                ("odd".into(), "king".into()),
            ]),
        };
        assert_eq!(identity.role_on("mine"), Ok(UserRole::Owner));
        assert_eq!(identity.role_on("other"), Ok(UserRole::Moderator));
        assert_eq!(identity.role_on("odd"), Err("king".into()));
    }
}
