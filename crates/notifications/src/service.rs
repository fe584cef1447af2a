//! Turning events into notifications, and listing them.

use crate::domain::{format_money, NewNotification, NotificationView, Recipient, Template};
use crate::store::NotificationsStore;
use crate::templates::{MessageContext, Templates};
use anyhow::Context as _;
use mercato_contracts::events::{
    OrderCancelled, OrderConfirmed, OrderRefunded, OrderShipped, SubscriptionPastDue, UserErased,
    UserPreferencesChanged, UserRegistered, UserUpdated,
};
use mercato_kernel::auth::Caller;
use mercato_kernel::bus::{EventHandler, Subscription};
use mercato_kernel::event::DomainEvent;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, ApiResult, Envelope};
use std::sync::Arc;
use tokio::sync::Notify;
use uuid::Uuid;

/// The durable consumer of order events.
pub const CONSUMER: &str = "notifications";
/// The durable consumer that keeps the recipient directory. It is separate
/// from [`CONSUMER`] so that an order event waiting (retried) for its
/// customer to reach the directory does not hold up that very registration.
pub const DIRECTORY_CONSUMER: &str = "notifications-directory";

pub struct NotificationsService {
    store: NotificationsStore,
    templates: Templates,
    /// Woken when a notification is created, so the dispatcher need not wait
    /// for its next poll.
    pub(crate) wake: Arc<Notify>,
}

/// What an order event asks to tell whom.
struct OrderNotice {
    template: Template,
    customer_id: Uuid,
    order_id: Uuid,
    total: Option<String>,
    reason: Option<String>,
    subscription_id: Option<Uuid>,
    attempts: Option<i64>,
}

