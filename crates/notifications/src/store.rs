//! The recipient directory and the notifications, on SQLite or PostgreSQL.

use crate::domain::{
    NewNotification, NotificationStatus, NotificationView, OutgoingMessage, Recipient, EMAIL,
};
use mercato_kernel::db::Db;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::time::{self, Timestamp};
use mercato_kernel::{inbox, Envelope};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Clone)]
pub struct NotificationsStore {
    db: Db,
    outbox: Outbox,
}

/// A pending notification whose time has come, as the dispatcher sees it.
#[derive(Debug, Clone)]
pub struct Due {
    pub message: OutgoingMessage,
    /// Attempts made so far.
    pub attempts: i64,
    /// The stored due time, the guard of the lease.
    pub next_attempt_at: String,
}

type DueRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
);

fn due_from_row(row: DueRow) -> anyhow::Result<Due> {
    let (id, user_id, template, to_email, to_name, subject, body, attempts, next_attempt_at) = row;
    Ok(Due {
        message: OutgoingMessage {
            notification_id: Uuid::parse_str(&id)?,
            user_id: Uuid::parse_str(&user_id)?,
            template,
            to_email,
            to_name,
            subject,
            body,
        },
        attempts,
        next_attempt_at,
    })
}

type ViewRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
);

fn view_from_row(row: ViewRow) -> anyhow::Result<NotificationView> {
    let (id, channel, template, subject, status, order_id, created_at) = row;
    Ok(NotificationView {
        id: Uuid::parse_str(&id)?,
        channel,
        template,
        subject,
        status: NotificationStatus::parse(&status)
            .ok_or_else(|| anyhow::anyhow!("unknown notification status {status:?}"))?,
        order_id: order_id.as_deref().map(Uuid::parse_str).transpose()?,
        created_at: time::from_db(&created_at)?,
    })
}

/// How a delivery attempt ended, to be recorded.
pub enum Outcome<'a> {
    Sent,
    /// Pending again, to be tried at `retry_at`.
    Retry {
        retry_at: Timestamp,
        error: &'a str,
    },
    Failed {
        error: &'a str,
    },
}

