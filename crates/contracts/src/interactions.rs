//! Interactions: what visitors do, recorded for analytics and
//! recommendations. The context that serves a request says what it observed
//! in a response header ([`HEADER`], an [`Observed`]); the public gateway
//! takes that header off every answer and records the observation, with who
//! made it ([`Visitor`]), as an `interaction.*` event (see [`Observed::event`])
//! on the stream `interactions`. Contexts never publish these themselves:
//! recording must never slow or fail the request it observes, and only the
//! gateway knows the client's session. The gateway coalesces what one
//! visitor did alike within a short window into one event with a `count`.

use crate::events::{CartItemAdded, CheckoutStarted, ProductViewed, SearchPerformed};
use mercato_kernel::Envelope;
use reqwest::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The response header a context describes an interaction in. It never
/// leaves the gateway.
pub const HEADER: HeaderName = HeaderName::from_static("x-mercato-interaction");

/// The request header a client names its session in, for visitors who are
/// not signed in (and to tie a visit's interactions together).
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("x-session-id");

/// What a context observed while serving a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Observed {
    ProductViewed {
        product_id: Uuid,
    },
    Searched {
        query: String,
        results: u64,
    },
    CartAdded {
        product_id: Uuid,
        sku: String,
        quantity: i64,
    },
    CheckoutStarted {
        order_id: Uuid,
    },
}

/// Who made a request: the signed-in user, the client's session, both or
/// neither.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Visitor {
    pub customer_id: Option<Uuid>,
    pub session_id: Option<String>,
}

impl Visitor {
    /// A session id as a client may give it: 1 to 128 visible ASCII
    /// characters; anything else is no session.
    pub fn session(raw: Option<&HeaderValue>) -> Option<String> {
        let raw = raw?.to_str().ok()?.trim();
        let ok = !raw.is_empty() && raw.len() <= 128 && raw.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| raw.to_owned())
    }
}

impl Observed {
    /// The header that carries this observation; `None` when it cannot be
    /// one (a query with a character no header may hold).
    pub fn header(&self) -> Option<(HeaderName, HeaderValue)> {
        let json = serde_json::to_vec(self).ok()?;
        HeaderValue::from_bytes(&json).ok().map(|v| (HEADER, v))
    }

    /// The observation a header carries, if it is one.
    pub fn from_header(value: &HeaderValue) -> Option<Self> {
        serde_json::from_slice(value.as_bytes()).ok()
    }

    /// The event that records this observation, made `count` times by
    /// `visitor`.
    pub fn event(self, visitor: Visitor, count: u64) -> Result<Envelope, serde_json::Error> {
        const SOURCE: &str = "gateway";
        let Visitor {
            customer_id,
            session_id,
        } = visitor;
        match self {
            Observed::ProductViewed { product_id } => Envelope::new(
                SOURCE,
                product_id.to_string(),
                &ProductViewed {
                    customer_id,
                    session_id,
                    product_id,
                    count,
                },
            ),
            Observed::Searched { query, results } => Envelope::new(
                SOURCE,
                query.clone(),
                &SearchPerformed {
                    customer_id,
                    session_id,
                    query,
                    results,
                    count,
                },
            ),
            Observed::CartAdded {
                product_id,
                sku,
                quantity,
            } => Envelope::new(
                SOURCE,
                product_id.to_string(),
                &CartItemAdded {
                    customer_id,
                    session_id,
                    product_id,
                    sku,
                    quantity,
                    count,
                },
            ),
            Observed::CheckoutStarted { order_id } => Envelope::new(
                SOURCE,
                order_id.to_string(),
                &CheckoutStarted {
                    customer_id,
                    session_id,
                    order_id,
                    count,
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_survives_its_header() {
        let seen = Observed::Searched {
            query: "blå \"mug\"".into(),
            results: 3,
        };
        let (name, value) = seen.header().expect("a header");
        assert_eq!(name, HEADER);
        assert_eq!(Observed::from_header(&value), Some(seen));
    }

    #[test]
    fn a_session_is_short_visible_ascii() {
        let v = |s: &str| HeaderValue::from_str(s).ok();
        assert_eq!(
            Visitor::session(v(" abc-1 ").as_ref()),
            Some("abc-1".into())
        );
        assert_eq!(Visitor::session(v("").as_ref()), None);
        assert_eq!(Visitor::session(v("a b").as_ref()), None);
        assert_eq!(Visitor::session(v(&"x".repeat(129)).as_ref()), None);
        assert_eq!(Visitor::session(None), None);
    }
}
