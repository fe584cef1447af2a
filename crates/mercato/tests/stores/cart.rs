//! The cart service on its real store, with an in-memory catalog and the
//! real pricing service (its tables in the same test database): what
//! checkout and the bus see through `CartClient` and the consumer. Every
//! test runs with the lines in the database (SQLite, PostgreSQL) and in
//! Redis (beside each database, which keeps the outbox and inbox), each
//! Redis fixture under a key prefix of its own.

use crate::support::{stores, RedisKeys, TestStore};
use async_trait::async_trait;
use axum::http::StatusCode;
use mercato_cart::store::CartStore;
use mercato_cart::CartService;
use mercato_contracts::clients::{
    CartClient, CatalogClient, ClientError, ClientResult, PricingClient,
};
use mercato_contracts::events::{CartCheckedOut, ProductArchived};
use mercato_contracts::types::{ProductStatus, SkuInfo, SkuQuantity};
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::{time, Currency, Envelope, Money};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
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
            category: "cups".into(),
            prices: Vec::new(),
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

    /// Carts read SKUs only; this catalog knows no product pages.
    async fn product(
        &self,
        _: uuid::Uuid,
    ) -> ClientResult<Option<mercato_contracts::types::Product>> {
        Ok(None)
    }
}

struct Fixture {
    /// Where the lines are, for assertion messages.
    label: String,
    db: Db,
    catalog: Arc<FakeCatalog>,
    cart: Arc<CartService>,
    /// The Redis prefix when the lines are in Redis.
    redis: Option<RedisKeys>,
    _store: TestStore,
}

impl Fixture {
    fn store(&self) -> &CartStore {
        self.cart.store()
    }
}

/// Pricing on the cart's test database.
async fn pricing(db: &Db) -> Arc<mercato_pricing::PricingService> {
    db.migrate(mercato_pricing::NAME, &mercato_pricing::MIGRATIONS)
        .await
        .expect("pricing's tables");
    Arc::new(mercato_pricing::PricingService::new(
        mercato_pricing::store::PricingStore::new(db.clone(), Outbox::new()),
    ))
}

async fn fixture(s: TestStore, redis: Option<RedisKeys>) -> Fixture {
    let pricing: Arc<dyn PricingClient> = pricing(&s.db).await;
    let mut store = CartStore::new(s.db.clone(), Outbox::new());
    let mut label = format!("{:?}", s.backend);
    if let Some(keys) = &redis {
        store = store.with_redis(keys.connection(), &keys.prefix, Duration::from_secs(2));
        label.push_str(" + Redis");
    }
    let catalog = Arc::new(FakeCatalog::default());
    let cart = Arc::new(CartService::new(
        store,
        catalog.clone(),
        pricing,
        Currency::parse("EUR").expect("currency"),
    ));
    Fixture {
        label,
        db: s.db.clone(),
        catalog,
        cart,
        redis,
        _store: s,
    }
}

/// The cart on every backend of the store suite, with its lines in the
/// database and in Redis.
async fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    for s in stores(mercato_cart::NAME, &mercato_cart::MIGRATIONS).await {
        out.push(fixture(s, None).await);
    }
    for s in stores(mercato_cart::NAME, &mercato_cart::MIGRATIONS).await {
        out.push(fixture(s, Some(RedisKeys::new())).await);
    }
    out
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
        let lines = f.cart.contents(customer).await.expect("lines").lines;
        assert_eq!(lines.len(), 1, "{}: archived B is not sold", f.label);
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
            .contents(customer)
            .await
            .expect("lines")
            .lines
            .into_iter()
            .map(|l| (l.sku, l.quantity))
            .collect();
        assert_eq!(left, vec![("A".into(), 2), ("C".into(), 1)], "{}", f.label);

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
            "{}: one event for one order",
            f.label
        );

        // Another order is another checkout.
        f.cart
            .checked_out(customer, Uuid::now_v7(), &bought(&[("A", 5)]))
            .await
            .expect("second order");
        let left = f.cart.contents(customer).await.expect("lines").lines;
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].sku, "C");
    }
}

