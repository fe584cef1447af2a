-- One cart per customer: its lines. Prices are not kept; the catalog prices
-- every line when the cart is read.
CREATE TABLE cart_lines (
    customer_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    added_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, sku)
);
-- product.archived removes a SKU from every cart.
CREATE INDEX cart_lines_sku ON cart_lines (sku);

-- Orders whose purchase was already taken out of a cart, so that a repeated
-- checked_out has no second effect.
CREATE TABLE cart_checkouts (
    order_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    processed_at TEXT NOT NULL
);
