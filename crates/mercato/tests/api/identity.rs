use crate::support::{unique, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// What `TestApp::register` signs users up with.
const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn register_returns_the_user_and_a_bearer_token() {
    let app = TestApp::spawn().await;
    let email = format!("{}@Example.com", unique("ada"));
    let r = app
        .post(
            "/auth/register",
            None,
            json!({"email": email, "password": "12345678", "name": "Ada"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body["expires_in"].as_i64().unwrap_or(0) > 0);
    let user = &r.body["user"];
    assert_eq!(user["email"], email.to_lowercase());
    assert_eq!(user["name"], "Ada");
    assert_eq!(user["role"], "customer");
    assert!(user["id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(user["created_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    let token = r.body["access_token"].as_str().expect("token");
    let me = app.get("/me", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body, *user);
}

#[tokio::test]
async fn sellers_can_register_but_admins_cannot() {
    let app = TestApp::spawn().await;
    let seller = app
        .post("/auth/register", None, json!({"email": format!("{}@x.io", unique("s")), "password": "12345678", "name": "S", "role": "seller"}))
        .await;
    assert_eq!(seller.status, StatusCode::CREATED);
    assert_eq!(seller.body["user"]["role"], "seller");
    let admin = app
        .post("/auth/register", None, json!({"email": format!("{}@x.io", unique("a")), "password": "12345678", "name": "A", "role": "admin"}))
        .await;
    assert_eq!(admin.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(admin.code(), "validation_failed");
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_its_case() {
    let app = TestApp::spawn().await;
    let email = format!("{}@example.com", unique("dup"));
    let body = json!({"email": email, "password": "12345678", "name": "One"});
    assert_eq!(
        app.post("/auth/register", None, body).await.status,
        StatusCode::CREATED
    );
    let again = app
        .post(
            "/auth/register",
            None,
            json!({"email": email.to_uppercase(), "password": "87654321", "name": "Two"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "email_taken");
}

#[tokio::test]
async fn short_passwords_and_malformed_emails_are_422() {
    let app = TestApp::spawn().await;
    let short = app
        .post(
            "/auth/register",
            None,
            json!({"email": format!("{}@x.io", unique("p")), "password": "1234567", "name": "P"}),
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    for email in ["not-an-email", "a@b", "@x.io", ""] {
        let r = app
            .post(
                "/auth/register",
                None,
                json!({"email": email, "password": "12345678", "name": "P"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{email:?}");
        assert_eq!(r.code(), "validation_failed");
    }
}

#[tokio::test]
async fn sign_up_takes_exactly_what_the_document_describes() {
    let app = TestApp::spawn().await;
    let register = |email: String, name: String| {
        let app = &app;
        async move {
            app.post(
                "/auth/register",
                None,
                json!({"email": email, "password": "12345678", "name": name}),
            )
            .await
        }
    };
    // Addresses outside the documented pattern, names over 200 characters
    // as sent, or only white space.
    for (email, name) in [
        (format!(" {}@example.com", unique("sp")), "P".to_owned()),
        (format!("{}@example.com ", unique("sp")), "P".to_owned()),
        (format!("{}\u{e9}@example.com", unique("u")), "P".to_owned()),
        (format!("{}@ex_ample.com", unique("u")), "P".to_owned()),
        (format!("{}@-example.com", unique("u")), "P".to_owned()),
        (format!("{}@example.com", unique("n")), " ".to_owned()),
        (
            format!("{}@example.com", unique("n")),
            format!(" {} ", "n".repeat(199)),
        ),
    ] {
        let r = register(email.clone(), name.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{email:?} {name:?}"
        );
        assert_eq!(r.code(), "validation_failed");
    }
    let r = register(
        format!("O'Neil.{}+shop@Mail.Example.co.uk", unique("ok")),
        format!(" {} ", "n".repeat(198)),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["user"]["name"], "n".repeat(198));
    let role = app
        .post(
            "/auth/register",
            None,
            json!({"email": format!("{}@example.com", unique("r")), "password": "12345678", "name": "R", "role": null}),
        )
        .await;
    assert_eq!(role.status, StatusCode::CREATED, "{:?}", role.body);
    assert_eq!(role.body["user"]["role"], "customer");
}

#[tokio::test]
async fn login_works_and_wrong_credentials_look_the_same_for_unknown_emails() {
    let app = TestApp::spawn().await;
    let user = app.register("customer").await;
    let ok = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body["user"]["id"], user.id.as_str());
    assert_eq!(ok.body["token_type"], "Bearer");

    let wrong = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": "wrong password"}),
        )
        .await;
    let unknown = app
        .post(
            "/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn me_needs_a_valid_token() {
    let app = TestApp::spawn().await;
    let none = app.get("/me", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.code(), "unauthorized");
    let garbage = app.get("/me", Some("not.a.token")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let basic = app
        .request(
            reqwest::Method::GET,
            "/me",
            None,
            None,
            &[("authorization", "Basic YTpi")],
        )
        .await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_missing_fields_422() {
    let app = TestApp::spawn().await;
    let r = app
        .request(
            reqwest::Method::POST,
            "/auth/register",
            None,
            None,
            &[("content-type", "application/json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let broken = app
        .client
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    let missing = app
        .post("/auth/register", None, json!({"email": "x@y.io"}))
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.code(), "validation_failed");
}

/// Ten failed sign-ins for one address within 15 minutes (the default)
/// lock that address out with 429 and `Retry-After`, the right password
/// included, whatever the client; an address no account has is answered
/// exactly alike, so the lock-out tells nothing of who has an account.
#[tokio::test]
async fn repeated_failed_sign_ins_lock_the_address_out_alike_for_unknown_ones() {
    let app = TestApp::spawn().await;
    let user = app.register("customer").await;
    let nobody = format!("{}@example.com", crate::support::unique("nobody"));
    let attempt = |email: String, password: &'static str| {
        let app = &app;
        async move {
            app.post(
                "/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await
        }
    };
    for _ in 0..10 {
        let known = attempt(user.email.clone(), "wrong password").await;
        let unknown = attempt(nobody.clone(), "wrong password").await;
        assert_eq!(known.status, StatusCode::UNAUTHORIZED);
        assert_eq!(known.body, unknown.body);
    }
    let locked = attempt(user.email.clone(), "correct horse battery").await;
    let locked_unknown = attempt(nobody.clone(), "correct horse battery").await;
    for r in [&locked, &locked_unknown] {
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", r.body);
        assert_eq!(r.code(), "too_many_attempts");
        let retry: u64 = r.headers["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((1..=900).contains(&retry), "{retry}");
    }
    assert_eq!(locked.body, locked_unknown.body);
    // The address as typed in another case is the same address.
    let shouted = attempt(user.email.to_uppercase(), "correct horse battery").await;
    assert_eq!(shouted.status, StatusCode::TOO_MANY_REQUESTS);
    // Another account is not affected.
    let other = app.register("customer").await;
    let fine = attempt(other.email.clone(), "correct horse battery").await;
    assert_eq!(fine.status, StatusCode::OK);
}

#[tokio::test]
async fn a_successful_sign_in_clears_the_count_and_the_window_reopens() {
    let app = TestApp::spawn_with(|s| {
        s.auth.login_max_failures = 3;
        s.auth.login_failure_window_secs = 2;
    })
    .await;
    if app.contexts.is_none() {
        return; // an external server has its own settings
    }
    let user = app.register("customer").await;
    let login = |password: &'static str| {
        app.post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": password}),
        )
    };
    for _ in 0..2 {
        assert_eq!(
            login("wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(login("correct horse battery").await.status, StatusCode::OK);
    // The count started over: three more failures before the lock.
    for _ in 0..3 {
        assert_eq!(
            login("wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login("correct horse battery").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(login("correct horse battery").await.status, StatusCode::OK);
}

#[tokio::test]
async fn users_change_their_name_and_with_the_current_one_their_password() {
    let app = TestApp::spawn().await;
    let user = app.register("customer").await;
    let r = app
        .patch("/me", Some(&user.token), json!({"name": "  Ada King  "}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["name"], "Ada King");
    assert_eq!(
        app.get("/me", Some(&user.token)).await.body["name"],
        "Ada King"
    );

    let r = app
        .patch(
            "/me",
            Some(&user.token),
            json!({"password": "a new long password"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "current_password_required");
    let r = app
        .patch(
            "/me",
            Some(&user.token),
            json!({"password": "a new long password", "current_password": "not it at all"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "invalid_credentials");
    let r = app
        .patch(
            "/me",
            Some(&user.token),
            json!({"password": "short", "current_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .patch(
            "/me",
            Some(&user.token),
            json!({"password": "a new long password", "current_password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let old = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": "a new long password"}),
        )
        .await;
    assert_eq!(new.status, StatusCode::OK, "{:?}", new.body);
    let r = app.patch("/me", None, json!({"name": "X"})).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Preferences: e-mail on until switched off; a channel switched off is not
/// used, and the history shows its notification as `skipped`.
#[tokio::test]
async fn a_channel_switched_off_is_not_used() {
    use crate::orders::{add_to_cart, checkout, settled, stocked_sku};
    let app = TestApp::spawn().await;
    let customer = app.register("customer").await;
    let r = app.get("/me/preferences", Some(&customer.token)).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"notifications": {"email": true, "sms": false, "push": false}, "marketing": false})
    );
    let off =
        json!({"notifications": {"email": false, "sms": false, "push": true}, "marketing": true});
    let r = app
        .put("/me/preferences", Some(&customer.token), off.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, off);
    assert_eq!(
        app.get("/me/preferences", Some(&customer.token)).await.body,
        off
    );
    let partial = app
        .put(
            "/me/preferences",
            Some(&customer.token),
            json!({"marketing": true}),
        )
        .await;
    assert_eq!(partial.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/me/preferences", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // The preference travels to notifications as an event of its own,
    // beside the order's: give it a moment to arrive first.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (_, sku) = stocked_sku(&app, 5).await;
    add_to_cart(&app, &customer, &sku, 1).await;
    let r = checkout(&app, &customer, "tok_visa", &unique("pref")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(settled(&app, &customer, &id).await["status"], "confirmed");
    let skipped = app
        .eventually(
            "the confirmation, skipped",
            std::time::Duration::from_secs(15),
            || async {
                let r = app.get("/notifications", Some(&customer.token)).await;
                r.body["items"].as_array().and_then(|items| {
                    items
                        .iter()
                        .find(|n| {
                            n["order_id"] == id.as_str() && n["template"] == "order_confirmed"
                        })
                        .cloned()
                })
            },
        )
        .await;
    assert_eq!(skipped["status"], "skipped", "{skipped}");
}

#[tokio::test]
async fn users_keep_addresses_and_one_is_the_default() {
    let app = TestApp::spawn().await;
    let user = app.register("customer").await;
    let other = app.register("customer").await;
    let home = json!({"name": "Ada", "line1": "1 Main St", "city": "London", "postal_code": "N1", "country": "GB"});
    let r = app
        .post("/me/addresses", Some(&user.token), home.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["default"], true, "the first is the default");
    assert_eq!(r.body["city"], "London");
    let first = r.body["id"].as_str().expect("id").to_owned();
    let mut work = home.clone();
    work["line1"] = json!("2 Office Rd");
    work["default"] = json!(true);
    let r = app.post("/me/addresses", Some(&user.token), work).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let second = r.body["id"].as_str().expect("id").to_owned();
    let list = app.get("/me/addresses", Some(&user.token)).await;
    assert_eq!(list.status, StatusCode::OK);
    let items = list.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], second.as_str(), "the new default first");
    assert_eq!(items[1]["default"], false);

    let mut bad = home.clone();
    bad["city"] = json!("   ");
    let r = app.post("/me/addresses", Some(&user.token), bad).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .delete(&format!("/me/addresses/{first}"), Some(&other.token))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "not another user's");
    let r = app
        .delete(&format!("/me/addresses/{first}"), Some(&user.token))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let list = app.get("/me/addresses", Some(&user.token)).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get("/me/addresses", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn admins_find_users_and_a_disabled_account_is_shut_out() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let user = app.register("customer").await;
    let seller = app.register("seller").await;

    let q = user
        .email
        .split('@')
        .next()
        .unwrap_or_default()
        .to_uppercase();
    let found = app
        .get(
            &format!("/admin/users?role=customer&q={q}"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{:?}", found.body);
    let items = found.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], user.id.as_str());
    assert_eq!(items[0]["disabled"], false);
    let sellers = app
        .get(
            &format!("/admin/users?role=seller&q={q}"),
            Some(&admin.token),
        )
        .await;
    assert_eq!(sellers.body["items"].as_array().map(Vec::len), Some(0));
    let by_user = app.get("/admin/users", Some(&user.token)).await;
    assert_eq!(by_user.status, StatusCode::FORBIDDEN);
    let bad_role = app.get("/admin/users?role=owner", Some(&admin.token)).await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);

    let path = format!("/admin/users/{}", user.id);
    let array = app
        .patch(&path, Some(&admin.token), json!([null, true]))
        .await;
    assert_eq!(
        (array.status, array.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        "the body is an object, not its fields in order"
    );
    let by_seller = app
        .patch(&path, Some(&seller.token), json!({"disabled": true}))
        .await;
    assert_eq!(by_seller.status, StatusCode::FORBIDDEN);
    let disabled = app
        .patch(&path, Some(&admin.token), json!({"disabled": true}))
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{:?}", disabled.body);
    assert_eq!(disabled.body["disabled"], true);
    // Every token of the account is refused, in every context, within the
    // access cache's time.
    app.eventually(
        "the token to be refused",
        Duration::from_secs(10),
        || async {
            let me = app.get("/me", Some(&user.token)).await;
            let cart = app.get("/cart", Some(&user.token)).await;
            (me.status == StatusCode::UNAUTHORIZED && cart.status == StatusCode::UNAUTHORIZED)
                .then_some(())
        },
    )
    .await;
    let login = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (login.status, login.code()),
        (StatusCode::FORBIDDEN, "account_disabled")
    );
    let wrong = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "reveals nothing");

    // Enabled again with another role: tokens of the old role stay refused.
    let changed = app
        .patch(
            &path,
            Some(&admin.token),
            json!({"disabled": false, "role": "seller"}),
        )
        .await;
    assert_eq!(changed.body["role"], "seller");
    let fresh = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{:?}", fresh.body);
    let fresh_token = fresh.body["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    app.eventually("the new token to work", Duration::from_secs(10), || async {
        let me = app.get("/me", Some(&fresh_token)).await;
        let old = app.get("/me", Some(&user.token)).await;
        (me.status == StatusCode::OK && old.status == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    let me_admin = format!("/admin/users/{}", admin.id);
    let locked = app
        .patch(&me_admin, Some(&admin.token), json!({"disabled": true}))
        .await;
    assert_eq!(
        (locked.status, locked.code()),
        (StatusCode::CONFLICT, "cannot_lock_self_out")
    );
    let nobody = app
        .patch(
            &format!("/admin/users/{}", uuid::Uuid::now_v7()),
            Some(&admin.token),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(nobody.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_erased_account_leaves_nothing_personal_and_its_tokens_stop() {
    use crate::orders::{add_to_cart, checkout, settled, stocked_sku};
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let (_, sku) = stocked_sku(&app, 5).await;
    let user = app.register("customer").await;
    let home = json!({"name": "Ada", "line1": "1 Main St", "city": "London", "postal_code": "N1", "country": "GB"});
    let saved = app.post("/me/addresses", Some(&user.token), home).await;
    assert_eq!(saved.status, StatusCode::CREATED);
    add_to_cart(&app, &user, &sku, 1).await;
    let placed = checkout(&app, &user, "tok_visa", &unique("k")).await;
    assert_eq!(placed.status, StatusCode::ACCEPTED, "{:?}", placed.body);
    let id = placed.body["id"].as_str().expect("id").to_owned();
    assert_eq!(settled(&app, &user, &id).await["status"], "confirmed");

    let erased = app.delete("/me", Some(&user.token)).await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT, "{:?}", erased.body);
    app.eventually(
        "the token to be refused",
        Duration::from_secs(10),
        || async {
            (app.get("/me", Some(&user.token)).await.status == StatusCode::UNAUTHORIZED)
                .then_some(())
        },
    )
    .await;
    let login = app
        .post(
            "/auth/login",
            None,
            json!({"email": user.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (login.status, login.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let q = user.email.split('@').next().unwrap_or_default().to_owned();
    let listed = app
        .get(&format!("/admin/users?q={q}"), Some(&admin.token))
        .await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(0));

    // The order stays, its address anonymised but for the country.
    let order = app
        .eventually(
            "the order to be anonymised",
            Duration::from_secs(10),
            || async {
                let o = app.get(&format!("/orders/{id}"), Some(&admin.token)).await;
                (o.body["shipping_address"]["name"] == "erased").then_some(o.body)
            },
        )
        .await;
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["shipping_address"]["line1"], "erased");
    assert_eq!(order["shipping_address"]["country"], "GB");

    // The address may sign up again, as a new person.
    let again = app
        .post(
            "/auth/register",
            None,
            json!({"email": user.email, "password": PASSWORD, "name": "Someone"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{:?}", again.body);
    assert_ne!(again.body["user"]["id"], user.id.as_str());
}
