-- A product's rating as reviews last told it (`rating.changed`): JSON
-- `{average, count}`, and the rating's version, so that an older change
-- arriving late does not undo a newer one.
ALTER TABLE products ADD COLUMN rating TEXT;
ALTER TABLE products ADD COLUMN rating_version BIGINT NOT NULL DEFAULT 0;
