-- What each signed-in customer looked at or put in a cart (from the
-- gateway's interactions), the latest time: their history beside what they
-- bought.
CREATE TABLE rec_viewed (
    customer_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);
-- People who erased their account: what comes of them later (on another
-- stream than the erasure) is not kept.
CREATE TABLE rec_erased (
    customer_id TEXT PRIMARY KEY
);
