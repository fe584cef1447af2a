//! Delivery: a background task that sends pending notifications through a
//! [`Channel`], retries failures with backoff and jitter, and gives up after
//! a bounded number of attempts. Each outcome and its event
//! (`notification.sent`, `notification.failed`) commit together.

use crate::channel::{Channel, SendError};
use crate::service::NotificationsService;
use crate::store::{Due, Outcome};
use mercato_contracts::events::{NotificationFailed, NotificationSent};
use mercato_kernel::resilience::backoff;
use mercato_kernel::{time, Envelope};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Attempts before a notification is `failed`.
    pub max_attempts: u32,
    /// First retry pause; it doubles per attempt, with jitter, up to `retry_cap`.
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How often due notifications are looked for when nothing wakes the task.
    pub poll_interval: Duration,
    /// Bound on one send, on top of the channel's own time-outs.
    pub send_timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            send_timeout: Duration::from_secs(30),
        }
    }
}

const BATCH: i64 = 32;

impl NotificationsService {
    /// Delivers notifications until `shutdown`.
    pub fn spawn_dispatcher(
        self: &Arc<Self>,
        channel: Arc<dyn Channel>,
        config: DispatcherConfig,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            while !shutdown.is_cancelled() {
                let pause = match service.dispatch_due(channel.as_ref(), &config).await {
                    Ok(n) if n as i64 >= BATCH => continue,
                    Ok(_) => {
                        failures = 0;
                        config.poll_interval
                    }
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %format!("{e:#}"), "notification dispatch failed; will retry");
                        backoff(failures, Duration::from_millis(100), Duration::from_secs(5))
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = service.wake.notified() => {}
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    /// Makes one attempt at every notification due now; returns how many
    /// were due.
    pub async fn dispatch_due(
        &self,
        channel: &dyn Channel,
        config: &DispatcherConfig,
    ) -> anyhow::Result<usize> {
        let due = self.store().due(time::now(), BATCH).await?;
        let n = due.len();
        for d in due {
            self.attempt(channel, config, d).await?;
        }
        Ok(n)
    }

    async fn attempt(
        &self,
        channel: &dyn Channel,
        config: &DispatcherConfig,
        due: Due,
    ) -> anyhow::Result<()> {
        let lease = config.send_timeout + Duration::from_secs(30);
        let until = time::now() + chrono::Duration::from_std(lease)?;
        if !self.store().lease(&due, until).await? {
            // Another dispatcher took it.
            return Ok(());
        }
        let m = &due.message;
        let attempts = due.attempts + 1;
        let result = match tokio::time::timeout(config.send_timeout, channel.send(m)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::transient(format!(
                "sending timed out after {:?}",
                config.send_timeout
            ))),
        };
        let id = m.notification_id;
        let (outcome, events, label) = match &result {
            Ok(()) => {
                let event = Envelope::new(
                    crate::NAME,
                    id.to_string(),
                    &NotificationSent {
                        notification_id: id,
                        user_id: m.user_id,
                        template: m.template.clone(),
                        channel: channel.name().to_owned(),
                    },
                )?;
                (Outcome::Sent, vec![event], "sent")
            }
            Err(e) if e.permanent || attempts >= i64::from(config.max_attempts.max(1)) => {
                let event = Envelope::new(
                    crate::NAME,
                    id.to_string(),
                    &NotificationFailed {
                        notification_id: id,
                        user_id: m.user_id,
                        template: m.template.clone(),
                        error: e.message.clone(),
                    },
                )?;
                tracing::error!(notification_id = %id, attempts, error = %e, "notification failed for good");
                (Outcome::Failed { error: &e.message }, vec![event], "failed")
            }
            Err(e) => {
                let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
                let pause = backoff(attempt, config.retry_base, config.retry_cap);
                let retry_at = time::now() + chrono::Duration::from_std(pause)?;
                tracing::warn!(notification_id = %id, attempts, retry_in = ?pause, error = %e, "notification not delivered; will retry");
                (
                    Outcome::Retry {
                        retry_at,
                        error: &e.message,
                    },
                    Vec::new(),
                    "retry",
                )
            }
        };
        self.store().record(id, attempts, outcome, &events).await?;
        metrics::counter!("mercato_notification_attempts_total", "outcome" => label).increment(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::LocalSink;
    use crate::domain::{NotificationStatus, OutgoingMessage};
    use crate::store::NotificationsStore;
    use async_trait::async_trait;
    use mercato_contracts::events::{
        OrderCancelled, OrderConfirmed, OrderRefunded, OrderShipped, UserRegistered,
    };
    use mercato_kernel::auth::{Caller, Role};
    use mercato_kernel::db::Db;
    use mercato_kernel::outbox::{Outbox, PLATFORM_MIGRATIONS};
    use mercato_kernel::page::PageQuery;
    use mercato_kernel::{Currency, Money};
    use std::sync::atomic::{AtomicU32, Ordering};
    use uuid::Uuid;

    async fn service(dir: &tempfile::TempDir) -> Arc<NotificationsService> {
        let db = Db::sqlite_file(&dir.path().join("notifications.db"))
            .await
            .expect("db");
        db.migrate("platform", &PLATFORM_MIGRATIONS)
            .await
            .expect("platform migrations");
        db.migrate(crate::NAME, &crate::MIGRATIONS)
            .await
            .expect("migrations");
        Arc::new(
            NotificationsService::new(NotificationsStore::new(db, Outbox::new())).expect("service"),
        )
    }

    async fn registered(s: &NotificationsService) -> Uuid {
        register(s, Uuid::now_v7()).await
    }

    async fn register(s: &NotificationsService, user_id: Uuid) -> Uuid {
        let env = Envelope::new(
            "identity",
            user_id.to_string(),
            &UserRegistered {
                user_id,
                email: "ada@example.com".into(),
                name: "Ada".into(),
                role: Role::Customer,
            },
        )
        .expect("envelope");
        s.on_user_event(&env).await.expect("registered");
        user_id
    }

    fn confirmed(customer_id: Uuid) -> Envelope {
        let order_id = Uuid::now_v7();
        Envelope::new(
            "orders",
            order_id.to_string(),
            &OrderConfirmed {
                order_id,
                customer_id,
                items: vec![],
                total: Money::new(1999, Currency::parse("EUR").expect("currency")),
            },
        )
        .expect("envelope")
    }

    async fn list(s: &NotificationsService, user_id: Uuid) -> Vec<crate::domain::NotificationView> {
        let caller = Caller {
            user_id,
            role: Role::Customer,
        };
        let page = PageQuery::default().validate().expect("page");
        s.list(caller, &page).await.expect("list").items
    }

    async fn outbox_types(s: &NotificationsService) -> Vec<String> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT event_type FROM outbox ORDER BY seq")
            .fetch_all(s.store().db().pool())
            .await
            .expect("outbox");
        rows.into_iter().map(|r| r.0).collect()
    }

    fn fast(max_attempts: u32) -> DispatcherConfig {
        DispatcherConfig {
            max_attempts,
            retry_base: Duration::from_millis(1),
            retry_cap: Duration::from_millis(2),
            poll_interval: Duration::from_millis(10),
            send_timeout: Duration::from_secs(1),
        }
    }

    /// Fails every send, transiently or for good.
    struct Broken {
        permanent: bool,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Channel for Broken {
        fn name(&self) -> &'static str {
            "email"
        }
        async fn send(&self, _: &OutgoingMessage) -> Result<(), SendError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Err(SendError {
                permanent: self.permanent,
                message: "mail server said no".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_redelivered_event_makes_one_notification() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = service(&dir).await;
        let user = registered(&s).await;
        let env = confirmed(user);
        for _ in 0..3 {
            s.on_order_event(&env).await.expect("handled");
        }
        let items = list(&s, user).await;
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].template, "order_confirmed");
        assert_eq!(items[0].status, NotificationStatus::Pending);
        assert_eq!(items[0].channel, "email");
        assert!(items[0].subject.contains(&env.subject));
        assert!(list(&s, Uuid::now_v7()).await.is_empty());
    }

    #[tokio::test]
    async fn an_unknown_customer_is_an_error_until_registered() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = service(&dir).await;
        let user = Uuid::now_v7();
        let env = confirmed(user);
        assert!(s.on_order_event(&env).await.is_err());
        // Nothing was claimed: once the customer is known the same event works.
        register(&s, user).await;
        s.on_order_event(&env).await.expect("handled");
        let items = list(&s, user).await;
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].order_id.map(|o| o.to_string()),
            Some(env.subject.clone())
        );
    }

    #[tokio::test]
    async fn each_order_event_has_its_template() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = service(&dir).await;
        let user = registered(&s).await;
        let order_id = Uuid::now_v7();
        let eur = |amount| Money::new(amount, Currency::parse("EUR").expect("currency"));
        let events = [
            Envelope::new(
                "orders",
                order_id.to_string(),
                &OrderCancelled {
                    order_id,
                    customer_id: user,
                    reason: "payment_failed".into(),
                    total: eur(500),
                },
            ),
            Envelope::new(
                "orders",
                order_id.to_string(),
                &OrderShipped {
                    order_id,
                    customer_id: user,
                },
            ),
            Envelope::new(
                "orders",
                order_id.to_string(),
                &OrderRefunded {
                    order_id,
                    customer_id: user,
                    amount: eur(500),
                },
            ),
        ];
        for env in events {
            s.on_order_event(&env.expect("envelope"))
                .await
                .expect("handled");
        }
        let templates: Vec<String> = list(&s, user)
            .await
            .into_iter()
            .map(|n| n.template)
            .collect();
        assert_eq!(
            templates,
            vec!["order_refunded", "order_shipped", "order_cancelled"]
        );
    }

    #[tokio::test]
    async fn a_delivered_notification_is_sent_once_and_announced() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = service(&dir).await;
        let user = registered(&s).await;
        s.on_order_event(&confirmed(user)).await.expect("handled");
        let sink = LocalSink::in_data_dir(dir.path()).expect("sink");
        assert_eq!(
            s.dispatch_due(&sink, &fast(3)).await.expect("dispatched"),
            1
        );
        assert_eq!(
            s.dispatch_due(&sink, &fast(3)).await.expect("dispatched"),
            0
        );
        let items = list(&s, user).await;
        assert_eq!(items[0].status, NotificationStatus::Sent);
        let lines = std::fs::read_to_string(sink.path()).expect("sink file");
        assert_eq!(lines.lines().count(), 1);
        assert!(lines.contains(&items[0].id.to_string()));
        assert_eq!(outbox_types(&s).await, vec!["notification.sent"]);
    }

    #[tokio::test]
    async fn transient_failures_are_retried_up_to_the_limit_then_failed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = service(&dir).await;
        let user = registered(&s).await;
        s.on_order_event(&confirmed(user)).await.expect("handled");
        let channel = Arc::new(Broken {
            permanent: false,
            calls: AtomicU32::new(0),
        });
        let shutdown = CancellationToken::new();
        let task = s.spawn_dispatcher(channel.clone(), fast(3), shutdown.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while list(&s, user).await[0].status == NotificationStatus::Pending {
            assert!(tokio::time::Instant::now() < deadline, "never failed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("dispatcher stops on shutdown")
            .expect("dispatcher task");
        let id = list(&s, user).await[0].id;
        assert_eq!(
            s.store().status(id).await.expect("status"),
            Some((NotificationStatus::Failed, 3))
        );
        assert_eq!(channel.calls.load(Ordering::SeqCst), 3);
        assert_eq!(outbox_types(&s).await, vec!["notification.failed"]);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = service(&dir).await;
        let user = registered(&s).await;
        s.on_order_event(&confirmed(user)).await.expect("handled");
        let channel = Broken {
            permanent: true,
            calls: AtomicU32::new(0),
        };
        s.dispatch_due(&channel, &fast(5))
            .await
            .expect("dispatched");
        let id = list(&s, user).await[0].id;
        assert_eq!(
            s.store().status(id).await.expect("status"),
            Some((NotificationStatus::Failed, 1))
        );
        assert_eq!(channel.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_leased_notification_is_not_sent_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let s = service(&dir).await;
        let user = registered(&s).await;
        s.on_order_event(&confirmed(user)).await.expect("handled");
        let due = s.store().due(time::now(), 10).await.expect("due");
        assert_eq!(due.len(), 1);
        let until = time::now() + chrono::Duration::seconds(60);
        assert!(s.store().lease(&due[0], until).await.expect("lease"));
        // A second dispatcher holding the same stale read loses.
        assert!(!s.store().lease(&due[0], until).await.expect("lease"));
        assert!(s
            .store()
            .due(time::now(), 10)
            .await
            .expect("due")
            .is_empty());
    }
}
