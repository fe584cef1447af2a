//! The `search` consumer: catalog and inventory events into the index.
//!
//! It keeps no inbox. Every effect overwrites state with what the event
//! says (a product's whole new state, a SKU's available stock), and the
//! bus delivers in log order, so handling an event again, or the whole log
//! again, ends in the same index.

use crate::service::SearchService;
use async_trait::async_trait;
use mercato_contracts::events::{ProductArchived, ProductCreated, ProductUpdated, StockChanged};
use mercato_kernel::bus::EventHandler;
use mercato_kernel::event::DomainEvent;
use mercato_kernel::Envelope;
use std::sync::Arc;

/// The durable consumer name on the bus.
pub const CONSUMER: &str = "search";

pub const EVENT_TYPES: [&str; 4] = [
    ProductCreated::TYPE,
    ProductUpdated::TYPE,
    ProductArchived::TYPE,
    StockChanged::TYPE,
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
                self.service.apply_product(&e.product).await
            }
            ProductUpdated::TYPE => {
                let e: ProductUpdated = event.decode()?;
                self.service.apply_product(&e.product).await
            }
            ProductArchived::TYPE => {
                let e: ProductArchived = event.decode()?;
                self.service.remove(e.product_id).await
            }
            StockChanged::TYPE => {
                let e: StockChanged = event.decode()?;
                self.service.apply_stock(&e.sku, e.available).await
            }
            _ => Ok(()),
        }
    }
}
