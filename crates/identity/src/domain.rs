//! Validated identity values: once parsed, an [`Email`] or a password is known good.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{DateTime, Utc};
use mercato_kernel::auth::Role;
use mercato_kernel::ApiError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A syntactically valid e-mail address, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        let s = raw.trim().to_lowercase();
        let invalid = || ApiError::validation(format!("{raw:?} is not a valid e-mail address"));
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;

pub fn validate_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(ApiError::validation(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if n > MAX_PASSWORD_LEN {
        return Err(ApiError::validation(format!(
            "password must be at most {MAX_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

pub fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::validation("name must be 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

/// argon2id with configurable cost.
#[derive(Clone)]
pub struct PasswordHasherConfig {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for PasswordHasherConfig {
    /// OWASP's recommended minimum for argon2id.
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
        }
    }
}

impl PasswordHasherConfig {
    fn argon2(&self) -> anyhow::Result<Argon2<'static>> {
        let params = Params::new(self.memory_kib, self.iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
    }

    /// Verifies with the parameters stored in the hash itself.
    pub fn verify(&self, password: &str, hash: &str) -> bool {
        match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_validated() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").map(|e| e.0).ok(),
            Some("ada@example.com".into())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@x.io",
            "ada@x..io",
            "a@b@c.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(
            validate_password("pässwörd").is_ok(),
            "counted in characters"
        );
    }

    #[test]
    fn hashes_verify_only_their_password() {
        let hasher = PasswordHasherConfig {
            memory_kib: 1024,
            iterations: 1,
        };
        let hash = hasher.hash("correct horse").expect("hashes");
        assert!(hash.starts_with("$argon2id$"));
        assert!(hasher.verify("correct horse", &hash));
        assert!(!hasher.verify("wrong horse", &hash));
        assert!(!hasher.verify("correct horse", "not a hash"));
    }
}
