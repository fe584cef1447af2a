-- One intent per order: the unique order_id is what makes charging idempotent.
CREATE TABLE payment_intents (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    provider_charge_id TEXT,
    failure_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Money movements, append-only. Captures are positive, refunds negative.
CREATE TABLE ledger_entries (
    id TEXT PRIMARY KEY,
    intent_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    provider_ref TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (intent_id, kind)
);
