//! The consumer inbox (invariant 3): a consumer records the id of an event in
//! the same transaction as the event's effect, so a redelivered event finds
//! its id and has no second effect.

use crate::db::Tx;
use uuid::Uuid;

/// Claims `event_id` for `consumer` inside `tx`. `false` means the event was
/// already processed: the caller drops the transaction and does nothing.
pub async fn claim(tx: &mut Tx, consumer: &str, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id.to_string())
    .bind(crate::time::to_db(&crate::time::now()))
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}
