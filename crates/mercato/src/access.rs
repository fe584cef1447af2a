//! Tokens outlive what they say: an admin may disable an account or change
//! its role after a token was issued. Every context asks identity for a
//! user's standing (in process in embedded mode, over HTTP otherwise) and
//! keeps the verdict for `auth.access_cache_ms`, so a change reaches every
//! process within that long.

use mercato_contracts::clients::IdentityClient;
use mercato_kernel::auth::{AccessCheck, Role};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The verdict on a user's tokens: why they are refused, or `None`.
type Verdict = Option<&'static str>;

pub struct CachedAccess {
    identity: Arc<dyn IdentityClient>,
    /// By user and the role their token names.
    verdicts: Option<moka::future::Cache<(Uuid, Role), Verdict>>,
}

impl CachedAccess {
    /// Verdicts are kept for `ttl`; not at all for zero.
    pub fn new(identity: Arc<dyn IdentityClient>, ttl: Duration) -> Self {
        let verdicts = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build()
        });
        Self { identity, verdicts }
    }

    async fn ask(&self, user_id: Uuid, role: Role) -> Verdict {
        match self.identity.access(user_id).await {
            Ok(None) => Some("the account of this token no longer exists"),
            Ok(Some(a)) if a.disabled => Some("this account has been disabled"),
            Ok(Some(a)) if a.role != role => Some("the account's role has changed; sign in again"),
            Ok(Some(_)) => None,
            // Identity being down does not sign everybody out: the token's
            // signature still holds, and the verdict is asked again later.
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask identity about a token; honouring it");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl AccessCheck for CachedAccess {
    async fn refused(&self, user_id: Uuid, role: Role) -> Option<&'static str> {
        match &self.verdicts {
            None => self.ask(user_id, role).await,
            Some(cache) => {
                cache
                    .get_with((user_id, role), self.ask(user_id, role))
                    .await
            }
        }
    }
}
