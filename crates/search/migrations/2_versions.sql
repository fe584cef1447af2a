-- The catalog version of the last product event applied, per product. It
-- outlives the product's row in search_products, so that an older event
-- arriving after the product was archived does not bring it back.
CREATE TABLE search_product_versions (
    product_id TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
