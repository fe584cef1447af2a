-- A counter per SKU, bumped by every transaction that changes the SKU's
-- stock: its row lock makes such transactions take turns, and its value
-- orders the SKU's stock.changed events.
CREATE TABLE sku_versions (
    sku TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