impl NotificationsStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records (or refreshes) a recipient; `false` when `event_id` was
    /// already processed by `consumer`.
    pub async fn upsert_recipient(
        &self,
        consumer: &str,
        event_id: Uuid,
        recipient: &Recipient,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !inbox::claim(&mut tx, consumer, event_id).await? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO recipients (user_id, email, name, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, name = excluded.name,
                updated_at = excluded.updated_at",
        )
        .bind(recipient.user_id.to_string())
        .bind(&recipient.email)
        .bind(&recipient.name)
        .bind(time::to_db(&time::now()))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn recipient(&self, user_id: Uuid) -> anyhow::Result<Option<Recipient>> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT email, name, email_enabled FROM recipients WHERE user_id = $1")
                .bind(user_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(email, name, email_enabled)| Recipient {
            user_id,
            email,
            name,
            email_enabled: email_enabled != 0,
        }))
    }

    /// Forgets a person (`user.erased`): the directory keeps the user id
    /// only, with every channel off, so later notifications of theirs are
    /// `skipped`; past notifications lose the address, the name and the
    /// body, and those not sent yet are `skipped`. `false` when the event
    /// was handled before.
    pub async fn forget(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !inbox::claim(&mut tx, consumer, event_id).await? {
            return Ok(false);
        }
        let now = time::to_db(&time::now());
        sqlx::query(
            "INSERT INTO recipients (user_id, email, name, updated_at, email_enabled) VALUES ($1, '', '', $2, 0)
             ON CONFLICT (user_id) DO UPDATE SET email = '', name = '', email_enabled = 0, updated_at = excluded.updated_at",
        )
        .bind(user_id.to_string())
        .bind(&now)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE notifications SET recipient_email = '', recipient_name = '', body = '',
                status = CASE WHEN status = 'pending' THEN 'skipped' ELSE status END
             WHERE user_id = $1",
        )
        .bind(user_id.to_string())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records whether a recipient takes e-mail, once per event. An error
    /// while the user is not in the directory yet, so that the bus tries
    /// again; `false` for a repeated event.
    pub async fn set_email_enabled(
        &self,
        consumer: &str,
        event_id: Uuid,
        user_id: Uuid,
        enabled: bool,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !inbox::claim(&mut tx, consumer, event_id).await? {
            return Ok(false);
        }
        let done = sqlx::query("UPDATE recipients SET email_enabled = $2 WHERE user_id = $1")
            .bind(user_id.to_string())
            .bind(i64::from(enabled))
            .execute(tx.conn())
            .await?;
        anyhow::ensure!(
            done.rows_affected() == 1,
            "user {user_id} is not in the recipient directory yet"
        );
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a new pending notification in the same transaction as the
    /// inbox claim of its event; `wake` is notified once it commits. `false`
    /// when the event was already processed or its notification exists.
    pub async fn insert_notification(
        &self,
        consumer: &str,
        n: &NewNotification,
        wake: &Arc<Notify>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        if !inbox::claim(&mut tx, consumer, n.event_id).await? {
            return Ok(false);
        }
        let created_at = time::to_db(&n.created_at);
        let inserted = sqlx::query(
            "INSERT INTO notifications (id, user_id, event_id, template, channel, recipient_email,
                recipient_name, subject, body, order_id, status, attempts, next_attempt_at,
                last_error, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, NULL, $12, $12)
             ON CONFLICT (event_id, template) DO NOTHING",
        )
        .bind(n.id.to_string())
        .bind(n.user_id.to_string())
        .bind(n.event_id.to_string())
        .bind(n.template.as_str())
        .bind(EMAIL)
        .bind(&n.recipient.email)
        .bind(&n.recipient.name)
        .bind(&n.subject)
        .bind(&n.body)
        .bind(n.order_id.map(|id| id.to_string()))
        .bind(
            if n.recipient.email_enabled {
                NotificationStatus::Pending
            } else {
                NotificationStatus::Skipped
            }
            .as_str(),
        )
        .bind(&created_at)
        .execute(tx.conn())
        .await?;
        let fresh = inserted.rows_affected() == 1;
        if fresh {
            tx.notify_on_commit(wake);
        }
        tx.commit().await?;
        Ok(fresh)
    }

    /// Pending notifications due at `now`, oldest due first.
    pub async fn due(&self, now: Timestamp, limit: i64) -> anyhow::Result<Vec<Due>> {
        let rows: Vec<DueRow> = sqlx::query_as(
            "SELECT id, user_id, template, recipient_email, recipient_name, subject, body, attempts,
                next_attempt_at
             FROM notifications WHERE status = $1 AND next_attempt_at <= $2
             ORDER BY next_attempt_at, id LIMIT $3",
        )
        .bind(NotificationStatus::Pending.as_str())
        .bind(time::to_db(&now))
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter().map(due_from_row).collect()
    }

    /// The earliest due time of a pending notification.
    pub async fn next_due(&self) -> anyhow::Result<Option<Timestamp>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT MIN(next_attempt_at) FROM notifications WHERE status = $1")
                .bind(NotificationStatus::Pending.as_str())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row
            .and_then(|(t,)| t)
            .map(|t| time::from_db(&t))
            .transpose()?)
    }

    /// Takes a due notification for one attempt by pushing its due time to
    /// `until`, guarded by the due time read: of several dispatchers (one per
    /// replica) exactly one wins, and a dispatcher that dies mid-send leaves
    /// the notification to be tried again once the lease runs out.
    pub async fn lease(&self, due: &Due, until: Timestamp) -> anyhow::Result<bool> {
        let query = sqlx::query(
            "UPDATE notifications SET next_attempt_at = $1
             WHERE id = $2 AND status = $3 AND next_attempt_at = $4",
        )
        .bind(time::to_db(&until))
        .bind(due.message.notification_id.to_string())
        .bind(NotificationStatus::Pending.as_str())
        .bind(&due.next_attempt_at);
        let done = self.db.execute(query).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the outcome of one attempt and, in the same transaction, the
    /// events it causes. `false` when the notification was no longer pending.
    pub async fn record(
        &self,
        id: Uuid,
        attempts: i64,
        outcome: Outcome<'_>,
        events: &[Envelope],
    ) -> anyhow::Result<bool> {
        let now = time::to_db(&time::now());
        let (status, next_attempt_at, error) = match outcome {
            Outcome::Sent => (NotificationStatus::Sent, now.clone(), None),
            Outcome::Retry { retry_at, error } => (
                NotificationStatus::Pending,
                time::to_db(&retry_at),
                Some(error),
            ),
            Outcome::Failed { error } => (NotificationStatus::Failed, now.clone(), Some(error)),
        };
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE notifications SET status = $1, attempts = $2, next_attempt_at = $3,
                last_error = $4, updated_at = $5
             WHERE id = $6 AND status = $7",
        )
        .bind(status.as_str())
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(error)
        .bind(&now)
        .bind(id.to_string())
        .bind(NotificationStatus::Pending.as_str())
        .execute(tx.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        self.outbox.add(&mut tx, events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A user's notifications, newest first.
    pub async fn list_for_user(
        &self,
        user_id: Uuid,
        page: &PageRequest,
    ) -> anyhow::Result<Page<NotificationView>> {
        let limit = i64::from(page.limit) + 1;
        let columns = "id, channel, template, subject, status, order_id, created_at";
        let rows: Vec<ViewRow> = match &page.after {
            Some(after) => {
                sqlx::query_as(&format!(
                    "SELECT {columns} FROM notifications WHERE user_id = $1 AND id < $2
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind(user_id.to_string())
                .bind(after)
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {columns} FROM notifications WHERE user_id = $1
                     ORDER BY id DESC LIMIT $2"
                ))
                .bind(user_id.to_string())
                .bind(limit)
                .fetch_all(self.db.pool())
                .await?
            }
        };
        let items = rows
            .into_iter()
            .map(view_from_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page.limit, |n| n.id.to_string()))
    }

    /// One notification's status and attempts, for tests and inspection.
    pub async fn status(&self, id: Uuid) -> anyhow::Result<Option<(NotificationStatus, i64)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT status, attempts FROM notifications WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|(s, attempts)| {
            NotificationStatus::parse(&s)
                .map(|s| (s, attempts))
                .ok_or_else(|| anyhow::anyhow!("unknown notification status {s:?}"))
        })
        .transpose()
    }
}
