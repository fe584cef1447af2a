//! Caller authentication: signed JWTs (HS256) carrying the user id and role.
//!
//! Identity issues tokens; every other context only verifies them. A request
//! passes through [`authenticate`], which records an [`Authentication`] in the
//! request extensions; handlers ask for a [`Caller`] (401 when absent or
//! invalid) or an `Option<Caller>` for public endpoints.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, OptionalFromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Seller,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Seller => "seller",
            Role::Admin => "admin",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "customer" => Some(Role::Customer),
            "seller" => Some(Role::Seller),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

const ISSUER: &str = "mercato";

/// Whether a user's valid tokens are still honoured: the account may have
/// been disabled, erased or given another role since a token was issued.
#[async_trait::async_trait]
pub trait AccessCheck: Send + Sync + 'static {
    /// Why a token of `user_id` with `role` is refused now; `None` to
    /// honour it.
    async fn refused(&self, user_id: Uuid, role: Role) -> Option<&'static str>;
}

/// Keys to sign and verify access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub ttl_secs: i64,
    /// Consulted for every verified token once set (the identity context
    /// exists only after the keys it signs with).
    access: std::sync::OnceLock<Arc<dyn AccessCheck>>,
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8], ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
            access: std::sync::OnceLock::new(),
        }
    }

    /// Makes [`authenticate`] ask `check` about every verified token; the
    /// first call wins.
    pub fn check_access_with(&self, check: Arc<dyn AccessCheck>) {
        let _ = self.access.set(check);
    }

    pub fn issue(&self, user_id: Uuid, role: Role) -> Result<String, ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            role,
            iat: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.to_owned(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the caller has one of the roles.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this action is not allowed for role {}",
                self.role.as_str()
            )))
        }
    }
}

/// What the authentication middleware found on a request.
#[derive(Debug, Clone)]
pub enum Authentication {
    Anonymous,
    User(Caller),
    Invalid(&'static str),
}

/// Middleware: verifies a bearer token when one is sent.
pub async fn authenticate(
    State(keys): State<Arc<TokenKeys>>,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = match req.headers().get(AUTHORIZATION) {
        None => Authentication::Anonymous,
        Some(value) => match value.to_str().ok().and_then(bearer_token) {
            None => Authentication::Invalid("expected an Authorization: Bearer <token> header"),
            Some(token) => match keys.verify(token) {
                Ok(claims) => match keys.access.get() {
                    Some(check) => match check.refused(claims.sub, claims.role).await {
                        Some(why) => Authentication::Invalid(why),
                        None => Authentication::User(Caller {
                            user_id: claims.sub,
                            role: claims.role,
                        }),
                    },
                    None => Authentication::User(Caller {
                        user_id: claims.sub,
                        role: claims.role,
                    }),
                },
                Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                    Authentication::Invalid("the access token has expired")
                }
                Err(_) => Authentication::Invalid("the access token is not valid"),
            },
        },
    };
    req.extensions_mut().insert(auth);
    next.run(req).await
}

fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::User(caller)) => Ok(*caller),
            Some(Authentication::Invalid(why)) => Err(ApiError::unauthorized(*why)),
            _ => Err(ApiError::unauthorized(
                "sign in first: no access token was sent",
            )),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        match parts.extensions.get::<Authentication>() {
            Some(Authentication::User(caller)) => Ok(Some(*caller)),
            Some(Authentication::Invalid(why)) => Err(ApiError::unauthorized(*why)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_foreign_ones_do_not() {
        let keys = TokenKeys::from_secret(b"a-secret-of-sufficient-length-000", 60);
        let id = crate::id::new_id();
        let token = keys.issue(id, Role::Seller).expect("issues");
        let claims = keys.verify(&token).expect("verifies");
        assert_eq!((claims.sub, claims.role), (id, Role::Seller));

        let other = TokenKeys::from_secret(b"another-secret-of-sufficient-len", 60);
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let keys = TokenKeys::from_secret(b"a-secret-of-sufficient-length-000", -3600);
        let token = keys
            .issue(crate::id::new_id(), Role::Customer)
            .expect("issues");
        assert!(keys.verify(&token).is_err());
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