/// A code on the cart is kept by the store (database or Redis), priced by
/// pricing, handed to checkout with the lines, and goes with the order.
#[tokio::test]
async fn a_promotion_code_stays_on_the_cart_until_the_order_takes_it() {
    use mercato_pricing::domain::PromotionRules;
    for f in fixtures().await {
        f.catalog.put("A", 1000, "EUR", ProductStatus::Active);
        let customer = Uuid::now_v7();
        f.cart.add_item(customer, "A", 2).await.expect("add A");
        let e = f
            .cart
            .apply_promotion(customer, "TENOFF")
            .await
            .expect_err("no such code yet");
        assert_eq!(e.code, "promotion_not_applicable", "{}", f.label);

        let pricing = pricing(&f.db).await;
        pricing
            .store()
            .create_promotion(&PromotionRules::percentage("TenOff", 10))
            .await
            .map_err(|e| format!("{e:?}"))
            .expect("promotion");
        let cart = f
            .cart
            .apply_promotion(customer, "tenoff")
            .await
            .expect("applied");
        assert_eq!(
            cart.promotion_code.as_deref(),
            Some("TenOff"),
            "{}",
            f.label
        );
        assert_eq!(cart.discount_total.amount, 200, "{}", f.label);
        assert_eq!(cart.total.amount, 1800, "{}", f.label);
        let read = f.cart.cart(customer).await.expect("cart");
        assert_eq!(read, cart, "{}: the store keeps the code", f.label);
        let contents = f.cart.contents(customer).await.expect("contents");
        assert_eq!(contents.promotion_code.as_deref(), Some("TenOff"));

        f.cart
            .checked_out(customer, Uuid::now_v7(), &bought(&[("A", 1)]))
            .await
            .expect("checked out");
        let after = f.cart.cart(customer).await.expect("cart");
        assert_eq!(
            after.promotion_code, None,
            "{}: the order took the code",
            f.label
        );
        assert_eq!(after.total.amount, 1000);

        f.cart
            .apply_promotion(customer, "TENOFF")
            .await
            .expect("applied again");
        let removed = f
            .cart
            .remove_promotion(customer, "tenOFF")
            .await
            .expect("removed");
        assert_eq!(removed.promotion_code, None, "{}", f.label);
        assert!(removed.discounts.is_empty());
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
                version: 0,
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
        assert_eq!(stored(alice).await, vec!["KEEP".to_owned()], "{}", f.label);
        assert!(stored(bob).await.is_empty(), "{}", f.label);

        // Redelivered after the customer added it again: no second effect.
        f.cart.add_item(bob, "GONE2", 1).await.expect("add again");
        sub.handler.handle(&event).await.expect("handled again");
        assert_eq!(stored(bob).await, vec!["GONE2".to_owned()], "{}", f.label);
        if let Some(mut keys) = f.redis {
            assert!(
                !keys.keys().contains(&"cart-sku:GONE1".to_owned()),
                "no customer holds GONE1 any more"
            );
        }
    }
}

fn skus_and_quantities(lines: &[mercato_cart::domain::CartLine]) -> Vec<(String, i64)> {
    lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect()
}

