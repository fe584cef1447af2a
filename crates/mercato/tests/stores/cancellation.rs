//! A request whose client hangs up is cancelled wherever it stands: before
//! its transaction has begun, half-way through `BEGIN`, between statements,
//! inside `COMMIT`, in the middle of a single-statement write. Wherever that
//! is, the store must stay writable, no connection may go back to the pool
//! inside a transaction, and every acknowledged write must be durable.
//!
//! Each test cancels at chosen points: it polls the store's future a given
//! number of times (letting the connection's worker run in between), then
//! drops it, for every number of polls up to the one at which it completes.

use crate::support::{stores, TestStore};
use mercato_kernel::db::{Db, Migration, Migrations, Tx};
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

const TABLE: Migrations = Migrations {
    sqlite: &[Migration {
        version: 1,
        name: "writes",
        sql: "CREATE TABLE writes (n BIGINT PRIMARY KEY)",
    }],
    postgres: &[Migration {
        version: 1,
        name: "writes",
        sql: "CREATE TABLE writes (n BIGINT PRIMARY KEY)",
    }],
};

/// Polls `fut` up to `polls` times, a short pause between polls so that the
/// store's worker moves on, and drops it if it has not finished by then.
async fn poll_then_drop<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        let step = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(out) = step {
            return Some(out);
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    None
}

/// A full write, which must go through promptly: a store left inside a
/// transaction answers `database is locked` after its busy time-out, or
/// "begin at non-zero transaction depth" at once.
async fn write(db: &Db, n: i64) {
    let done = tokio::time::timeout(Duration::from_secs(3), async {
        let mut tx = db.begin().await?;
        sqlx::query("INSERT INTO writes (n) VALUES ($1)")
            .bind(n)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    })
    .await;
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("write {n} failed after a cancelled one: {e}"),
        Err(_) => panic!("write {n} hung after a cancelled one"),
    }
}

/// What a new pool on the same store reads: committed rows only.
async fn durable(store: &TestStore) -> Vec<i64> {
    let fresh = Db::connect(&store.config).await.expect("store reopens");
    let rows: Vec<(i64,)> = sqlx::query_as("SELECT n FROM writes ORDER BY n")
        .fetch_all(fresh.pool())
        .await
        .expect("rows");
    fresh.close().await;
    rows.into_iter().map(|r| r.0).collect()
}

async fn insert_in(tx: &mut Tx, n: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO writes (n) VALUES ($1)")
        .bind(n)
        .execute(tx.conn())
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cancelled_while_it_begins_leaves_the_store_writable() {
    for store in stores("cancel_begin", &TABLE).await {
        let db = &store.db;
        let mut acknowledged = Vec::new();
        for polls in 0..8 {
            // A transaction begun and then dropped unfinished is cancelled too.
            let _ = poll_then_drop(db.begin(), polls).await;
            let n = polls as i64;
            write(db, n).await;
            acknowledged.push(n);
        }
        assert_eq!(durable(&store).await, acknowledged, "{:?}", store.backend);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cancelled_between_statements_or_in_commit_leaves_nothing_behind() {
    for store in stores("cancel_inside", &TABLE).await {
        let db = &store.db;
        let mut acknowledged = Vec::new();
        let mut maybe = Vec::new();
        for polls in 0..12 {
            let base = 1_000 * (polls as i64 + 1);
            // Two inserts and a commit: cancelled before, between, or
            // inside any of them.
            let committed = poll_then_drop(
                async {
                    let mut tx = db.begin().await?;
                    insert_in(&mut tx, base + 1).await?;
                    insert_in(&mut tx, base + 2).await?;
                    tx.commit().await
                },
                polls,
            )
            .await;
            match committed {
                Some(Ok(())) => acknowledged.extend([base + 1, base + 2]),
                Some(Err(e)) => panic!("{:?}: transaction failed: {e}", store.backend),
                // Cancelled inside COMMIT, the client cannot know; either
                // way both rows or neither.
                None => maybe.push(base),
            }
            write(db, base + 3).await;
            acknowledged.push(base + 3);
        }
        let rows = durable(&store).await;
        for n in &acknowledged {
            assert!(rows.contains(n), "{:?}: write {n} lost", store.backend);
        }
        for base in maybe {
            let has = |k| rows.contains(&(base + k));
            assert_eq!(
                has(1),
                has(2),
                "{:?}: half a transaction committed",
                store.backend
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_statement_write_cancelled_midway_leaves_the_store_writable() {
    for store in stores("cancel_execute", &TABLE).await {
        let db = &store.db;
        for polls in 0..6 {
            let n = 10 * polls as i64;
            let _ = poll_then_drop(
                db.execute(sqlx::query("INSERT INTO writes (n) VALUES ($1)").bind(n)),
                polls,
            )
            .await;
            write(db, n + 1).await;
        }
        let rows = durable(&store).await;
        for polls in 0..6 {
            assert!(rows.contains(&(10 * polls + 1)), "{:?}", store.backend);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_cancelled_at_random_under_contention_never_wedge_the_store() {
    for store in stores("cancel_storm", &TABLE).await {
        let db = store.db.clone();
        let mut tasks = Vec::new();
        for w in 0..16i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..40i64 {
                    let n = w * 1_000 + i;
                    // Cut off after 0-3 ms, as a client on a bad network does.
                    let budget = Duration::from_micros(((n * 7919) % 3_000) as u64);
                    let _ = tokio::time::timeout(budget, async {
                        let mut tx = db.begin().await?;
                        insert_in(&mut tx, n).await?;
                        tx.commit().await
                    })
                    .await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer task");
        }
        // The store takes new writes at once, on every pooled connection.
        for n in 0..20 {
            write(&db, 1_000_000 + n).await;
        }
        let rows = durable(&store).await;
        assert!(
            (0..20).all(|n| rows.contains(&(1_000_000 + n))),
            "{:?}",
            store.backend
        );
    }
}
