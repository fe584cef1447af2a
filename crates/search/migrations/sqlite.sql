-- The state the search index is derived from, kept beside it so a stock
-- change can rebuild its product's document without asking the catalog.
CREATE TABLE search_products (
    product_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- Available stock per SKU. product_id is '' while the SKU belongs to no
-- indexed product (stock may be heard of before its product).
CREATE TABLE search_stock (
    sku TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    available BIGINT NOT NULL
);
CREATE INDEX search_stock_product ON search_stock (product_id);
