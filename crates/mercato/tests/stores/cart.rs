//! The cart service on its real store, with an in-memory catalog: what
//! checkout and the bus see through `CartClient` and the consumer.

use crate::support::{stores, TestStore};
use async_trait::async_trait;
use mercato_cart::CartService;
use mercato_contracts::clients::{CartClient, CatalogClient, ClientResult};
use mercato_contracts::events::{CartCheckedOut, ProductArchived};
use mercato_contracts::types::{ProductStatus, SkuInfo, SkuQuantity};
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{Currency, Envelope, Money};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[derive(Default)]
struct FakeCatalog {
    skus: Mutex<HashMap<String, SkuInfo>>,
}

impl FakeCatalog {
    fn put(&self, sku: &str, amount: i64, currency: &str, status: ProductStatus) {
        let info = SkuInfo {
            sku: sku.into(),
            product_id: Uuid::now_v7(),
            seller_id: Uuid::now_v7(),
            title: format!("Product {sku}"),
            price: Money::new(amount, Currency::parse(currency).expect("currency")),
            status,
        };
        self.skus
            .lock()
            .expect("not poisoned")
            .insert(sku.into(), info);
    }
}

#[async_trait]
impl CatalogClient for FakeCatalog {
    async fn sku(&self, sku: &str) -> ClientResult<Option<SkuInfo>> {
        Ok(self.skus.lock().expect("not poisoned").get(sku).cloned())
    }
}

struct Fixture {
    db: Db,
    catalog: Arc<FakeCatalog>,
    cart: Arc<CartService>,
    _store: TestStore,
}

/// The cart on every backend of the store suite.
async fn fixtures() -> Vec<Fixture> {
    stores(mercato_cart::NAME, &mercato_cart::MIGRATIONS)
        .await
        .into_iter()
        .map(|s| {
            let catalog = Arc::new(FakeCatalog::default());
            let cart = Arc::new(CartService::new(
                mercato_cart::store::CartStore::new(s.db.clone(), Outbox::new()),
                catalog.clone(),
                Currency::parse("EUR").expect("currency"),
            ));
            Fixture {
                db: s.db.clone(),
                catalog,
                cart,
                _store: s,
            }
        })
        .collect()
}

async fn outbox_events(db: &Db) -> Vec<Envelope> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT envelope FROM outbox ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .expect("outbox read");
    rows.iter()
        .map(|(json,)| serde_json::from_str(json).expect("envelope"))
        .collect()
}

fn bought(lines: &[(&str, i64)]) -> Vec<SkuQuantity> {
    lines
        .iter()
        .map(|(sku, quantity)| SkuQuantity {
            sku: (*sku).into(),
            quantity: *quantity,
        })
        .collect()
}

#[tokio::test]
async fn lines_are_the_priced_cart() {
    for f in fixtures().await {
        f.catalog.put("A", 250, "EUR", ProductStatus::Active);
        f.catalog.put("B", 100, "EUR", ProductStatus::Active);
        let customer = Uuid::now_v7();
        f.cart.add_item(customer, "A", 2).await.expect("add A");
        f.cart.add_item(customer, "B", 1).await.expect("add B");
        f.catalog.put("B", 100, "EUR", ProductStatus::Archived);
        let lines = f.cart.lines(customer).await.expect("lines");
        assert_eq!(lines.len(), 1, "archived B is not sold");
        assert_eq!(lines[0].sku, "A");
        assert_eq!(lines[0].line_total.amount, 500);
    }
}

#[tokio::test]
async fn checkout_takes_out_what_was_bought_once_per_order() {
    for f in fixtures().await {
        f.catalog.put("A", 100, "EUR", ProductStatus::Active);
        f.catalog.put("B", 200, "EUR", ProductStatus::Active);
        f.catalog.put("C", 300, "EUR", ProductStatus::Active);
        let customer = Uuid::now_v7();
        f.cart.add_item(customer, "A", 3).await.expect("add A");
        f.cart.add_item(customer, "B", 2).await.expect("add B");
        f.cart.add_item(customer, "C", 1).await.expect("add C");

        let order = Uuid::now_v7();
        let what = bought(&[("A", 1), ("B", 2), ("MISSING", 4)]);
        f.cart
            .checked_out(customer, order, &what)
            .await
            .expect("checked out");
        f.cart
            .checked_out(customer, order, &what)
            .await
            .expect("a repeat is no error");

        let left: Vec<(String, i64)> = f
            .cart
            .lines(customer)
            .await
            .expect("lines")
            .into_iter()
            .map(|l| (l.sku, l.quantity))
            .collect();
        assert_eq!(left, vec![("A".into(), 2), ("C".into(), 1)]);

        let events = outbox_events(&f.db).await;
        let checked: Vec<CartCheckedOut> = events
            .iter()
            .filter(|e| e.is::<CartCheckedOut>())
            .map(|e| e.decode().expect("payload"))
            .collect();
        assert_eq!(
            checked,
            vec![CartCheckedOut {
                customer_id: customer,
                order_id: order
            }],
            "one event for one order"
        );

        // Another order is another checkout.
        f.cart
            .checked_out(customer, Uuid::now_v7(), &bought(&[("A", 5)]))
            .await
            .expect("second order");
        let left = f.cart.lines(customer).await.expect("lines");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].sku, "C");
    }
}

#[tokio::test]
async fn an_archived_product_leaves_every_cart_once() {
    for f in fixtures().await {
        f.catalog.put("KEEP", 100, "EUR", ProductStatus::Active);
        f.catalog.put("GONE1", 100, "EUR", ProductStatus::Active);
        f.catalog.put("GONE2", 100, "EUR", ProductStatus::Active);
        let alice = Uuid::now_v7();
        let bob = Uuid::now_v7();
        for (who, sku) in [(alice, "KEEP"), (alice, "GONE1"), (bob, "GONE2")] {
            f.cart.add_item(who, sku, 1).await.expect("add");
        }
        let event = Envelope::new(
            "catalog",
            "p",
            &ProductArchived {
                product_id: Uuid::now_v7(),
                skus: vec!["GONE1".into(), "GONE2".into()],
            },
        )
        .expect("envelope");
        let sub = f.cart.subscription();
        assert!(sub.wants("product.archived"));
        assert_eq!(sub.consumer, "cart");
        sub.handler.handle(&event).await.expect("handled");

        // The catalog still sells them here, so only the consumer can have
        // removed them.
        let stored = |who| {
            let store = f.cart.store().clone();
            async move {
                store
                    .lines(who)
                    .await
                    .expect("lines")
                    .into_iter()
                    .map(|l| l.sku)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(stored(alice).await, vec!["KEEP".to_owned()]);
        assert!(stored(bob).await.is_empty());

        // Redelivered after the customer added it again: no second effect.
        f.cart.add_item(bob, "GONE2", 1).await.expect("add again");
        sub.handler.handle(&event).await.expect("handled again");
        assert_eq!(stored(bob).await, vec!["GONE2".to_owned()]);
    }
}
