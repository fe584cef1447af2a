//! Register, log in, look up.

use crate::domain::{validate_name, validate_password, Email, PasswordHasherConfig, User};
use crate::store::{IdentityStore, InsertUserError};
use mercato_kernel::auth::{Caller, Role, TokenKeys};
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, ApiError};
use std::sync::Arc;
use uuid::Uuid;

pub struct IdentityService {
    store: IdentityStore,
    keys: Arc<TokenKeys>,
    hasher: PasswordHasherConfig,
    /// Verified against when the e-mail is unknown, so that an unknown
    /// address takes as long to refuse as a wrong password.
    decoy_hash: String,
    /// Where argon2id runs: one thread per core (see [`crate::hashing`]).
    hashing: crate::hashing::HashingPool,
    throttle: LoginThrottle,
    /// Failed sign-ins counted; every so often, expired windows are dropped.
    failures_counted: std::sync::atomic::AtomicU64,
}

/// Sign-in abuse: after `max_failures` failed sign-ins for one address
/// within `window`, that address is answered 429 (with `Retry-After`) until
/// the window has passed, whatever the client and whatever the password,
/// and alike whether an account has the address or not.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    /// 0 turns the throttle off.
    pub max_failures: u32,
    pub window: std::time::Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: std::time::Duration::from_secs(15 * 60),
        }
    }
}

/// Expired windows are dropped once per this many failed sign-ins.
const PRUNE_EVERY_FAILURES: u64 = 1000;

/// What failed sign-ins are counted under: a hash of the address as typed,
/// trimmed and lower-cased (valid or not), never the address itself.
fn login_subject(email: &str) -> String {
    mercato_kernel::idempotency::fingerprint(&[b"login", email.trim().to_lowercase().as_bytes()])
}

/// A new account's details, as sent.
pub struct Registration {
    pub email: String,
    pub password: String,
    pub name: String,
    pub role: Role,
}

/// What a user changes of their profile; absent stays as it is.
pub struct ProfileChange {
    pub name: Option<String>,
    pub password: Option<String>,
    /// Needed with `password`.
    pub current_password: Option<String>,
}

/// A signed-in session.
pub struct Session {
    pub user: User,
    pub access_token: String,
    pub expires_in: i64,
}

