//! Register, log in, look up.

use crate::domain::{validate_name, validate_password, Email, PasswordHasherConfig, User};
use crate::store::{IdentityStore, InsertUserError};
use mercato_kernel::auth::{Role, TokenKeys};
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
}

/// A new account's details, as sent.
pub struct Registration {
    pub email: String,
    pub password: String,
    pub name: String,
    pub role: Role,
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
        let found = match Email::parse(email) {
            Ok(email) => self.store.by_email(&email).await?,
            Err(_) => None,
        };
        match found {
            Some((user, hash)) => {
                if self.verify(password.to_owned(), hash).await? {
                    self.session(user)
                } else {
                    Err(wrong())
                }
            }
            None => {
                let _ = self
                    .verify(password.to_owned(), self.decoy_hash.clone())
                    .await?;
                Err(wrong())
            }
        }
    }

    pub async fn user(&self, id: Uuid) -> Result<User, ApiError> {
        self.store
            .by_id(id)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))
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
