-- Promotions: a code (unique without regard to case), its rules (kind,
-- value, amounts, minimum, categories, description) as JSON, and the
-- columns the conditional redemption checks.
CREATE TABLE promotions (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    code_key TEXT NOT NULL UNIQUE,
    rules TEXT NOT NULL,
    starts_at TEXT,
    ends_at TEXT,
    usage_limit BIGINT,
    per_customer_limit BIGINT,
    times_used BIGINT NOT NULL DEFAULT 0 CHECK (times_used >= 0),
    active BIGINT NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- How many orders of each customer hold a redemption of a promotion.
CREATE TABLE promotion_uses (
    promotion_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    uses BIGINT NOT NULL CHECK (uses >= 0),
    PRIMARY KEY (promotion_id, customer_id)
);

-- One row per order that asked: `redeemed`, `refused` (the code ran out)
-- or `released` (given back, or released before it was ever redeemed, so
-- that a late redemption of that order is refused).
CREATE TABLE redemptions (
    order_id TEXT PRIMARY KEY,
    promotion_id TEXT,
    customer_id TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX redemptions_promotion ON redemptions (promotion_id);

CREATE TABLE shipping_methods (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- price, prices, countries, free_over
    rules TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE tax_rates (
    country TEXT PRIMARY KEY,
    rate_bps BIGINT NOT NULL,
    name TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
