//! Validated identity values: once parsed, an [`Email`] or a password is known good.

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use chrono::{DateTime, Utc};
use mercato_kernel::auth::Role;
use mercato_kernel::ApiError;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
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
    fn params(&self) -> anyhow::Result<Params> {
        Params::new(self.memory_kib, self.iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))
    }

    /// An argon2id hash in the PHC string format (`$argon2id$v=19$m=...`),
    /// the same as the argon2 crate's `hash_password` makes.
    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        let params = self.params()?;
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt
            .decode_b64(&mut salt_buf)
            .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        with_blocks(params.block_count(), |blocks| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, blocks)
        })
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)
                .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("hash output: {e}"))?),
        };
        Ok(phc.to_string())
    }

    /// Verifies with the algorithm, version and parameters stored in the hash
    /// itself; the comparison takes the same time wherever they differ.
    pub fn verify(&self, password: &str, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let mut salt_buf = [0u8; 64];
        let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        let computed = with_blocks(params.block_count(), |blocks| {
            argon.hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, blocks)
        });
        computed.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
    }
}

thread_local! {
    /// argon2's working memory (its whole memory cost, 19 MiB by default),
    /// kept by each password-hashing thread for its whole life: allocated
    /// and freed per hash, it was kept by the allocator in every arena the
    /// thread happened to use, hundreds of MiB after a burst of sign-ups.
    static BLOCKS: RefCell<Option<Vec<Block>>> = const { RefCell::new(None) };
}

/// Marks this thread as one that hashes passwords all its life, so that it
/// keeps argon2's working memory between hashes (see `crate::hashing`).
pub(crate) fn keep_hashing_memory() {
    BLOCKS.with(|b| *b.borrow_mut() = Some(Vec::new()));
}

/// Runs `f` on `count` argon2 blocks: this thread's own when it keeps them,
/// a fresh buffer freed afterwards otherwise.
fn with_blocks<T>(count: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    BLOCKS.with(|cell| match cell.borrow_mut().as_mut() {
        Some(kept) => {
            if kept.len() < count {
                kept.resize(count, Block::default());
            }
            f(&mut kept[..count])
        }
        None => f(&mut vec![Block::default(); count]),
    })
}

/// Which channels a user may be told things on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelPreferences {
    pub email: bool,
    pub sms: bool,
    pub push: bool,
}

/// What a user wants to be told, and how. A channel switched off is not
/// used: its notifications show as `skipped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preferences {
    pub notifications: ChannelPreferences,
    /// News and offers, beside what is about the user's own orders.
    pub marketing: bool,
}

impl Default for Preferences {
    /// E-mail about one's orders; nothing else.
    fn default() -> Self {
        Self {
            notifications: ChannelPreferences {
                email: true,
                sms: false,
                push: false,
            },
            marketing: false,
        }
    }
}

/// The most addresses a user keeps.
pub const MAX_ADDRESSES: i64 = 20;

/// A saved address: as checkout takes it, with an id and whether it is the
/// one used when none is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SavedAddress {
    pub id: Uuid,
    #[serde(flatten)]
    #[schema(inline)]
    pub address: mercato_contracts::types::ShippingAddress,
    pub default: bool,
    pub created_at: DateTime<Utc>,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    /// A disabled account cannot sign in, and its tokens are refused.
    pub disabled: bool,
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

    /// Hashes stored before, made by the argon2 crate's own PHC functions,
    /// still verify, and ours verify there: the format is the same.
    #[test]
    fn hashes_are_the_argon2_crates_phc_strings() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasherConfig {
            memory_kib: 1024,
            iterations: 2,
        };
        let params = hasher.params().expect("params");
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"correct horse", &SaltString::generate(&mut OsRng))
            .expect("hashes")
            .to_string();
        assert!(hasher.verify("correct horse", &theirs));
        assert!(!hasher.verify("wrong horse", &theirs));
        let ours = hasher.hash("correct horse").expect("hashes");
        let parsed = PasswordHash::new(&ours).expect("PHC string");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
    }

    /// A thread that keeps argon2's memory hashes alike with it, at any cost.
    #[test]
    fn kept_memory_gives_the_same_hashes() {
        std::thread::spawn(|| {
            keep_hashing_memory();
            let small = PasswordHasherConfig {
                memory_kib: 512,
                iterations: 1,
            };
            let large = PasswordHasherConfig {
                memory_kib: 2048,
                iterations: 1,
            };
            let a = large.hash("correct horse").expect("hashes");
            let b = small.hash("correct horse").expect("hashes");
            assert!(large.verify("correct horse", &a) && small.verify("correct horse", &b));
            assert!(!small.verify("wrong horse", &a));
        })
        .join()
        .expect("hashing thread");
    }
}
