-- Each product's rating as reviews last told it (`rating.changed`): JSON
-- `{average, count}` and its version, so that an older change arriving late
-- does not undo a newer one. Kept apart from the product's document, which
-- catalog events overwrite.
CREATE TABLE search_ratings (
    product_id TEXT PRIMARY KEY,
    rating TEXT NOT NULL,
    version BIGINT NOT NULL
);