fn order_notice(env: &Envelope) -> anyhow::Result<Option<OrderNotice>> {
    let notice = match env.event_type.as_str() {
        OrderConfirmed::TYPE => {
            let e: OrderConfirmed = env.decode()?;
            OrderNotice {
                template: Template::OrderConfirmed,
                customer_id: e.customer_id,
                order_id: e.order_id,
                total: Some(format_money(&e.total)),
                reason: None,
                subscription_id: None,
                attempts: None,
            }
        }
        OrderCancelled::TYPE => {
            let e: OrderCancelled = env.decode()?;
            OrderNotice {
                template: Template::OrderCancelled,
                customer_id: e.customer_id,
                order_id: e.order_id,
                total: Some(format_money(&e.total)),
                reason: Some(e.reason),
                subscription_id: None,
                attempts: None,
            }
        }
        OrderShipped::TYPE => {
            let e: OrderShipped = env.decode()?;
            OrderNotice {
                template: Template::OrderShipped,
                customer_id: e.customer_id,
                order_id: e.order_id,
                total: None,
                reason: None,
                subscription_id: None,
                attempts: None,
            }
        }
        OrderRefunded::TYPE => {
            let e: OrderRefunded = env.decode()?;
            OrderNotice {
                template: Template::OrderRefunded,
                customer_id: e.customer_id,
                order_id: e.order_id,
                total: Some(format_money(&e.amount)),
                reason: None,
                subscription_id: None,
                attempts: None,
            }
        }
        SubscriptionPastDue::TYPE => {
            let e: SubscriptionPastDue = env.decode()?;
            OrderNotice {
                template: Template::SubscriptionPastDue,
                customer_id: e.customer_id,
                order_id: e.order_id,
                total: None,
                reason: Some(e.reason),
                subscription_id: Some(e.subscription_id),
                attempts: Some(e.failed_attempts),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(notice))
}

impl NotificationsService {
    pub fn new(store: NotificationsStore) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            templates: Templates::new().context("compiling notification templates")?,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn store(&self) -> &NotificationsStore {
        &self.store
    }

    /// The caller's own notifications, newest first.
    pub async fn list(
        &self,
        caller: Caller,
        page: &PageRequest,
    ) -> ApiResult<Page<NotificationView>> {
        Ok(self.store.list_for_user(caller.user_id, page).await?)
    }

    /// Adds a registered user to the directory, or refreshes a user who
    /// changed their profile.
    pub async fn on_user_event(&self, env: &Envelope) -> anyhow::Result<()> {
        if env.is::<UserErased>() {
            let e: UserErased = env.decode()?;
            self.store
                .forget(DIRECTORY_CONSUMER, env.id, e.user_id)
                .await?;
            return Ok(());
        }
        if env.is::<UserPreferencesChanged>() {
            let e: UserPreferencesChanged = env.decode()?;
            self.store
                .set_email_enabled(DIRECTORY_CONSUMER, env.id, e.user_id, e.email)
                .await?;
            return Ok(());
        }
        let recipient = if env.is::<UserUpdated>() {
            let e: UserUpdated = env.decode()?;
            Recipient {
                user_id: e.user_id,
                email: e.email,
                name: e.name,
                email_enabled: true,
            }
        } else {
            let e: UserRegistered = env.decode()?;
            Recipient {
                user_id: e.user_id,
                email: e.email,
                name: e.name,
                email_enabled: true,
            }
        };
        if self
            .store
            .upsert_recipient(DIRECTORY_CONSUMER, env.id, &recipient)
            .await?
        {
            tracing::debug!(user_id = %recipient.user_id, "recipient added to the directory");
        }
        Ok(())
    }

    /// Creates the one notification an order event causes. Errors while the
    /// customer is not in the directory yet, so that the bus tries again.
    pub async fn on_order_event(&self, env: &Envelope) -> anyhow::Result<()> {
        let Some(notice) = order_notice(env)? else {
            return Ok(());
        };
        let recipient = self
            .store
            .recipient(notice.customer_id)
            .await?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "customer {} of order {} is not in the recipient directory yet",
                    notice.customer_id,
                    notice.order_id
                )
            })?;
        let rendered = self.templates.render(
            notice.template,
            &MessageContext {
                name: recipient.name.clone(),
                order_id: notice.order_id.to_string(),
                total: notice.total,
                reason: notice.reason,
                subscription_id: notice.subscription_id.map(|id| id.to_string()),
                attempts: notice.attempts,
            },
        )?;
        let n = NewNotification {
            id: id::new_id(),
            user_id: recipient.user_id,
            event_id: env.id,
            template: notice.template,
            recipient,
            subject: rendered.subject,
            body: rendered.body,
            order_id: Some(notice.order_id),
            created_at: time::now(),
        };
        if self
            .store
            .insert_notification(CONSUMER, &n, &self.wake)
            .await?
        {
            metrics::counter!("mercato_notifications_created_total", "template" => n.template.as_str())
                .increment(1);
            tracing::info!(notification_id = %n.id, user_id = %n.user_id, template = n.template.as_str(), "notification created");
        }
        Ok(())
    }

    /// The durable consumers this context needs on the bus.
    pub fn subscriptions(self: &Arc<Self>) -> Vec<Subscription> {
        vec![
            Subscription {
                consumer: DIRECTORY_CONSUMER.to_owned(),
                per_instance: false,
                event_types: vec![
                    UserRegistered::TYPE.to_owned(),
                    UserUpdated::TYPE.to_owned(),
                    UserPreferencesChanged::TYPE.to_owned(),
                    UserErased::TYPE.to_owned(),
                ],
                handler: Arc::new(DirectoryHandler(self.clone())),
            },
            Subscription {
                consumer: CONSUMER.to_owned(),
                per_instance: false,
                event_types: vec![
                    OrderConfirmed::TYPE.to_owned(),
                    OrderCancelled::TYPE.to_owned(),
                    OrderShipped::TYPE.to_owned(),
                    OrderRefunded::TYPE.to_owned(),
                    SubscriptionPastDue::TYPE.to_owned(),
                ],
                handler: Arc::new(OrderEventsHandler(self.clone())),
            },
        ]
    }
}

struct DirectoryHandler(Arc<NotificationsService>);

#[async_trait::async_trait]
impl EventHandler for DirectoryHandler {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        self.0.on_user_event(event).await
    }
}

struct OrderEventsHandler(Arc<NotificationsService>);

#[async_trait::async_trait]
impl EventHandler for OrderEventsHandler {
    async fn handle(&self, event: &Envelope) -> anyhow::Result<()> {
        self.0.on_order_event(event).await
    }
}
