//! Search: a tantivy read model of the catalog and inventory.
//!
//! The `search` consumer hears `product.created`, `product.updated`,
//! `product.archived` and `stock.changed` and keeps one document per active
//! product: its title and description (full text), category (exact, with
//! facet counts), lowest variant price, seller, SKUs, and the stock
//! available over its SKUs. `GET /search` answers from it with typo
//! tolerance, completion of the last word, filters and category facets.
//!
//! # Freshness
//!
//! Events are written to the index writer as they arrive, but not committed
//! one by one, which would make bulk loads crawl: a committer task commits
//! and reopens the reader at most every 250 ms when something changed, so a
//! change is searchable well within the 2 seconds the API promises.
//!
//! # Durability: a rebuildable read model
//!
//! Everything here is derived from the event log, so the index is not
//! backed up or repaired: it is rebuilt. The read model lives in
//! `<data_dir>/search`: the tantivy index in `index/`, and in `state.db`
//! the state documents are built from (each product's last known state and
//! the version of the event that described it, the available stock of
//! every SKU), which lets a stock change rebuild its product's document
//! without reading uncommitted index state.
//!
//! The bus records the consumer's position as events are handled, ahead of
//! the index commit, so after a crash the index may lack events the bus
//! counts as delivered. Hence a marker: on a clean shutdown the committer
//! waits for the consumer to stop, makes a final commit, then writes
//! `<data_dir>/search/clean-shutdown`; at start the marker is removed. When
//! at start the index folder is missing, the marker is absent (the previous
//! run crashed or was killed), or the index has another schema, the whole
//! folder is wiped and the consumer is rewound with
//! [`EventBus::rewind`](mercato_kernel::bus::EventBus::rewind) before it
//! subscribes: it replays the whole event log and the index is rebuilt.
//! Deleting `<data_dir>/search` by hand forces the same rebuild.
//!
//! Handling an event twice is harmless, and a product event older than the
//! state held (a redelivery after later events, a replayed dead letter)
//! is not applied (see [`consumer`]), so the consumer needs no inbox. The state stays on local disk in every mode, because in
//! distributed mode each search replica builds its own index from the stream.
//!
//! # One consumer per replica
//!
//! In embedded mode the one process reads as the consumer `search`
//! ([`SearchService::start`]). In distributed mode every replica reads as a
//! consumer of its own, `search-<instance>`
//! ([`SearchService::start_instance`], [`consumer::instance_consumer`]), with
//! the instance a name that survives a restart (the host or pod name): each
//! index gets every event, a replica that rebuilds rewinds only its own
//! consumer, and a restarted replica with an intact index goes on from its
//! consumer's position. These consumers are per instance
//! ([`Subscription::per_instance`](mercato_kernel::bus::Subscription::per_instance)):
//! the bus removes the consumer of a replica that has been gone a while.
//!
//! # Metrics
//!
//! `mercato_search_latency_seconds` (histogram of search time),
//! `mercato_search_documents` (gauge of indexed products) and
//! `mercato_search_stale_events_total` (product events not applied because
//! the state held was newer).
//!
//! Rooms: [`domain`], [`index`], [`store`], [`service`], [`consumer`],
//! [`routes`].

pub mod consumer;
pub mod domain;
pub mod index;
pub mod routes;
pub mod service;
pub mod store;

pub use service::SearchService;

use mercato_kernel::db::{Migration, Migrations};

pub const NAME: &str = "search";

// Migrations written once, for both backends.
const PRODUCT_VERSIONS: Migration = Migration {
    version: 2,
    name: "search_product_versions",
    sql: include_str!("../migrations/2_versions.sql"),
};

const STOCK_VERSIONS: Migration = Migration {
    version: 3,
    name: "search_stock_versions",
    sql: include_str!("../migrations/3_stock_versions.sql"),
};

const RATINGS: Migration = Migration {
    version: 4,
    name: "search_ratings",
    sql: include_str!("../migrations/4_ratings.sql"),
};

pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            name: "search_state",
            sql: include_str!("../migrations/sqlite.sql"),
        },
        PRODUCT_VERSIONS,
        STOCK_VERSIONS,
        RATINGS,
    ],
    postgres: &[
        Migration {
            version: 1,
            name: "search_state",
            sql: include_str!("../migrations/postgres.sql"),
        },
        PRODUCT_VERSIONS,
        STOCK_VERSIONS,
        RATINGS,
    ],
};
