CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    items TEXT NOT NULL,
    total_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    payment_status TEXT NOT NULL,
    -- Kept so that a saga resumed after a crash can still charge.
    payment_token TEXT NOT NULL,
    shipping_address TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, id);

-- The audit trail: every status an order has had.
CREATE TABLE order_history (
    order_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Which sellers sold lines of an order: they may see and ship it.
CREATE TABLE order_sellers (
    order_id TEXT NOT NULL,
    seller_id TEXT NOT NULL,
    PRIMARY KEY (order_id, seller_id)
);
CREATE INDEX order_sellers_seller ON order_sellers (seller_id, order_id);

-- The saga log: where each order's checkout, cancellation or refund stands.
CREATE TABLE sagas (
    order_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    step TEXT NOT NULL,
    cancel_reason TEXT,
    attempts BIGINT NOT NULL,
    deadline TEXT NOT NULL,
    next_run_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    correlation_id TEXT,
    last_error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX sagas_due ON sagas (state, next_run_at);
