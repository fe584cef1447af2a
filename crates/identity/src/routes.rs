//! `/auth/register`, `/auth/login`, `/me`.

use crate::domain::{Preferences, SavedAddress, User, MAX_ADDRESSES};
use crate::service::{IdentityService, ProfileChange, Registration, Session};
use axum::extract::State;
use axum::http::StatusCode;
use mercato_contracts::types::ShippingAddress;
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::error::ErrorBody;
use mercato_kernel::http::Path;
use mercato_kernel::http::{Created, Json, JsonObject, Query};
use mercato_kernel::page::{Page, PageQuery};
use mercato_kernel::{ApiError, ApiResult};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

type AppState = Arc<IdentityService>;

pub fn router(service: Arc<IdentityService>) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me, update_me, erase_me))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(list_addresses, add_address))
        .routes(routes!(delete_address))
        .routes(routes!(list_users))
        .routes(routes!(set_standing))
        .with_state(service)
}

/// What an e-mail address to sign up with must be: at most 254 characters,
/// a local part of 1 to 64 ASCII letters, digits and ``.!#$%&'*+/=?^_`{|}~-``,
/// `@`, and a domain of two or more dot-separated labels of letters, digits
/// and inner hyphens (each 1 to 63 characters). Letters are kept lower-case.
/// The same text is the `pattern` of [`RegisterRequest::email`].
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// The address to sign in with; unique, compared without regard to case.
    #[schema(
        max_length = 254,
        pattern = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$",
        example = "ada@example.com"
    )]
    pub email: String,
    /// 8 to 1024 characters.
    #[schema(min_length = 8, max_length = 1024, example = "correct horse")]
    pub password: String,
    /// 1 to 200 characters, not only white space (kept without the white
    /// space around it).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S", example = "Ada")]
    pub name: String,
    /// `customer` when absent or null.
    #[schema(inline)]
    pub role: Option<SignUpRole>,
}

/// The roles one can sign up for; admins are made from the command line.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignUpRole {
    Customer,
    Seller,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// As signed up with; case and white space around it do not matter.
    pub email: String,
    pub password: String,
}

/// Whether `email` is an address one can sign up with ([`EMAIL_PATTERN`]).
fn email_ok(email: &str) -> bool {
    fn label_ok(label: &str) -> bool {
        let b = label.as_bytes();
        (1..=63).contains(&b.len())
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
    }
    const LOCAL_SPECIALS: &[u8] = b".!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || LOCAL_SPECIALS.contains(&c))
        && domain.split('.').count() >= 2
        && domain.split('.').all(label_ok)
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
        (status = 409, description = "`email_taken`: the e-mail address is already registered", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an e-mail address, password, name or role out of the rules above", body = ErrorBody),
    ))]
async fn register(
    State(service): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> ApiResult<Created<AuthResponse>> {
    let role = match body.role {
        None | Some(SignUpRole::Customer) => Role::Customer,
        Some(SignUpRole::Seller) => Role::Seller,
    };
    if !email_ok(&body.email) {
        return Err(ApiError::validation(format!(
            "{:?} is not an e-mail address one can sign up with",
            body.email
        )));
    }
    if body.name.chars().count() > 200 {
        return Err(ApiError::validation("name must be 1 to 200 characters"));
    }
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
        (status = 401, description = "`invalid_credentials`: wrong e-mail or password (the same for an unknown e-mail)", body = ErrorBody),
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

/// What a user may change of their profile; absent stays as it is.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateMeRequest {
    /// 1 to 200 characters, not only white space.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    /// A new password, 8 to 1024 characters; needs `current_password`.
    #[schema(min_length = 8, max_length = 1024)]
    pub password: Option<String>,
    /// The password now, to change it.
    pub current_password: Option<String>,
}

/// Change the signed-in user's name or password.
#[utoipa::path(patch, path = "/me", tag = "identity",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The user as changed", body = User),
        (status = 401, description = "`invalid_credentials`: the current password is wrong; `unauthorized`: not signed in, or the account no longer exists", body = ErrorBody),
        (status = 422, description = "`current_password_required`: a new password without the current one; `validation_failed`: a field out of its rules", body = ErrorBody),
    ))]
async fn update_me(
    State(service): State<AppState>,
    caller: Caller,
    JsonObject(body): JsonObject<UpdateMeRequest>,
) -> ApiResult<Json<User>> {
    let change = ProfileChange {
        name: body.name,
        password: body.password,
        current_password: body.current_password,
    };
    Ok(Json(service.update_profile(caller, change).await?))
}

/// What the signed-in user wants to be told, and how.
#[utoipa::path(get, path = "/me/preferences", tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The preferences (e-mail on, the rest off, until set)", body = Preferences),
        (status = 401, body = ErrorBody),
    ))]
