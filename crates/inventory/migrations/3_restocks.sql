-- What returns put back of a reservation's sold stock: per restock id, SKU
-- and the warehouse it went to. A full restock puts back only the rest.
CREATE TABLE restocks (
    id TEXT NOT NULL,
    reservation_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    warehouse TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (id, sku, warehouse)
);
CREATE INDEX restocks_reservation ON restocks (reservation_id);