impl IdentityService {
    pub fn new(
        store: IdentityStore,
        keys: Arc<TokenKeys>,
        hasher: PasswordHasherConfig,
        throttle: LoginThrottle,
    ) -> anyhow::Result<Self> {
        let decoy_hash = hasher.hash("decoy password, never matches")?;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Ok(Self {
            store,
            keys,
            hasher,
            decoy_hash,
            hashing: crate::hashing::HashingPool::new(cores)?,
            throttle,
            failures_counted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn store(&self) -> &IdentityStore {
        &self.store
    }

    async fn hash(&self, password: String) -> Result<String, ApiError> {
        let hasher = self.hasher.clone();
        self.hashing
            .run(move || hasher.hash(&password))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    async fn verify(&self, password: String, hash: String) -> Result<bool, ApiError> {
        let hasher = self.hasher.clone();
        self.hashing
            .run(move || hasher.verify(&password, &hash))
            .await
            .map_err(ApiError::internal)
    }

    /// Creates an account of any role; the HTTP layer decides who may ask for which.
    pub async fn register(&self, r: Registration) -> Result<Session, ApiError> {
        let email = Email::parse(&r.email)?;
        validate_password(&r.password)?;
        let name = validate_name(&r.name)?;
        let hash = self.hash(r.password).await?;
        let user = User {
            id: id::new_id(),
            email: email.as_str().to_owned(),
            name,
            role: r.role,
            disabled: false,
            created_at: time::now(),
        };
        match self.store.insert_user(&user, &hash).await {
            Ok(()) => {}
            Err(InsertUserError::DuplicateEmail) => {
                return Err(ApiError::conflict(
                    "email_taken",
                    "an account with this e-mail address already exists",
                ))
            }
            Err(InsertUserError::Store(e)) => return Err(e.into()),
        }
        metrics::counter!("mercato_users_registered_total", "role" => user.role.as_str())
            .increment(1);
        tracing::info!(user_id = %user.id, role = user.role.as_str(), "user registered");
        self.session(user)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<Session, ApiError> {
        let wrong = || {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong e-mail or password",
            )
        };
        let subject = login_subject(email);
        self.refuse_if_throttled(&subject).await?;
        let found = match Email::parse(email) {
            Ok(email) => self.store.by_email(&email).await?,
            Err(_) => None,
        };
        match found {
            Some((user, hash)) => {
                if self.verify(password.to_owned(), hash).await? {
                    if self.throttle.max_failures > 0 {
                        self.store.clear_login_failures(&subject).await?;
                    }
                    if user.disabled {
                        return Err(ApiError::new(
                            axum::http::StatusCode::FORBIDDEN,
                            "account_disabled",
                            "this account has been disabled",
                        ));
                    }
                    self.session(user)
                } else {
                    self.count_failure(&subject).await?;
                    Err(wrong())
                }
            }
            None => {
                let _ = self
                    .verify(password.to_owned(), self.decoy_hash.clone())
                    .await?;
                self.count_failure(&subject).await?;
                Err(wrong())
            }
        }
    }

    /// The start of the sign-in window that is still open at `now`.
    fn window_after(&self, now: time::Timestamp) -> String {
        let window = chrono::Duration::from_std(self.throttle.window).unwrap_or_default();
        time::to_db(&(now - window))
    }

    async fn refuse_if_throttled(&self, subject: &str) -> Result<(), ApiError> {
        if self.throttle.max_failures == 0 {
            return Ok(());
        }
        let now = time::now();
        let Some((failures, started)) = self
            .store
            .login_failures(subject, &self.window_after(now))
            .await?
        else {
            return Ok(());
        };
        if failures < i64::from(self.throttle.max_failures) {
            return Ok(());
        }
        let reopens = time::from_db(&started)
            .map(|t| t + chrono::Duration::from_std(self.throttle.window).unwrap_or_default())
            .unwrap_or(now);
        let retry_after = (reopens - now).num_seconds().max(1) as u64;
        metrics::counter!("mercato_login_throttled_total").increment(1);
        let mut e = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed sign-ins for this address; try again later",
        );
        e.retry_after_secs = Some(retry_after);
        Err(e)
    }

    async fn count_failure(&self, subject: &str) -> Result<(), ApiError> {
        if self.throttle.max_failures == 0 {
            return Ok(());
        }
        let now = time::now();
        let window_after = self.window_after(now);
        self.store
            .count_login_failure(subject, &time::to_db(&now), &window_after)
            .await?;
        let n = self
            .failures_counted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % PRUNE_EVERY_FAILURES == PRUNE_EVERY_FAILURES - 1 {
            if let Err(e) = self.store.prune_login_failures(&window_after).await {
                tracing::warn!(error = %e, "dropping expired sign-in windows failed");
            }
        }
        Ok(())
    }

    /// Changes the caller's name and password. A new password needs the
    /// current one: 422 `current_password_required` without it, 401
    /// `invalid_credentials` when it is wrong.
    pub async fn update_profile(
        &self,
        caller: Caller,
        change: ProfileChange,
    ) -> Result<User, ApiError> {
        let Some((mut user, hash)) = self.store.with_hash(caller.user_id).await? else {
            return Err(ApiError::unauthorized(
                "the account of this token no longer exists",
            ));
        };
        if let Some(name) = &change.name {
            user.name = validate_name(name)?;
        }
        let new_hash = match change.password {
            None => None,
            Some(password) => {
                let Some(current) = change.current_password else {
                    return Err(ApiError::unprocessable(
                        "current_password_required",
                        "changing the password needs current_password",
                    ));
                };
                validate_password(&password)?;
                if !self.verify(current, hash).await? {
                    return Err(ApiError::new(
                        axum::http::StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "the current password is wrong",
                    ));
                }
                Some(self.hash(password).await?)
            }
        };
        self.store.update_user(&user, new_hash.as_deref()).await?;
        tracing::info!(user_id = %user.id, password_changed = new_hash.is_some(), "profile changed");
        Ok(user)
    }

    pub async fn user(&self, id: Uuid) -> Result<User, ApiError> {
        self.store
            .by_id(id)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))
    }

    /// Erases the caller's account (`DELETE /me`): what identity holds of
    /// the person goes at once, the other contexts follow `user.erased`.
    pub async fn erase(&self, caller: Caller) -> Result<(), ApiError> {
        if !self.store.erase(caller.user_id).await? {
            return Err(ApiError::unauthorized(
                "the account of this token no longer exists",
            ));
        }
        metrics::counter!("mercato_users_erased_total").increment(1);
        tracing::info!(user_id = %caller.user_id, "user erased");
        Ok(())
    }

    /// Users for an admin, newest first.
    pub async fn list_users(
        &self,
        caller: Caller,
        role: Option<Role>,
        q: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<User>, ApiError> {
        caller.require(&[Role::Admin])?;
        Ok(self.store.list_users(role, q, page).await?)
    }

    /// Changes a user's role or disables the account (admins); tokens the
    /// user holds stop working. An admin cannot disable or demote themself.
    pub async fn set_standing(
        &self,
        caller: Caller,
        id: Uuid,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> Result<User, ApiError> {
        caller.require(&[Role::Admin])?;
        if id == caller.user_id
            && (disabled == Some(true) || role.is_some_and(|r| r != Role::Admin))
        {
            return Err(ApiError::conflict(
                "cannot_lock_self_out",
                "an admin cannot disable or demote their own account",
            ));
        }
        let user = self
            .store
            .set_standing(id, role, disabled)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        tracing::info!(user_id = %id, role = user.role.as_str(), disabled = user.disabled, "user standing changed");
        Ok(user)
    }

    fn session(&self, user: User) -> Result<Session, ApiError> {
        let access_token = self.keys.issue(user.id, user.role)?;
        Ok(Session {
            user,
            access_token,
            expires_in: self.keys.ttl_secs,
        })
    }
}

#[async_trait::async_trait]
impl mercato_contracts::clients::IdentityClient for IdentityService {
    async fn address(
        &self,
        user_id: Uuid,
        id: Option<Uuid>,
    ) -> mercato_contracts::clients::ClientResult<Option<mercato_contracts::types::ShippingAddress>>
    {
        self.store.address(user_id, id).await.map_err(unavailable)
    }

    async fn access(
        &self,
        user_id: Uuid,
    ) -> mercato_contracts::clients::ClientResult<Option<mercato_contracts::clients::Access>> {
        let standing = self.store.standing(user_id).await.map_err(unavailable)?;
        Ok(standing.map(|(role, disabled)| mercato_contracts::clients::Access { role, disabled }))
    }
}

fn unavailable(e: anyhow::Error) -> mercato_contracts::clients::ClientError {
    mercato_contracts::clients::ClientError::Unavailable("identity", format!("{e:#}"))
}
