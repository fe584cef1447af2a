//! Demo data: a seller, a customer, a few products, a promotion code, two
//! shipping methods and two tax rates, three shoppers' orders with their
//! reviews, and an experiment, loaded by `mercato serve --demo`. Loading
//! twice changes nothing.

use crate::app::Contexts;
use mercato_catalog::domain::{CatalogCommand, NewVariant};
use mercato_identity::service::{Registration, Session};
use mercato_kernel::auth::{Caller, Role};
use mercato_kernel::{Currency, Money};
use std::collections::BTreeMap;
use std::time::Duration;

pub const SELLER_EMAIL: &str = "seller@demo.mercato.dev";
pub const CUSTOMER_EMAIL: &str = "customer@demo.mercato.dev";
pub const PASSWORD: &str = "mercato-demo";
/// 10 % off, at most 1,000 uses.
pub const PROMOTION_CODE: &str = "WELCOME10";
/// Units of every demo SKU in the `main` warehouse.
pub const DEMO_STOCK: i64 = 100;

struct DemoProduct {
    title: &'static str,
    description: &'static str,
    category: &'static str,
    variants: &'static [(&'static str, &'static str, i64)],
}

const PRODUCTS: &[DemoProduct] = &[
    DemoProduct {
        title: "Espresso Cup",
        description: "A thick-walled porcelain cup that keeps an espresso hot.",
        category: "kitchen",
        variants: &[
            ("CUP-ESP-WHT", "White", 1290),
            ("CUP-ESP-BLK", "Black", 1290),
        ],
    },
    DemoProduct {
        title: "Pour-Over Kettle",
        description: "Gooseneck kettle for a slow, even pour.",
        category: "kitchen",
        variants: &[("KETTLE-GOOSE", "1 litre", 4900)],
    },
    DemoProduct {
        title: "Merino Beanie",
        description: "Warm, soft merino wool beanie.",
        category: "apparel",
        variants: &[("BEANIE-GRY", "Grey", 2500), ("BEANIE-NVY", "Navy", 2500)],
    },
    DemoProduct {
        title: "Canvas Tote Bag",
        description: "A sturdy cotton canvas bag for the market.",
        category: "accessories",
        variants: &[("TOTE-NAT", "Natural", 1800)],
    },
];

