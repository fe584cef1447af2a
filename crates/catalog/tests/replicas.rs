//! Two catalog replicas on one store and one shared cache (what Redis is in
//! distributed mode; here the in-memory implementation of the same trait):
//! a write on one is answered by the other at once, without waiting for the
//! cached lookups to expire.

use mercato_catalog::domain::{CatalogCommand, NewVariant};
use mercato_catalog::store::CatalogStore;
use mercato_catalog::CatalogService;
use mercato_contracts::clients::CatalogClient;
use mercato_contracts::types::{Product, ProductStatus};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::cache::{Cache, MemoryCache};
use mercato_kernel::db::Db;
use mercato_kernel::outbox::{Outbox, PLATFORM_MIGRATIONS};
use mercato_kernel::Money;
use std::sync::Arc;

fn variant(sku: &str, amount: i64) -> NewVariant {
    NewVariant {
        sku: sku.to_owned(),
        title: None,
        price: Money::parse_price(amount, "EUR").expect("money"),
        prices: Vec::new(),
        attributes: Default::default(),
    }
}

fn variants(list: &[(&str, i64)]) -> CatalogCommand {
    CatalogCommand::Update {
        title: None,
        description: None,
        category: None,
        category_path: None,
        images: None,
        variants: Some(list.iter().map(|(s, a)| variant(s, *a)).collect()),
    }
}

async fn store(dir: &tempfile::TempDir) -> CatalogStore {
    let db = Db::sqlite_file(&dir.path().join("catalog.db"))
        .await
        .expect("sqlite");
    db.migrate("platform", &PLATFORM_MIGRATIONS)
        .await
        .expect("platform migrations");
    db.migrate(mercato_catalog::NAME, &mercato_catalog::MIGRATIONS)
        .await
        .expect("catalog migrations");
    CatalogStore::new(db, Outbox::new())
}

async fn price_of(replica: &CatalogService, sku: &str) -> Option<i64> {
    replica
        .sku(sku)
        .await
        .expect("lookup")
        .map(|info| info.price.amount)
}

/// A seller and the kettle it puts on sale through `replica` (SKU `KET-1`).
async fn kettle_on_sale(replica: &CatalogService) -> (Caller, Product) {
    let seller = Caller {
        user_id: mercato_kernel::id::new_id(),
        role: Role::Seller,
    };
    let product = replica
        .create(
            seller,
            CatalogCommand::Create {
                seller_id: seller.user_id,
                title: "Kettle".into(),
                description: String::new(),
                category: "kitchen".into(),
                category_path: Vec::new(),
                images: Vec::new(),
                variants: vec![variant("KET-1", 1299)],
            },
        )
        .await
        .expect("created");
    (seller, product)
}

#[tokio::test]
async fn a_write_on_one_replica_is_answered_by_the_other_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store(&dir).await;
    let shared: Arc<dyn Cache> = Arc::new(MemoryCache::new(1024 * 1024));
    let one = CatalogService::new(store.clone()).with_shared_cache(shared.clone());
    let two = CatalogService::new(store).with_shared_cache(shared);
    assert!(two.cache_subscription().is_some());
    let (seller, product) = kettle_on_sale(&one).await;
    // Replica two looks both up: one known, one not yet.
    assert_eq!(price_of(&two, "KET-1").await, Some(1299));
    assert_eq!(price_of(&two, "KET-2").await, None);

    one.update(
        seller,
        product.id,
        variants(&[("KET-1", 1499), ("KET-2", 2599)]),
    )
    .await
    .expect("repriced");
    assert_eq!(
        price_of(&two, "KET-1").await,
        Some(1499),
        "the new price, not the cached one"
    );
    assert_eq!(price_of(&two, "KET-2").await, Some(2599), "the new SKU");

    // And the other way round, archiving included.
    assert_eq!(price_of(&one, "KET-2").await, Some(2599));
    two.archive(seller, product.id).await.expect("archived");
    let info = one.sku("KET-2").await.expect("lookup").expect("known");
    assert_eq!(info.status, ProductStatus::Archived);
}

/// Without a shared cache (embedded mode: one process) the lookups stay in
/// the process and need no consumer.
#[tokio::test]
async fn a_single_process_keeps_its_lookups_to_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let only = CatalogService::new(store(&dir).await);
    assert!(only.cache_subscription().is_none());
    let (seller, product) = kettle_on_sale(&only).await;
    assert_eq!(price_of(&only, "KET-1").await, Some(1299));
    only.update(seller, product.id, variants(&[("KET-1", 999)]))
        .await
        .expect("repriced");
    assert_eq!(price_of(&only, "KET-1").await, Some(999));
}
