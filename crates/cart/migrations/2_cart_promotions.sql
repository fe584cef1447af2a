-- The promotion code a customer put on the cart (one at most).
CREATE TABLE cart_promotions (
    customer_id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