#[tokio::test]
async fn lines_keep_the_order_and_time_they_were_first_added() {
    for f in fixtures().await {
        let store = f.store();
        let customer = Uuid::now_v7();
        let t0 = time::now();
        let t1 = t0 + chrono::Duration::seconds(1);
        for (sku, quantity, at) in [("B", 1, t1), ("A", 1, t1), ("C", 2, t0), ("C", 1, t1)] {
            assert!(
                store
                    .add(customer, sku, quantity, 10, at)
                    .await
                    .expect("add"),
                "{}",
                f.label
            );
        }
        assert!(store.set_quantity(customer, "A", 4).await.expect("set"));
        assert!(
            !store.set_quantity(customer, "Z", 4).await.expect("set"),
            "{}: no such line",
            f.label
        );
        let lines = store.lines(customer).await.expect("lines");
        let expected = vec![("C", 3, t0), ("A", 4, t1), ("B", 1, t1)];
        let got: Vec<(&str, i64, time::Timestamp)> = lines
            .iter()
            .map(|l| (l.sku.as_str(), l.quantity, l.added_at))
            .collect();
        assert_eq!(got, expected, "{}: by time first added, then SKU", f.label);

        // Over the limit: refused, and nothing changes.
        assert!(!store.add(customer, "C", 8, 10, t1).await.expect("add"));
        store.remove(customer, "B").await.expect("remove");
        store.remove(customer, "B").await.expect("removing again");
        assert_eq!(
            skus_and_quantities(&store.lines(customer).await.expect("lines")),
            vec![("C".to_owned(), 3), ("A".to_owned(), 4)],
            "{}",
            f.label
        );
        assert!(
            store.lines(Uuid::now_v7()).await.expect("lines").is_empty(),
            "{}: carts are per customer",
            f.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_cannot_pass_the_limit_together() {
    for f in fixtures().await {
        let customer = Uuid::now_v7();
        let adds = (0..24).map(|_| {
            let store = f.store().clone();
            tokio::spawn(async move { store.add(customer, "A", 1, 10, time::now()).await })
        });
        let mut added = 0;
        for done in futures::future::join_all(adds).await {
            if done.expect("task").expect("add") {
                added += 1;
            }
        }
        assert_eq!(added, 10, "{}: exactly up to the limit", f.label);
        assert_eq!(
            skus_and_quantities(&f.store().lines(customer).await.expect("lines")),
            vec![("A".to_owned(), 10)],
            "{}",
            f.label
        );
    }
}

async fn checked_out_events(db: &Db, order: Uuid) -> usize {
    outbox_events(db)
        .await
        .iter()
        .filter(|e| e.is::<CartCheckedOut>())
        .filter(|e| e.decode::<CartCheckedOut>().expect("payload").order_id == order)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_check_out_changes_the_cart_once_and_records_one_event() {
    for f in fixtures().await {
        let customer = Uuid::now_v7();
        let store = f.store();
        store
            .add(customer, "A", 3, 10, time::now())
            .await
            .expect("add");
        store
            .add(customer, "B", 1, 10, time::now())
            .await
            .expect("add");

        // The same order, several times at once.
        let order = Uuid::now_v7();
        let what = bought(&[("A", 1), ("B", 1)]);
        let calls = (0..6).map(|_| {
            let store = store.clone();
            let what = what.clone();
            tokio::spawn(async move { store.check_out(customer, order, &what).await })
        });
        let mut first = 0;
        for done in futures::future::join_all(calls).await {
            if done.expect("task").expect("check out") {
                first += 1;
            }
        }
        assert_eq!(first, 1, "{}: one call takes the order out", f.label);
        assert_eq!(
            skus_and_quantities(&store.lines(customer).await.expect("lines")),
            vec![("A".to_owned(), 2)],
            "{}",
            f.label
        );
        assert_eq!(checked_out_events(&f.db, order).await, 1, "{}", f.label);

        let Some(keys) = &f.redis else {
            continue;
        };
        // The lines change in Redis but the event cannot be recorded (the
        // database is gone): the call fails, as after a crash in between.
        let dir = tempfile::tempdir().expect("temp dir");
        let gone = Db::sqlite_file(&dir.path().join("gone.db"))
            .await
            .expect("sqlite opens");
        gone.close().await;
        let broken = CartStore::new(gone, Outbox::new()).with_redis(
            keys.connection(),
            &keys.prefix,
            Duration::from_secs(2),
        );
        let second = Uuid::now_v7();
        let what = bought(&[("A", 1)]);
        assert!(broken.check_out(customer, second, &what).await.is_err());
        assert_eq!(
            skus_and_quantities(&store.lines(customer).await.expect("lines")),
            vec![("A".to_owned(), 1)],
            "{}: the lines changed",
            f.label
        );
        assert_eq!(checked_out_events(&f.db, second).await, 0);

        // The retry finds the order taken out, leaves the lines alone and
        // records the event; later retries record nothing more.
        for _ in 0..2 {
            assert!(
                !store
                    .check_out(customer, second, &what)
                    .await
                    .expect("retry"),
                "{}: already taken out",
                f.label
            );
            assert_eq!(
                skus_and_quantities(&store.lines(customer).await.expect("lines")),
                vec![("A".to_owned(), 1)],
                "{}: not taken out twice",
                f.label
            );
            assert_eq!(checked_out_events(&f.db, second).await, 1, "{}", f.label);
        }
    }
}

/// The key layout documented in `mercato_cart::store`: a hash per cart, a
/// set of customers per SKU, a marker per order taken out of a cart.
#[tokio::test]
async fn redis_keeps_a_hash_per_cart_and_a_set_of_customers_per_sku() {
    let Some(s) = stores(mercato_cart::NAME, &mercato_cart::MIGRATIONS)
        .await
        .into_iter()
        .next()
    else {
        panic!("SQLite is always there");
    };
    let f = fixture(s, Some(RedisKeys::new())).await;
    let Some(mut keys) = f.redis else {
        unreachable!("a Redis fixture")
    };
    let store = f.cart.store();
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let at = time::now();
    store.add(alice, "A", 2, 10, at).await.expect("add");
    store.add(alice, "B", 1, 10, at).await.expect("add");
    store.add(bob, "A", 1, 10, at).await.expect("add");
    let mut expected = vec![
        format!("cart:{alice}"),
        format!("cart:{bob}"),
        "cart-sku:A".to_owned(),
        "cart-sku:B".to_owned(),
    ];
    expected.sort();
    assert_eq!(keys.keys(), expected);
    assert_eq!(
        keys.hash(&format!("cart:{alice}")),
        HashMap::from([
            ("A".to_owned(), format!("2:{}", at.timestamp_micros())),
            ("B".to_owned(), format!("1:{}", at.timestamp_micros())),
        ])
    );

    let order = Uuid::now_v7();
    assert!(store
        .check_out(alice, order, &bought(&[("A", 2), ("B", 1)]))
        .await
        .expect("check out"));
    store.remove(bob, "A").await.expect("remove");
    assert_eq!(
        keys.keys(),
        vec![format!("cart-checkout:{order}")],
        "empty carts and SKUs no cart holds leave no key"
    );
    let ttl = keys.ttl(&format!("cart-checkout:{order}"));
    let max = i64::try_from(mercato_cart::store::CHECKOUT_MARKER_TTL_SECS).expect("fits");
    assert!(ttl > max - 60 && ttl <= max, "the marker expires: {ttl}");
}

/// Redis away: every cart call is a clear 503, never a panic or a 500.
#[tokio::test]
async fn an_unreachable_redis_makes_carts_unavailable() {
    let Some(s) = stores(mercato_cart::NAME, &mercato_cart::MIGRATIONS)
        .await
        .into_iter()
        .next()
    else {
        panic!("SQLite is always there");
    };
    let timeout = Duration::from_millis(300);
    // Nothing listens on port 1.
    let conn = mercato_kernel::cache::redis_connection("redis://127.0.0.1:1", timeout)
        .expect("lazy client");
    let catalog = Arc::new(FakeCatalog::default());
    catalog.put("A", 100, "EUR", ProductStatus::Active);
    let cart = CartService::new(
        CartStore::new(s.db.clone(), Outbox::new()).with_redis(conn, "unreachable", timeout),
        catalog,
        pricing(&s.db).await,
        Currency::parse("EUR").expect("currency"),
    );
    let customer = Uuid::now_v7();
    let started = std::time::Instant::now();
    for e in [
        cart.cart(customer).await.expect_err("read"),
        cart.add_item(customer, "A", 1).await.expect_err("add"),
        cart.set_quantity(customer, "A", 2).await.expect_err("set"),
        cart.remove_item(customer, "A").await.expect_err("remove"),
    ] {
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE, "{e}");
        assert_eq!(e.code, "unavailable");
    }
    match cart
        .checked_out(customer, Uuid::now_v7(), &bought(&[("A", 1)]))
        .await
    {
        Err(ClientError::Unavailable(context, _)) => assert_eq!(context, "cart"),
        other => panic!("checkout sees the cart unavailable: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the time-out"
    );
}