async fn get_preferences(
    State(service): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Preferences>> {
    Ok(Json(service.store().preferences(caller.user_id).await?))
}

/// Set what the signed-in user wants to be told, and how: a channel
/// switched off is not used (its notifications show as `skipped`).
#[utoipa::path(put, path = "/me/preferences", tag = "identity",
    security(("bearer" = [])),
    request_body = Preferences,
    responses(
        (status = 200, description = "The preferences as set", body = Preferences),
        (status = 401, body = ErrorBody),
    ))]
async fn put_preferences(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<Preferences>,
) -> ApiResult<Json<Preferences>> {
    service
        .user(caller.user_id)
        .await
        .map_err(|_| ApiError::unauthorized("the account of this token no longer exists"))?;
    service
        .store()
        .put_preferences(caller.user_id, &body)
        .await?;
    Ok(Json(body))
}

/// An address to save: as checkout takes it, and whether it becomes the
/// default.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AddAddressRequest {
    #[serde(flatten)]
    #[schema(inline)]
    pub address: ShippingAddress,
    /// The one used when none is named; the first address is the default
    /// anyway.
    #[serde(default)]
    pub default: bool,
}

/// The signed-in user's addresses, the default first.
#[utoipa::path(get, path = "/me/addresses", tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every address, in one page; `next_cursor` is always null", body = Page<SavedAddress>),
        (status = 401, body = ErrorBody),
    ))]
async fn list_addresses(
    State(service): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Page<SavedAddress>>> {
    Ok(Json(Page {
        items: service.store().addresses(caller.user_id).await?,
        next_cursor: None,
    }))
}

/// Save an address for the signed-in user (at most 20).
#[utoipa::path(post, path = "/me/addresses", tag = "identity",
    security(("bearer" = [])),
    request_body = AddAddressRequest,
    responses(
        (status = 201, description = "Saved", body = SavedAddress),
        (status = 401, body = ErrorBody),
        (status = 422, description = "`too_many_addresses`: 20 saved already; `validation_failed`: a field out of its rules", body = ErrorBody),
    ))]
async fn add_address(
    State(service): State<AppState>,
    caller: Caller,
    Json(body): Json<AddAddressRequest>,
) -> ApiResult<Created<SavedAddress>> {
    body.address.validate()?;
    service
        .user(caller.user_id)
        .await
        .map_err(|_| ApiError::unauthorized("the account of this token no longer exists"))?;
    match service
        .store()
        .add_address(caller.user_id, &body.address, body.default)
        .await?
    {
        Some(saved) => Ok(Created(saved)),
        None => Err(ApiError::unprocessable(
            "too_many_addresses",
            format!("at most {MAX_ADDRESSES} addresses; delete one first"),
        )),
    }
}

/// Delete one of the signed-in user's addresses.
#[utoipa::path(delete, path = "/me/addresses/{id}", tag = "identity",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Address id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = ErrorBody),
        (status = 404, description = "`not_found`: the user has no such address", body = ErrorBody),
    ))]
async fn delete_address(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("address"))?;
    if !service.store().delete_address(caller.user_id, id).await? {
        return Err(ApiError::not_found("address"));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Only users of this role; empty or absent for every role.
    #[param(pattern = "^(|customer|seller|admin)$")]
    pub role: Option<String>,
    /// A part of the e-mail or name, any case: at most 200 characters.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Page size, at least 1 (default 20); values above 100 are served as 100.
    #[param(minimum = 1, default = 20)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page; empty or absent for the first.
    #[param(pattern = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$")]
    pub cursor: Option<String>,
}

/// Users, newest first (admins).
#[utoipa::path(get, path = "/admin/users", tag = "identity",
    security(("bearer" = [])),
    params(UserListQuery),
    responses(
        (status = 200, description = "A page of users", body = Page<User>),
        (status = 400, description = "`invalid_cursor`: the cursor is not base64url", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins", body = ErrorBody),
        (status = 422, description = "`validation_failed`: a limit below 1, an unknown role, or `q` over 200 characters", body = ErrorBody),
    ))]
async fn list_users(
    State(service): State<AppState>,
    caller: Caller,
    Query(q): Query<UserListQuery>,
) -> ApiResult<Json<Page<User>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .validate()?;
    let role = match q.role.as_deref() {
        None | Some("") => None,
        Some(r) => Some(
            Role::parse(r).ok_or_else(|| ApiError::validation(format!("unknown role {r:?}")))?,
        ),
    };
    let text = q.q.as_deref().filter(|t| !t.is_empty());
    if text.is_some_and(|t| t.chars().count() > 200) {
        return Err(ApiError::validation("q must be at most 200 characters"));
    }
    Ok(Json(service.list_users(caller, role, text, &page).await?))
}

/// What an admin changes of a user.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StandingRequest {
    pub role: Option<Role>,
    /// A disabled user cannot sign in (403 `account_disabled`), and every
    /// token of theirs is refused (401).
    pub disabled: Option<bool>,
}

