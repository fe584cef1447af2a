-- Stock of one SKU in one warehouse. The CHECK is a last line of defence:
-- every write is already a conditional update that cannot break it.
CREATE TABLE stock (
    sku TEXT NOT NULL,
    warehouse TEXT NOT NULL,
    on_hand BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (sku, warehouse),
    CHECK (on_hand >= 0 AND reserved >= 0 AND reserved <= on_hand)
);

-- One reservation per id, with the outcome of its first attempt, so that a
-- repeated reserve answers the same. status: held, released, committed,
-- restocked, or out_of_stock (nothing was held).
CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    out_of_stock_sku TEXT,
    release_reason TEXT,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX reservations_expiry ON reservations (status, expires_at);

-- Where each reserved unit is held: a line may span several warehouses.
CREATE TABLE reservation_lines (
    reservation_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    warehouse TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, sku, warehouse)
);
