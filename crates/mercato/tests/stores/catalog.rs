use crate::support::{pending_events, stores};
use mercato_catalog::domain::{CatalogCommand, NewVariant, ProductAggregate};
use mercato_catalog::store::{AppendError, CatalogStore, ProductFilter};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::PageQuery;
use mercato_kernel::{Currency, Money};
use std::collections::BTreeMap;
use uuid::Uuid;

fn create(seller: Uuid, category: &str, skus: &[&str]) -> CatalogCommand {
    CatalogCommand::Create {
        seller_id: seller,
        title: "Thing".into(),
        description: String::new(),
        category: category.into(),
        category_path: Vec::new(),
        images: Vec::new(),
        variants: skus
            .iter()
            .map(|s| NewVariant {
                sku: (*s).into(),
                title: None,
                price: Money::new(500, Currency::parse("EUR").expect("currency")),
                prices: Vec::new(),
                attributes: BTreeMap::new(),
            })
            .collect(),
    }
}

async fn add(
    store: &CatalogStore,
    seller: Uuid,
    category: &str,
    skus: &[&str],
) -> Result<Uuid, AppendError> {
    let before = ProductAggregate::new(mercato_kernel::id::new_id());
    let events = before
        .handle(create(seller, category, skus), mercato_kernel::time::now())
        .expect("valid");
    let mut after = before.clone();
    for e in &events {
        after.apply(e);
    }
    let product = after.state.clone().expect("created");
    store.append(&before, &events, &product, &[]).await?;
    Ok(product.id)
}

#[tokio::test]
async fn events_fold_back_into_the_projection() {
    for s in stores(mercato_catalog::NAME, &mercato_catalog::MIGRATIONS).await {
        let store = CatalogStore::new(s.db.clone(), Outbox::new());
        let seller = mercato_kernel::id::new_id();
        let id = add(&store, seller, "kitchen", &["A-1", "A-2"])
            .await
            .expect("appended");
        let loaded = store.load(id).await.expect("load");
        assert_eq!(loaded.version, 1);
        let projected = store.get(id).await.expect("get").expect("projected");
        assert_eq!(loaded.state.as_ref(), Some(&projected), "{:?}", s.backend);
        let info = store.sku("A-2").await.expect("sku").expect("known");
        assert_eq!((info.product_id, info.seller_id), (id, seller));
        assert!(store.sku("NOPE").await.expect("sku").is_none());
        assert!(
            pending_events(&s.db).await.is_empty(),
            "no integration events were passed"
        );
    }
}

#[tokio::test]
async fn concurrent_appends_at_one_version_conflict() {
    for s in stores(mercato_catalog::NAME, &mercato_catalog::MIGRATIONS).await {
        let store = CatalogStore::new(s.db.clone(), Outbox::new());
        let id = add(&store, Uuid::nil(), "c", &["B-1"])
            .await
            .expect("appended");
        let agg = store.load(id).await.expect("load");
        let update = |title: &str| CatalogCommand::Update {
            title: Some(title.into()),
            description: None,
            category: None,
            category_path: None,
            images: None,
            variants: None,
        };
        let now = mercato_kernel::time::now();
        let first = agg.handle(update("One"), now).expect("valid");
        let second = agg.handle(update("Two"), now).expect("valid");
        let mut a1 = agg.clone();
        first.iter().for_each(|e| a1.apply(e));
        let mut a2 = agg.clone();
        second.iter().for_each(|e| a2.apply(e));
        store
            .append(&agg, &first, a1.state.as_ref().expect("state"), &[])
            .await
            .expect("first append wins");
        let lost = store
            .append(&agg, &second, a2.state.as_ref().expect("state"), &[])
            .await;
        assert!(
            matches!(lost, Err(AppendError::Concurrency)),
            "{:?}: {lost:?}",
            s.backend
        );
        assert_eq!(
            store.get(id).await.expect("get").expect("found").title,
            "One"
        );
    }
}

#[tokio::test]
async fn skus_belong_to_one_product() {
    for s in stores(mercato_catalog::NAME, &mercato_catalog::MIGRATIONS).await {
        let store = CatalogStore::new(s.db.clone(), Outbox::new());
        add(&store, Uuid::nil(), "c", &["S-1"])
            .await
            .expect("first");
        let taken = add(&store, Uuid::nil(), "c", &["S-2", "S-1"]).await;
        assert!(
            matches!(&taken, Err(AppendError::SkuTaken(sku)) if sku == "S-1"),
            "{:?}: {taken:?}",
            s.backend
        );
        assert!(
            store.sku("S-2").await.expect("sku").is_none(),
            "the failed product left nothing behind"
        );
    }
}

#[tokio::test]
async fn lists_filter_and_page_newest_first() {
    for s in stores(mercato_catalog::NAME, &mercato_catalog::MIGRATIONS).await {
        let store = CatalogStore::new(s.db.clone(), Outbox::new());
        let seller = mercato_kernel::id::new_id();
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                add(&store, seller, "books", &[&format!("L-{i}")])
                    .await
                    .expect("add"),
            );
        }
        add(&store, Uuid::nil(), "games", &["G-1"])
            .await
            .expect("add");
        let filter = ProductFilter {
            category: Some("books".into()),
            ..Default::default()
        };
        let page1 = store
            .list(
                &filter,
                &PageQuery {
                    limit: Some(3),
                    cursor: None,
                }
                .validate()
                .expect("page"),
            )
            .await
            .expect("list");
        let page2 = store
            .list(
                &filter,
                &PageQuery {
                    limit: Some(3),
                    cursor: page1.next_cursor.clone(),
                }
                .validate()
                .expect("page"),
            )
            .await
            .expect("list");
        let got: Vec<Uuid> = page1
            .items
            .iter()
            .chain(page2.items.iter())
            .map(|p| p.id)
            .collect();
        ids.reverse();
        assert_eq!(got, ids, "{:?}", s.backend);
        assert!(page2.next_cursor.is_none());
        let by_seller = ProductFilter {
            seller_id: Some(seller),
            ..Default::default()
        };
        let all = store
            .list(&by_seller, &PageQuery::default().validate().expect("page"))
            .await
            .expect("list");
        assert_eq!(all.items.len(), 5);
    }
}