async fn ensure_user(
    ctx: &Contexts,
    email: &str,
    name: &str,
    role: Role,
) -> anyhow::Result<Session> {
    if let Ok(session) = ctx.identity.login(email, PASSWORD).await {
        return Ok(session);
    }
    ctx.identity
        .register(Registration {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            name: name.to_owned(),
            role,
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating demo user {email}: {}", e.message))
}

/// Loads the demo data and returns the text to print.
pub async fn load(ctx: &Contexts) -> anyhow::Result<String> {
    let seller = ensure_user(ctx, SELLER_EMAIL, "Demo Seller", Role::Seller).await?;
    let customer = ensure_user(ctx, CUSTOMER_EMAIL, "Demo Customer", Role::Customer).await?;
    let caller = Caller {
        user_id: seller.user.id,
        role: Role::Seller,
    };
    let eur = Currency::parse("EUR")?;
    for p in PRODUCTS {
        let first_sku = p.variants[0].0;
        if ctx.catalog.store().sku(first_sku).await?.is_some() {
            continue;
        }
        let variants = p
            .variants
            .iter()
            .map(|(sku, title, amount)| NewVariant {
                sku: (*sku).to_owned(),
                title: Some((*title).to_owned()),
                price: Money::new(*amount, eur.clone()),
                prices: Vec::new(),
                attributes: BTreeMap::new(),
            })
            .collect();
        ctx.catalog
            .create(
                caller,
                CatalogCommand::Create {
                    seller_id: seller.user.id,
                    title: p.title.to_owned(),
                    description: p.description.to_owned(),
                    category: p.category.to_owned(),
                    category_path: Vec::new(),
                    images: Vec::new(),
                    variants,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("creating demo product {}: {}", p.title, e.message))?;
    }
    // Stock only SKUs never stocked, so that a reload keeps what was sold since.
    for (sku, _, _) in PRODUCTS.iter().flat_map(|p| p.variants.iter()) {
        let stock = ctx
            .inventory
            .stock(sku)
            .await
            .map_err(|e| anyhow::anyhow!("reading demo stock of {sku}: {}", e.message))?;
        if stock.warehouses.is_empty() {
            ctx.inventory
                .set_stock(caller, sku, None, DEMO_STOCK)
                .await
                .map_err(|e| anyhow::anyhow!("stocking demo sku {sku}: {}", e.message))?;
        }
    }
    pricing(ctx, &eur).await?;
    engagement(ctx).await?;
    Ok(format!(
        "Demo data loaded.\n  seller:   {SELLER_EMAIL} / {PASSWORD}\n  customer: {CUSTOMER_EMAIL} / {PASSWORD}\n  customer token: {}\n  promotion code: {PROMOTION_CODE} (10 % off)\n  experiment: {EXPERIMENT_KEY}\n",
        customer.access_token
    ))
}

/// A promotion code, shipping (standard everywhere, free over 50.00;
/// express), and VAT for Germany and the United Kingdom.
async fn pricing(ctx: &Contexts, eur: &Currency) -> anyhow::Result<()> {
    use mercato_pricing::domain::PromotionRules;
    use mercato_pricing::service::NewShippingMethod;
    let admin = Caller {
        user_id: uuid::Uuid::nil(),
        role: Role::Admin,
    };
    let failed = |what: &str, e: mercato_kernel::ApiError| {
        anyhow::anyhow!("creating the demo {what}: {}", e.message)
    };
    let pricing = &ctx.pricing;
    if pricing
        .store()
        .promotion_by_code(PROMOTION_CODE)
        .await?
        .is_none()
    {
        let rules = PromotionRules {
            usage_limit: Some(1000),
            per_customer_limit: Some(1),
            description: Some("10 % off your first order".to_owned()),
            ..PromotionRules::percentage(PROMOTION_CODE, 10)
        };
        pricing
            .create_promotion(admin, rules)
            .await
            .map_err(|e| failed("promotion", e))?;
    }
    if pricing.store().shipping_methods().await?.is_empty() {
        for (name, amount, free_over) in [("Standard", 495, Some(5000)), ("Express", 1295, None)] {
            let method = NewShippingMethod {
                name: name.to_owned(),
                price: Money::new(amount, eur.clone()),
                prices: Vec::new(),
                countries: Vec::new(),
                free_over: free_over.map(|f| Money::new(f, eur.clone())),
            };
            pricing
                .create_shipping_method(admin, method)
                .await
                .map_err(|e| failed("shipping method", e))?;
        }
    }
    for (country, rate_bps, name) in [("DE", 1900, "MwSt"), ("GB", 2000, "VAT")] {
        if pricing.store().tax_rate(country).await?.is_none() {
            pricing
                .put_tax_rate(admin, country, rate_bps, Some(name.to_owned()))
                .await
                .map_err(|e| failed("tax rate", e))?;
        }
    }
    Ok(())
}

/// The experiment the demo starts.
pub const EXPERIMENT_KEY: &str = "checkout-button";

/// Demo shoppers and the two SKUs each buys together: enough orders for
/// recommendations to show, each followed by a review.
const SHOPPERS: [(&str, &str, [&str; 2], i64); 3] = [
    (
        "ada@demo.mercato.dev",
        "Ada",
        ["CUP-ESP-WHT", "KETTLE-GOOSE"],
        5,
    ),
    (
        "grace@demo.mercato.dev",
        "Grace",
        ["CUP-ESP-BLK", "KETTLE-GOOSE"],
        4,
    ),
    (
        "alan@demo.mercato.dev",
        "Alan",
        ["BEANIE-GRY", "TOTE-NAT"],
        5,
    ),
];

/// Orders, reviews of what they bought, and an experiment: once (the
/// experiment marks it done).
async fn engagement(ctx: &Contexts) -> anyhow::Result<()> {
    use mercato_orders::service::{AddressChoice, CheckoutRequest, Destination};
    if ctx
        .recommendations
        .store()
        .experiment(EXPERIMENT_KEY)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let failed =
        |what: &str, e: mercato_kernel::ApiError| anyhow::anyhow!("demo {what}: {}", e.message);
    for (email, name, skus, rating) in SHOPPERS {
        let session = ensure_user(ctx, email, name, Role::Customer).await?;
        let customer = Caller {
            user_id: session.user.id,
            role: Role::Customer,
        };
        for sku in skus {
            ctx.cart
                .add_item(customer.user_id, sku, 1)
                .await
                .map_err(|e| failed("cart", e))?;
        }
        let placed = ctx
            .orders
            .checkout(
                customer,
                CheckoutRequest {
                    idempotency_key: format!("demo-order-{email}"),
                    request_body: email.as_bytes().to_vec(),
                    payment_token: "tok_visa".into(),
                    destination: Destination {
                        address: AddressChoice::Given(mercato_orders::domain::ShippingAddress {
                            name: name.to_owned(),
                            line1: "1 Market Street".into(),
                            line2: None,
                            city: "Berlin".into(),
                            postal_code: "10115".into(),
                            country: "DE".into(),
                        }),
                        shipping_method: None,
                    },
                },
            )
            .await
            .map_err(|e| failed("checkout", e))?;
        let id: uuid::Uuid = serde_json::from_str::<serde_json::Value>(&placed.body)?["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("demo checkout answered without an order id"))?;
        let order = ctx
            .orders
            .get_settled(customer, id, Duration::from_secs(10))
            .await
            .map_err(|e| failed("order", e))?;
        let products: std::collections::BTreeSet<uuid::Uuid> =
            order.items.iter().map(|l| l.product_id).collect();
        for product in products {
            // The purchase reaches reviews by event.
            for _ in 0..100 {
                if ctx
                    .reviews
                    .store()
                    .bought(customer.user_id, product)
                    .await?
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let review = mercato_reviews::service::NewReview {
                rating,
                title: "Just as described".into(),
                body: format!("{name} uses it every day."),
            };
            match ctx.reviews.create(customer, product, review).await {
                Ok(_) => {}
                Err(e) if e.code == "review_exists" => {}
                Err(e) => return Err(failed("review", e)),
            }
        }
    }
    let admin = Caller {
        user_id: uuid::Uuid::nil(),
        role: Role::Admin,
    };
    let arms = ["control", "green"].map(|name| mercato_recommendations::domain::Variant {
        name: name.to_owned(),
        weight: 1,
    });
    ctx.recommendations
        .create_experiment(admin, EXPERIMENT_KEY.to_owned(), arms.to_vec(), None)
        .await
        .map_err(|e| failed("experiment", e))?;
    Ok(())
}
