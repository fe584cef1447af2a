//! `/auth/register`, `/auth/login`, `/me`.

use crate::domain::User;
use crate::service::{IdentityService, Registration, Session};
use axum::extract::State;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::{Created, Json};
use mercato_kernel::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<IdentityService>;

pub fn router(service: Arc<IdentityService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me))
        .with_state(service)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    pub password: String,
    pub name: String,
    /// `customer` (default) or `seller`.
    pub role: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuthResponse {
    pub user: User,
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

impl From<Session> for AuthResponse {
    fn from(s: Session) -> Self {
        Self {
            user: s.user,
            access_token: s.access_token,
            token_type: "Bearer",
            expires_in: s.expires_in,
        }
    }
}

/// Create an account and sign in.
#[utoipa::path(post, path = "/auth/register", tag = "identity",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created", body = AuthResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 409, description = "E-mail already registered", body = ErrorBody),
        (status = 422, description = "Invalid e-mail, short password or unknown role", body = ErrorBody),
    ))]
async fn register(
    State(service): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<Created<AuthResponse>> {
    let role = match body.role.as_deref() {
        None | Some("customer") => Role::Customer,
        Some("seller") => Role::Seller,
        Some(other) => {
            return Err(ApiError::validation(format!(
                "role must be customer or seller, not {other:?}"
            )))
        }
    };
    let session = service
        .register(Registration {
            email: body.email,
            password: body.password,
            name: body.name,
            role,
        })
        .await?;
    Ok(Created(session.into()))
}

/// Sign in with e-mail and password.
#[utoipa::path(post, path = "/auth/login", tag = "identity",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Wrong e-mail or password", body = ErrorBody),
        (status = 429, description = "`too_many_attempts`: too many failed sign-ins for this address lately; `Retry-After` says when to try again",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
async fn login(
    State(service): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> ApiResult<Json<AuthResponse>> {
    let session = service.login(&body.email, &body.password).await?;
    Ok(Json(session.into()))
}

/// The signed-in user.
#[utoipa::path(get, path = "/me", tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
async fn me(State(service): State<AppState>, caller: Caller) -> ApiResult<Json<User>> {
    // A valid token for a user that no longer exists is no longer a session.
    match service.user(caller.user_id).await {
        Ok(user) => Ok(Json(user)),
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => Err(ApiError::unauthorized(
            "the account of this token no longer exists",
        )),
        Err(e) => Err(e),
    }
}
