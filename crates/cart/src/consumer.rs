//! What the cart does with other contexts' events: an archived product
//! leaves every cart.

use crate::store::CartStore;
use async_trait::async_trait;
use mercato_contracts::events::ProductArchived;
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::Envelope;
use std::sync::Arc;

/// Removes the SKUs of an archived product from every cart.
pub struct ProductArchivedHandler {
    store: CartStore,
}

impl ProductArchivedHandler {
    pub fn new(store: CartStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl EventHandler for ProductArchivedHandler {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        if !event.is::<ProductArchived>() {
            return Ok(());
        }
        let archived = event.decode::<ProductArchived>()?;
        if self
            .store
            .remove_skus_everywhere(crate::NAME, event.id, &archived.skus)
            .await?
        {
            tracing::debug!(product_id = %archived.product_id, skus = archived.skus.len(), "archived product removed from carts");
        }
        Ok(())
    }
}

/// The cart's durable subscription to the bus.
pub fn subscription(store: CartStore) -> Subscription {
    Subscription {
        consumer: crate::NAME.to_owned(),
        per_instance: false,
        event_types: vec![ProductArchived::TYPE.to_owned()],
        handler: Arc::new(ProductArchivedHandler::new(store)),
    }
}
