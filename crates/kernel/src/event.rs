//! The event envelope every context publishes, and the ambient correlation
//! context that stamps it.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A domain event with a stable type name and schema version.
pub trait DomainEvent: Serialize + DeserializeOwned {
    /// Dotted, past-tense name: `order.confirmed`.
    const TYPE: &'static str;
    const VERSION: u32 = 1;
}

/// What travels on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// UUIDv7, also the de-duplication key of every consumer.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u32,
    pub occurred_at: DateTime<Utc>,
    /// The context that published it.
    pub source: String,
    /// The id of the aggregate it is about (an order id, a product id).
    pub subject: String,
    /// The request or flow this event belongs to.
    pub correlation_id: Option<String>,
    /// The event that caused this one, if any.
    pub causation_id: Option<Uuid>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct Correlation {
    pub correlation_id: Option<String>,
    pub causation_id: Option<Uuid>,
}

tokio::task_local! {
    static CORRELATION: Correlation;
}

/// Runs `fut` with the given correlation: every envelope created inside it
/// carries these ids.
pub async fn with_correlation<F: std::future::Future>(c: Correlation, fut: F) -> F::Output {
    CORRELATION.scope(c, fut).await
}

/// The correlation of the running task, if one was set.
pub fn current_correlation() -> Correlation {
    CORRELATION.try_with(Clone::clone).unwrap_or_default()
}

impl Envelope {
    pub fn new<E: DomainEvent>(
        source: &str,
        subject: impl Into<String>,
        event: &E,
    ) -> Result<Self, serde_json::Error> {
        let c = current_correlation();
        Ok(Self {
            id: crate::id::new_id(),
            event_type: E::TYPE.to_owned(),
            schema_version: E::VERSION,
            occurred_at: crate::time::now(),
            source: source.to_owned(),
            subject: subject.into(),
            correlation_id: c.correlation_id,
            causation_id: c.causation_id,
            payload: serde_json::to_value(event)?,
        })
    }

    pub fn is<E: DomainEvent>(&self) -> bool {
        self.event_type == E::TYPE
    }

    /// The typed payload; errors when the type or the shape does not match.
    pub fn decode<E: DomainEvent>(&self) -> anyhow::Result<E> {
        anyhow::ensure!(
            self.is::<E>(),
            "event {} is a {}, not a {}",
            self.id,
            self.event_type,
            E::TYPE
        );
        Ok(serde_json::from_value(self.payload.clone())?)
    }

    /// The correlation for work caused by this event.
    pub fn caused_correlation(&self) -> Correlation {
        Correlation {
            correlation_id: self.correlation_id.clone(),
            causation_id: Some(self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Pinged {
        n: u32,
    }
    impl DomainEvent for Pinged {
        const TYPE: &'static str = "test.pinged";
    }

    #[tokio::test]
    async fn envelopes_carry_the_ambient_correlation() {
        let cause = crate::id::new_id();
        let env = with_correlation(
            Correlation {
                correlation_id: Some("req-1".into()),
                causation_id: Some(cause),
            },
            async { Envelope::new("test", "s-1", &Pinged { n: 7 }) },
        )
        .await
        .expect("serialises");
        assert_eq!(env.correlation_id.as_deref(), Some("req-1"));
        assert_eq!(env.causation_id, Some(cause));
        assert_eq!(env.decode::<Pinged>().expect("decodes"), Pinged { n: 7 });
        assert_eq!(env.id.get_version_num(), 7);
    }
}
