//! The `search` consumer: catalog and inventory events into the index.
//!
//! It keeps no inbox. Every effect overwrites state with what the event
//! says (a product's whole new state, a SKU's available stock), so
//! handling an event again, or the whole log again, ends in the same index.
//!
//! Events do not always arrive in log order: a failed event is redelivered
//! after later ones, an operator replays a dead letter long after it was
//! parked. A product event therefore overwrites only when it is not older
//! than the state held, by the product's version it carries (see
//! [`crate::store`]). `stock.changed` carries nothing that orders it and
//! overwrites as it comes: a late one holds until the SKU's next change.

use crate::service::SearchService;
use async_trait::async_trait;
use mercato_contracts::events::{
    ProductArchived, ProductCreated, ProductUpdated, RatingChanged, StockChanged,
};
use mercato_contracts::types::Rating;
use mercato_kernel::bus::EventHandler;
use mercato_kernel::event::DomainEvent;
use mercato_kernel::Envelope;
use std::sync::Arc;

/// The durable consumer name on the bus in embedded mode, where one
/// process holds the only index.
pub const CONSUMER: &str = "search";

/// Longest instance name kept as it is in a consumer name; longer ones are
/// cut and end in a hash of the whole.
const MAX_INSTANCE_LEN: usize = 64;

/// The consumer name of one search instance in distributed mode:
/// `search-<instance>`. Every replica keeps its own index and so reads
/// every event through a consumer of its own; the name must stay the same
/// across restarts of the instance (a host or pod name) for a restarted
/// process with an intact index to go on where it stopped.
///
/// The instance name is made fit for a JetStream durable name: lower case,
/// every character but ASCII letters, digits, `-` and `_` turned into `-`,
/// without leading or trailing `-`, at most 64 characters (a longer name
/// keeps its first 55 and a hash of the whole). An instance name left empty
/// by that is refused.
pub fn instance_consumer(instance: &str) -> anyhow::Result<String> {
    let clean: String = instance
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean.trim_matches('-');
    anyhow::ensure!(
        !clean.is_empty(),
        "the search instance name {instance:?} has nothing a consumer name can hold"
    );
    let name = if clean.len() > MAX_INSTANCE_LEN {
        // Only ASCII is left, so any index is a character boundary.
        format!(
            "{}-{:08x}",
            &clean[..MAX_INSTANCE_LEN - 9],
            fnv1a(clean.as_bytes())
        )
    } else {
        clean.to_owned()
    };
    Ok(format!("{CONSUMER}-{name}"))
}

/// 32-bit FNV-1a: stable across releases and platforms, unlike the
/// standard library's hasher, so a name computed again matches.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5, |hash: u32, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

pub const EVENT_TYPES: [&str; 5] = [
    ProductCreated::TYPE,
    ProductUpdated::TYPE,
    ProductArchived::TYPE,
    StockChanged::TYPE,
    RatingChanged::TYPE,
];

pub struct SearchConsumer {
    service: Arc<SearchService>,
}

impl SearchConsumer {
    pub fn new(service: Arc<SearchService>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl EventHandler for SearchConsumer {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        match event.event_type.as_str() {
            ProductCreated::TYPE => {
                let e: ProductCreated = event.decode()?;
                self.service.apply_product(&e.product, e.version).await
            }
            ProductUpdated::TYPE => {
                let e: ProductUpdated = event.decode()?;
                self.service.apply_product(&e.product, e.version).await
            }
            ProductArchived::TYPE => {
                let e: ProductArchived = event.decode()?;
                self.service.remove(e.product_id, e.version).await
            }
            StockChanged::TYPE => {
                let e: StockChanged = event.decode()?;
                self.service
                    .apply_stock(&e.sku, e.available, e.version)
                    .await
            }
            RatingChanged::TYPE => {
                let e: RatingChanged = event.decode()?;
                let rating = Rating {
                    average: e.average,
                    count: e.count,
                };
                self.service
                    .apply_rating(e.product_id, &rating, e.version)
                    .await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mercato_kernel::bus::jetstream::durable_name;

    #[test]
    fn instance_consumers_are_valid_durable_names() {
        assert_eq!(
            instance_consumer("search-7d9f8c5b4-x2kq9").expect("pod name"),
            "search-search-7d9f8c5b4-x2kq9"
        );
        assert_eq!(
            instance_consumer("Web01.example.com").expect("host name"),
            "search-web01-example-com"
        );
        assert_eq!(
            instance_consumer(" node 1* ").expect("odd name"),
            "search-node-1"
        );
        for instance in [
            "search-0",
            "Web01.example.com",
            "a>b*c d",
            "ünïcode-höst",
            &"x".repeat(300),
        ] {
            let name = instance_consumer(instance).expect("a name");
            assert_eq!(durable_name(&name), name, "{name} is used as it is");
            assert!(
                name.len() <= CONSUMER.len() + 1 + MAX_INSTANCE_LEN,
                "{name}"
            );
        }
        assert!(instance_consumer("").is_err());
        assert!(instance_consumer(" ... ").is_err());
    }

    #[test]
    fn long_instance_names_stay_apart_and_stable() {
        let a = format!("{}a", "x".repeat(100));
        let b = format!("{}b", "x".repeat(100));
        let name_a = instance_consumer(&a).expect("a");
        assert_ne!(name_a, instance_consumer(&b).expect("b"));
        assert_eq!(name_a, instance_consumer(&a).expect("a again"));
        assert_eq!(fnv1a(b"a"), 0xe40c_292c, "the published FNV-1a value");
    }
}
