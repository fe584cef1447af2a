-- Reviews, one per customer and product; `verified_purchase` and the vote
-- counts as 0/1 and counts (BIGINT on both backends).
CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    seller_id TEXT,
    author_id TEXT NOT NULL,
    author_name TEXT NOT NULL,
    rating BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    verified_purchase BIGINT NOT NULL,
    helpful_votes BIGINT NOT NULL DEFAULT 0,
    unhelpful_votes BIGINT NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (product_id, author_id)
);
CREATE INDEX reviews_product ON reviews (product_id, status, id);
CREATE INDEX reviews_status ON reviews (status, id);
CREATE INDEX reviews_author ON reviews (author_id);

-- One vote per person and review; voting again replaces it.
CREATE TABLE review_votes (
    review_id TEXT NOT NULL,
    voter_id TEXT NOT NULL,
    helpful BIGINT NOT NULL,
    PRIMARY KEY (review_id, voter_id)
);

-- What customers bought, from order events: a line of a confirmed order
-- (active) makes its customer a verified buyer of the product until the
-- order is cancelled or refunded.
CREATE TABLE purchases (
    order_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    active BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX purchases_customer ON purchases (customer_id, product_id);

-- Orders cancelled or refunded: a confirmation arriving after the
-- withdrawal (events of one order may come out of order) counts nothing.
CREATE TABLE withdrawn_orders (
    order_id TEXT PRIMARY KEY
);

-- Who sells each product, from catalog events (newest version wins).
CREATE TABLE products (
    product_id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX products_seller ON products (seller_id);

-- Names reviews are signed with, from identity events; an erased user
-- stays as a row without a name, so that a late event cannot bring the
-- name back.
CREATE TABLE authors (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    erased BIGINT NOT NULL DEFAULT 0
);

-- Rating aggregates of published reviews, moved by deltas in the
-- transaction of each review's change; `version` orders rating.changed. A
-- seller's rating is summed from their products' at read time.
CREATE TABLE product_ratings (
    product_id TEXT PRIMARY KEY,
    review_count BIGINT NOT NULL,
    rating_total BIGINT NOT NULL,
    r1 BIGINT NOT NULL,
    r2 BIGINT NOT NULL,
    r3 BIGINT NOT NULL,
    r4 BIGINT NOT NULL,
    r5 BIGINT NOT NULL,
    version BIGINT NOT NULL
);