/// Change a user's role or disable the account (admins). Tokens issued
/// before carry the old standing and stop working within
/// `auth.access_cache_ms`.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "identity",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User id")),
    request_body = StandingRequest,
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "`malformed_json`", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "`forbidden`: only admins", body = ErrorBody),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
        (status = 409, description = "`cannot_lock_self_out`: an admin disabling or demoting themself", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "`validation_failed`", body = ErrorBody),
    ))]
async fn set_standing(
    State(service): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonObject(body): JsonObject<StandingRequest>,
) -> ApiResult<Json<User>> {
    caller.require(&[Role::Admin])?;
    let id = mercato_kernel::id::parse_id(&id).ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(
        service
            .set_standing(caller, id, body.role, body.disabled)
            .await?,
    ))
}

/// Erase the signed-in user: e-mail, name, password and saved addresses are
/// removed at once and every token stops working; orders are kept with the
/// address anonymised, notifications lose the address and name.
#[utoipa::path(delete, path = "/me", tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Erased"),
        (status = 401, description = "`unauthorized`: not signed in, or the account no longer exists", body = ErrorBody),
    ))]
async fn erase_me(State(service): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    service.erase(caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/me", tag = "identity",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "`unauthorized`: not signed in, or the account no longer exists", body = ErrorBody),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_up_addresses_follow_the_documented_pattern() {
        for ok in [
            "ada@example.com",
            "Ada.Lovelace+shop@mail.example.co.uk",
            "a@b.c",
            "o'neil@x-y.example",
            "!#$%&'*+/=?^_`{|}~-@a1.b2",
        ] {
            assert!(email_ok(ok), "{ok} refused");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_label = format!("a@{}.com", "b".repeat(64));
        let long = format!("a@{}.com", vec!["b".repeat(63); 4].join("."));
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@-example.com",
            "ada@example-.com",
            "ada@example..com",
            "ada@.example.com",
            "ada@example.com.",
            "ada@exa_mple.com",
            "a da@example.com",
            " ada@example.com",
            "ada@example.com ",
            "ada@b@example.com",
            "\u{e9}@example.com",
            "ada@\u{e9}xample.com",
            long_local.as_str(),
            long_label.as_str(),
            long.as_str(),
        ] {
            assert!(!email_ok(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_email_pattern_is_the_one_in_the_document() {
        let schema = serde_json::to_string(&<RegisterRequest as utoipa::PartialSchema>::schema())
            .unwrap_or_default();
        let pattern = serde_json::to_string(EMAIL_PATTERN).unwrap_or_default();
        assert!(schema.contains(&pattern), "{schema}");
    }
}

/// Identity's endpoints for other Mercato services (distributed mode).
pub fn internal_router(service: Arc<IdentityService>) -> OpenApiRouter {
    internal::router(service)
}

mod internal {
    use super::AppState;
    use mercato_contracts::clients::IdentityClient;
    use mercato_contracts::internal::api_error;
    use mercato_contracts::types::ShippingAddress;
    use mercato_kernel::error::ErrorBody;
    use mercato_kernel::http::{Json, Path};
    use mercato_kernel::{ApiError, ApiResult};
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    use uuid::Uuid;

    pub(super) fn router(service: AppState) -> OpenApiRouter {
        OpenApiRouter::new()
            .routes(routes!(saved_address))
            .routes(routes!(standing))
            .with_state(service)
    }

    /// A user's role and whether the account is disabled.
    #[utoipa::path(get, path = "/users/{user_id}/access", tag = "internal", security(("service_token" = [])),
        params(("user_id" = String, Path, description = "User id")),
        responses(
            (status = 200, description = "`{role, disabled}`"),
            (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn standing(
        axum::extract::State(service): axum::extract::State<AppState>,
        Path(user_id): Path<Uuid>,
    ) -> ApiResult<Json<mercato_contracts::clients::Access>> {
        service
            .access(user_id)
            .await
            .map_err(api_error)?
            .map(Json)
            .ok_or_else(|| ApiError::not_found("user"))
    }

    /// One of a user's saved addresses, or (`default`) the default one.
    #[utoipa::path(get, path = "/users/{user_id}/addresses/{id}", tag = "internal", security(("service_token" = [])),
        params(
            ("user_id" = String, Path, description = "User id"),
            ("id" = String, Path, description = "Address id, or `default`"),
        ),
        responses(
            (status = 200, description = "The address", body = ShippingAddress),
            (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
            (status = 503, body = ErrorBody),
        ))]
    async fn saved_address(
        axum::extract::State(service): axum::extract::State<AppState>,
        Path((user_id, id)): Path<(Uuid, String)>,
    ) -> ApiResult<Json<ShippingAddress>> {
        let id = match id.as_str() {
            "default" => None,
            other => Some(
                mercato_kernel::id::parse_id(other)
                    .ok_or_else(|| ApiError::not_found("address"))?,
            ),
        };
        service
            .address(user_id, id)
            .await
            .map_err(api_error)?
            .map(Json)
            .ok_or_else(|| ApiError::not_found("address"))
    }
}
