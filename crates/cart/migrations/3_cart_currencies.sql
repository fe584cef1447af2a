-- The currency a customer picked for the cart (`PUT /cart/currency`).
CREATE TABLE cart_currencies (
    customer_id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
