-- The event store: the source of truth for products.
CREATE TABLE product_events (
    product_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    PRIMARY KEY (product_id, version)
);

-- The current-state projection, written in the same transaction as the events.
CREATE TABLE products (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    variants TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX products_category ON products (category, id);
CREATE INDEX products_seller ON products (seller_id, id);

-- SKUs are unique across the shop and stay with the product that first used them.
CREATE TABLE skus (
    sku TEXT PRIMARY KEY,
    product_id TEXT NOT NULL
);
