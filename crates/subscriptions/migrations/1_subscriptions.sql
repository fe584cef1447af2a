-- A subscription: what is bought every period, where it goes, how it is
-- paid. `period` is the number of the period that starts at
-- `next_renewal_at` (0 is the first order's); `retry_period` a period whose
-- order failed and is tried again at `retry_at` (null: only by renew).
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL,
    items TEXT NOT NULL,
    cadence TEXT NOT NULL,
    payment_token TEXT NOT NULL,
    shipping_address TEXT NOT NULL,
    anchor_at TEXT NOT NULL,
    period BIGINT NOT NULL,
    next_renewal_at TEXT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0,
    retry_period BIGINT,
    retry_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id, id);
CREATE INDEX subscriptions_due ON subscriptions (status, next_renewal_at);
CREATE INDEX subscriptions_retry ON subscriptions (status, retry_at);

-- Every order placed for a period, one attempt after another. The primary
-- key is the claim: two replicas placing the same attempt of a period make
-- one row, and an attempt is only made when no other of its period is
-- live (placing, pending or confirmed).
CREATE TABLE subscription_orders (
    subscription_id TEXT NOT NULL,
    period BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    order_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (subscription_id, period, attempt)
);
CREATE INDEX subscription_orders_placing ON subscription_orders (status, updated_at);
