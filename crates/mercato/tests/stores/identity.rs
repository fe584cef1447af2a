use crate::support::{pending_events, stores};
use mercato_identity::domain::{Email, User};
use mercato_identity::store::{IdentityStore, InsertUserError};
use mercato_kernel::auth::Role;
use mercato_kernel::outbox::Outbox;

fn user(email: &str) -> User {
    User {
        id: mercato_kernel::id::new_id(),
        email: email.into(),
        name: "Ada".into(),
        role: Role::Seller,
        disabled: false,
        created_at: mercato_kernel::time::now(),
    }
}

#[tokio::test]
async fn users_round_trip_and_emails_are_unique() {
    for s in stores(mercato_identity::NAME, &mercato_identity::MIGRATIONS).await {
        let store = IdentityStore::new(s.db.clone(), Outbox::new());
        let ada = user("ada@example.com");
        store.insert_user(&ada, "hash").await.expect("insert");
        let dup = store.insert_user(&user("ada@example.com"), "hash2").await;
        assert!(
            matches!(dup, Err(InsertUserError::DuplicateEmail)),
            "{:?}: {dup:?}",
            s.backend
        );

        let (found, hash) = store
            .by_email(&Email::parse("ada@example.com").expect("email"))
            .await
            .expect("query")
            .expect("found");
        assert_eq!(found, ada, "{:?}", s.backend);
        assert_eq!(hash, "hash");
        assert_eq!(store.by_id(ada.id).await.expect("query"), Some(ada.clone()));
        assert_eq!(store.count().await.expect("count"), 1);
        // The event was written with the user, and only once.
        assert_eq!(
            pending_events(&s.db).await,
            vec!["user.registered"],
            "{:?}",
            s.backend
        );
    }
}

/// A NUL character is text to SQLite and an error to PostgreSQL: there it is
/// the client's mistake (422), never a server error.
#[tokio::test]
async fn a_nul_character_in_text_is_a_client_error() {
    for s in stores(mercato_identity::NAME, &mercato_identity::MIGRATIONS).await {
        let store = IdentityStore::new(s.db.clone(), Outbox::new());
        let mut nul = user(&format!("nul-{}@example.com", mercato_kernel::id::new_id()));
        nul.name = "A\u{0}B".into();
        match store.insert_user(&nul, "hash").await {
            Ok(()) => {}
            Err(InsertUserError::Store(e)) => {
                let api = mercato_kernel::ApiError::from(e);
                assert_eq!(api.status.as_u16(), 422, "{:?}: {api}", s.backend);
            }
            Err(other) => panic!("{:?}: {other:?}", s.backend),
        }
    }
}
