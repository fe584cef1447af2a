-- Everything here is rebuilt from events: products and their stock from
-- catalog and inventory, sales and co-purchases from confirmed orders.
CREATE TABLE rec_products (
    product_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    category TEXT NOT NULL,
    price_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    active BIGINT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX rec_products_category ON rec_products (category);
CREATE TABLE rec_skus (
    sku TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    available BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX rec_skus_product ON rec_skus (product_id);
-- Units sold per product.
CREATE TABLE rec_sales (
    product_id TEXT PRIMARY KEY,
    units BIGINT NOT NULL
);
-- How many confirmed orders held both products (both directions).
CREATE TABLE rec_pairs (
    product_id TEXT NOT NULL,
    other_id TEXT NOT NULL,
    orders BIGINT NOT NULL,
    PRIMARY KEY (product_id, other_id)
);
-- What each customer bought.
CREATE TABLE rec_bought (
    customer_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);
-- Experiments: variants and their weights (JSON), the goal counted.
CREATE TABLE experiments (
    experiment_key TEXT PRIMARY KEY,
    variants TEXT NOT NULL,
    goal TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- A subject's first exposure to an experiment, and its conversion: one each.
CREATE TABLE exposures (
    experiment TEXT NOT NULL,
    subject TEXT NOT NULL,
    variant TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (experiment, subject)
);
CREATE INDEX exposures_subject ON exposures (subject);
CREATE TABLE conversions (
    experiment TEXT NOT NULL,
    subject TEXT NOT NULL,
    variant TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (experiment, subject)
);
