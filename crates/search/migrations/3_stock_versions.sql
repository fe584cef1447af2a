-- The inventory version of the last stock change applied per SKU, so that
-- an older stock.changed arriving late does not overwrite a newer count.
ALTER TABLE search_stock ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
