use crate::support::{pending_events, stores};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::PageQuery;
use mercato_notifications::domain::{NewNotification, NotificationStatus, Recipient, Template};
use mercato_notifications::store::{NotificationsStore, Outcome};
use std::sync::Arc;
use tokio::sync::Notify;

fn notification(recipient: &Recipient, event_id: uuid::Uuid) -> NewNotification {
    NewNotification {
        id: mercato_kernel::id::new_id(),
        user_id: recipient.user_id,
        event_id,
        template: Template::OrderConfirmed,
        recipient: recipient.clone(),
        subject: "Your order".into(),
        body: "Thank you".into(),
        order_id: Some(mercato_kernel::id::new_id()),
        created_at: mercato_kernel::time::now(),
    }
}

#[tokio::test]
async fn one_notification_per_event_leased_once_and_recorded_with_its_event() {
    for s in stores(
        mercato_notifications::NAME,
        &mercato_notifications::MIGRATIONS,
    )
    .await
    {
        let store = NotificationsStore::new(s.db.clone(), Outbox::new());
        let wake = Arc::new(Notify::new());
        let ada = Recipient {
            user_id: mercato_kernel::id::new_id(),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            email_enabled: true,
        };
        assert!(store
            .upsert_recipient("dir", mercato_kernel::id::new_id(), &ada)
            .await
            .expect("upsert"));
        assert_eq!(
            store.recipient(ada.user_id).await.expect("read"),
            Some(ada.clone()),
            "{:?}",
            s.backend
        );

        let event = mercato_kernel::id::new_id();
        let first = notification(&ada, event);
        assert!(store
            .insert_notification("n", &first, &wake)
            .await
            .expect("insert"));
        // The same event again, through the inbox or under another id, adds nothing.
        assert!(!store
            .insert_notification("n", &first, &wake)
            .await
            .expect("insert"));
        assert!(!store
            .insert_notification("other", &notification(&ada, event), &wake)
            .await
            .expect("insert"));

        let due = store
            .due(mercato_kernel::time::now(), 10)
            .await
            .expect("due");
        assert_eq!(due.len(), 1, "{:?}", s.backend);
        let until = mercato_kernel::time::now() + chrono::Duration::seconds(30);
        assert!(store.lease(&due[0], until).await.expect("lease"));
        assert!(
            !store.lease(&due[0], until).await.expect("lease"),
            "a lease is taken once"
        );
        assert!(store
            .due(mercato_kernel::time::now(), 10)
            .await
            .expect("due")
            .is_empty());

        let sent = mercato_kernel::Envelope::new(
            "notifications",
            first.id.to_string(),
            &mercato_contracts::events::NotificationSent {
                notification_id: first.id,
                user_id: ada.user_id,
                template: "order_confirmed".into(),
                channel: "email".into(),
            },
        )
        .expect("event");
        assert!(store
            .record(first.id, 1, Outcome::Sent, std::slice::from_ref(&sent))
            .await
            .expect("record"));
        assert!(
            !store
                .record(first.id, 2, Outcome::Sent, &[sent])
                .await
                .expect("record"),
            "recorded once"
        );
        assert_eq!(
            store.status(first.id).await.expect("status"),
            Some((NotificationStatus::Sent, 1))
        );
        assert_eq!(
            pending_events(&s.db).await,
            vec!["notification.sent"],
            "{:?}",
            s.backend
        );

        let page = store
            .list_for_user(ada.user_id, &PageQuery::default().validate().expect("page"))
            .await
            .expect("list");
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].id, first.id);
    }
}
