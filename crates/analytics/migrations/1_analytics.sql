-- Everything here is built from events: interactions the gateway recorded
-- (and those clients sent to POST /events), orders and their refunds, and
-- which seller each product is of. Every write is keyed so that an event
-- delivered twice changes nothing the second time.
CREATE TABLE an_interactions (
    event_id TEXT PRIMARY KEY,
    -- product_viewed, searched, cart_added, checkout_started, or client
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    -- how many times the visitor did it (the gateway coalesces repeats)
    times BIGINT NOT NULL,
    customer_id TEXT,
    session_id TEXT,
    product_id TEXT,
    order_id TEXT,
    -- searches: the words, lower-cased, and how many products matched
    query TEXT,
    results BIGINT,
    quantity BIGINT,
    -- client events: their type and properties (JSON)
    name TEXT,
    properties TEXT
);
CREATE INDEX an_interactions_kind_at ON an_interactions (kind, at);
CREATE INDEX an_interactions_customer ON an_interactions (customer_id);
CREATE INDEX an_interactions_session ON an_interactions (session_id);
CREATE TABLE an_orders (
    order_id TEXT PRIMARY KEY,
    placed_at TEXT NOT NULL,
    confirmed_at TEXT,
    total BIGINT NOT NULL,
    currency TEXT NOT NULL,
    units BIGINT NOT NULL
);
CREATE INDEX an_orders_confirmed ON an_orders (confirmed_at);
CREATE TABLE an_order_lines (
    order_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    product_id TEXT NOT NULL,
    title TEXT NOT NULL,
    units BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX an_order_lines_product ON an_order_lines (product_id);
CREATE TABLE an_refunds (
    event_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    at TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL
);
CREATE INDEX an_refunds_at ON an_refunds (at);
CREATE TABLE an_products (
    product_id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    title TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX an_products_seller ON an_products (seller_id);
-- People who erased their account: an interaction of theirs that comes
-- later (on another stream than the erasure) is kept without their id.
CREATE TABLE an_erased (
    customer_id TEXT PRIMARY KEY
);
