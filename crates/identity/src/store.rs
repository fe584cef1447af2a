//! Users, on SQLite or PostgreSQL.

use crate::domain::{ChannelPreferences, Email, Preferences, SavedAddress, User, MAX_ADDRESSES};
use mercato_contracts::events::{UserErased, UserPreferencesChanged, UserRegistered, UserUpdated};
use mercato_contracts::types::ShippingAddress;
use mercato_kernel::auth::Role;
use mercato_kernel::db::Db;
use mercato_kernel::error::is_unique_violation;
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{id, time, Envelope};
use uuid::Uuid;

#[derive(Clone)]
pub struct IdentityStore {
    db: Db,
    outbox: Outbox,
}

#[derive(Debug)]
pub enum InsertUserError {
    DuplicateEmail,
    Store(sqlx::Error),
}

type UserRow = (String, String, String, String, String, String, i64);

fn user_from_row(row: UserRow) -> anyhow::Result<(User, String)> {
    let (id, email, name, role, hash, created_at, disabled) = row;
    Ok((
        User {
            id: Uuid::parse_str(&id)?,
            email,
            name,
            role: Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role:?}"))?,
            disabled: disabled != 0,
            created_at: time::from_db(&created_at)?,
        },
        hash,
    ))
}

const USER_COLUMNS: &str = "id, email, name, role, password_hash, created_at, disabled";

impl IdentityStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stores a new user and its `user.registered` event in one transaction.
    pub async fn insert_user(
        &self,
        user: &User,
        password_hash: &str,
    ) -> Result<(), InsertUserError> {
        let event = Envelope::new(
            crate::NAME,
            user.id.to_string(),
            &UserRegistered {
                user_id: user.id,
                email: user.email.clone(),
                name: user.name.clone(),
                role: user.role,
            },
        )
        .map_err(|e| InsertUserError::Store(sqlx::Error::Protocol(e.to_string())))?;
        let mut tx = self.db.begin().await.map_err(InsertUserError::Store)?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.id.to_string())
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(password_hash)
        .bind(time::to_db(&user.created_at))
        .execute(tx.conn())
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(InsertUserError::DuplicateEmail),
            Err(e) => return Err(InsertUserError::Store(e)),
        }
        self.outbox
            .add(&mut tx, &[event])
            .await
            .map_err(InsertUserError::Store)?;
        tx.commit().await.map_err(InsertUserError::Store)
    }

    /// The user and its password hash.
    pub async fn by_email(&self, email: &Email) -> anyhow::Result<Option<(User, String)>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        ))
        .bind(email.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(user_from_row).transpose()
    }

    /// The user and its password hash, by id; `None` once erased.
    pub async fn with_hash(&self, id: Uuid) -> anyhow::Result<Option<(User, String)>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND erased_at IS NULL"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(user_from_row).transpose()
    }

    /// Erases a user: e-mail, name, password and addresses go, the account
    /// is disabled for good, with `user.erased`, in one transaction. `false`
    /// when it was erased before.
    pub async fn erase(&self, user_id: Uuid) -> anyhow::Result<bool> {
        let event = Envelope::new(crate::NAME, user_id.to_string(), &UserErased { user_id })?;
        let mut tx = self.db.begin().await?;
        // The e-mail is unique and may be used again by a new account.
        let done = sqlx::query(
            "UPDATE users SET email = $2, name = '', password_hash = '!', disabled = 1, erased_at = $3
             WHERE id = $1 AND erased_at IS NULL",
        )
        .bind(user_id.to_string())
        .bind(format!("erased-{}@erased.invalid", user_id.simple()))
        .bind(time::to_db(&time::now()))
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM addresses WHERE user_id = $1")
            .bind(user_id.to_string())
            .execute(tx.conn())
            .await?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A user's role and whether the account is disabled; `None` when
    /// there is no such user, or it was erased.
    pub async fn standing(&self, user_id: Uuid) -> anyhow::Result<Option<(Role, bool)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT role, disabled FROM users WHERE id = $1 AND erased_at IS NULL")
                .bind(user_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|(role, disabled)| {
            let role =
                Role::parse(&role).ok_or_else(|| anyhow::anyhow!("unknown role {role:?}"))?;
            Ok((role, disabled != 0))
        })
        .transpose()
    }

    /// Users newest first, by role and by a part of the e-mail or name.
    pub async fn list_users(
        &self,
        role: Option<Role>,
        q: Option<&str>,
        page: &PageRequest,
    ) -> anyhow::Result<Page<User>> {
        let mut sql = format!("SELECT {USER_COLUMNS} FROM users WHERE 1 = 1");
        let mut args: Vec<String> = Vec::new();
        if let Some(role) = role {
            args.push(role.as_str().to_owned());
            sql.push_str(&format!(" AND role = ${}", args.len()));
        }
        if let Some(q) = q {
            // LIKE's own characters are matched as themselves.
            let escaped: String = q
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '%' | '_' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            args.push(format!("%{escaped}%"));
            let n = args.len();
            sql.push_str(&format!(
                " AND (LOWER(email) LIKE ${n} ESCAPE '\\' OR LOWER(name) LIKE ${n} ESCAPE '\\')"
            ));
        }
        if let Some(after) = &page.after {
            args.push(after.clone());
            sql.push_str(&format!(" AND id < ${}", args.len()));
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            i64::from(page.limit) + 1
        ));
        let mut query = sqlx::query_as::<_, UserRow>(&sql);
        for a in args {
            query = query.bind(a);
        }
        let users = query
            .fetch_all(self.db.pool())
            .await?
            .into_iter()
            .map(|row| user_from_row(row).map(|(user, _)| user))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(users, page.limit, |u| u.id.to_string()))
    }

    /// Sets a user's role or whether the account is disabled (only what is
    /// given, so that two admins changing one each both count), with
    /// `user.updated`, in one transaction. `None` when there is no such
    /// user, or it was erased.
    pub async fn set_standing(
        &self,
        id: Uuid,
        role: Option<Role>,
        disabled: Option<bool>,
    ) -> anyhow::Result<Option<User>> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET role = COALESCE($2, role), disabled = COALESCE($3, disabled)
             WHERE id = $1 AND erased_at IS NULL",
        )
        .bind(id.to_string())
        .bind(role.map(|r| r.as_str()))
        .bind(disabled.map(i64::from))
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let row: UserRow =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id.to_string())
                .fetch_one(tx.conn())
                .await?;
        let (user, _) = user_from_row(row)?;
        let event = Envelope::new(
            crate::NAME,
            user.id.to_string(),
            &UserUpdated {
                user_id: user.id,
                email: user.email.clone(),
                name: user.name.clone(),
            },
        )?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Changes a user's name and, when given, password hash, with
    /// `user.updated`, in one transaction.
    pub async fn update_user(
        &self,
        user: &User,
        password_hash: Option<&str>,
    ) -> anyhow::Result<()> {
        let event = Envelope::new(
            crate::NAME,
            user.id.to_string(),
            &UserUpdated {
                user_id: user.id,
                email: user.email.clone(),
                name: user.name.clone(),
            },
        )?;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE users SET name = $2, password_hash = COALESCE($3, password_hash)
             WHERE id = $1 AND erased_at IS NULL",
        )
        .bind(user.id.to_string())
        .bind(&user.name)
        .bind(password_hash)
        .execute(tx.conn())
        .await?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's preferences; the defaults when never set.
    pub async fn preferences(&self, user_id: Uuid) -> anyhow::Result<Preferences> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT email, sms, push, marketing FROM user_preferences WHERE user_id = $1",
        )
        .bind(user_id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            None => Preferences::default(),
            Some((email, sms, push, marketing)) => Preferences {
                notifications: ChannelPreferences {
                    email: email != 0,
                    sms: sms != 0,
                    push: push != 0,
                },
                marketing: marketing != 0,
            },
        })
    }

    /// Stores the user's preferences with `user.preferences_changed`.
    pub async fn put_preferences(&self, user_id: Uuid, p: &Preferences) -> anyhow::Result<()> {
        let event = Envelope::new(
            crate::NAME,
            user_id.to_string(),
            &UserPreferencesChanged {
                user_id,
                email: p.notifications.email,
                sms: p.notifications.sms,
                push: p.notifications.push,
                marketing: p.marketing,
            },
        )?;
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO user_preferences (user_id, email, sms, push, marketing, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, sms = excluded.sms,
                push = excluded.push, marketing = excluded.marketing, updated_at = excluded.updated_at",
        )
        .bind(user_id.to_string())
        .bind(i64::from(p.notifications.email))
        .bind(i64::from(p.notifications.sms))
        .bind(i64::from(p.notifications.push))
        .bind(i64::from(p.marketing))
        .bind(time::to_db(&time::now()))
        .execute(tx.conn())
        .await?;
        self.outbox.add(&mut tx, &[event]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's addresses, the default first, then oldest first.
    pub async fn addresses(&self, user_id: Uuid) -> anyhow::Result<Vec<SavedAddress>> {
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT id, address, is_default, created_at FROM addresses WHERE user_id = $1
             ORDER BY is_default DESC, id",
        )
        .bind(user_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|(id, address, is_default, created_at)| {
                Ok(SavedAddress {
                    id: Uuid::parse_str(&id)?,
                    address: serde_json::from_str(&address)?,
                    default: is_default != 0,
                    created_at: time::from_db(&created_at)?,
                })
            })
            .collect()
    }

    /// Saves an address; the user's first is the default, and a new default
    /// replaces the old one. `None` when the user has [`MAX_ADDRESSES`].
    pub async fn add_address(
        &self,
        user_id: Uuid,
        address: &ShippingAddress,
        default: bool,
    ) -> anyhow::Result<Option<SavedAddress>> {
        let user = user_id.to_string();
        let mut tx = self.db.begin().await?;
        let (count,): (i64,) =
            sqlx::query_as("SELECT CAST(COUNT(*) AS BIGINT) FROM addresses WHERE user_id = $1")
                .bind(&user)
                .fetch_one(tx.conn())
                .await?;
        if count >= MAX_ADDRESSES {
            return Ok(None);
        }
        let default = default || count == 0;
        if default {
            sqlx::query("UPDATE addresses SET is_default = 0 WHERE user_id = $1")
                .bind(&user)
                .execute(tx.conn())
                .await?;
        }
        let saved = SavedAddress {
            id: id::new_id(),
            address: address.clone(),
            default,
            created_at: time::now(),
        };
        sqlx::query(
            "INSERT INTO addresses (id, user_id, address, is_default, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(saved.id.to_string())
        .bind(&user)
        .bind(serde_json::to_string(&saved.address)?)
        .bind(i64::from(default))
        .bind(time::to_db(&saved.created_at))
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(Some(saved))
    }

    /// One of the user's addresses: the one with `id`, or the default.
    pub async fn address(
        &self,
        user_id: Uuid,
        id: Option<Uuid>,
    ) -> anyhow::Result<Option<ShippingAddress>> {
        let row: Option<(String,)> = match id {
            Some(id) => {
                sqlx::query_as("SELECT address FROM addresses WHERE id = $1 AND user_id = $2")
                    .bind(id.to_string())
                    .bind(user_id.to_string())
                    .fetch_optional(self.db.pool())
                    .await?
            }
            None => {
                sqlx::query_as(
                    "SELECT address FROM addresses WHERE user_id = $1 AND is_default = 1",
                )
                .bind(user_id.to_string())
                .fetch_optional(self.db.pool())
                .await?
            }
        };
        row.map(|(json,)| Ok(serde_json::from_str(&json)?))
            .transpose()
    }

    /// `false` when the user has no such address.
    pub async fn delete_address(&self, user_id: Uuid, id: Uuid) -> anyhow::Result<bool> {
        let query = sqlx::query("DELETE FROM addresses WHERE id = $1 AND user_id = $2")
            .bind(id.to_string())
            .bind(user_id.to_string());
        Ok(self.db.execute(query).await?.rows_affected() == 1)
    }

    pub async fn by_id(&self, id: Uuid) -> anyhow::Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND erased_at IS NULL"
        ))
        .bind(id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.map(user_from_row).transpose()?.map(|(u, _)| u))
    }

    /// Failed sign-ins of `subject` in the window that started after
    /// `window_after`: their count and when the window started.
    pub async fn login_failures(
        &self,
        subject: &str,
        window_after: &str,
    ) -> Result<Option<(i64, String)>, sqlx::Error> {
        sqlx::query_as(
            "SELECT failures, window_start FROM login_failures WHERE subject = $1 AND window_start > $2",
        )
        .bind(subject)
        .bind(window_after)
        .fetch_optional(self.db.pool())
        .await
    }

    /// Counts a failed sign-in of `subject` at `now`, in a new window when
    /// the last one started before `window_after`.
    pub async fn count_login_failure(
        &self,
        subject: &str,
        now: &str,
        window_after: &str,
    ) -> Result<(), sqlx::Error> {
        self.db
            .execute(
                sqlx::query(
                    "INSERT INTO login_failures (subject, failures, window_start) VALUES ($1, 1, $2)
                     ON CONFLICT (subject) DO UPDATE SET
                       failures = CASE WHEN login_failures.window_start > $3
                                       THEN login_failures.failures + 1 ELSE 1 END,
                       window_start = CASE WHEN login_failures.window_start > $3
                                           THEN login_failures.window_start ELSE $2 END",
                )
                .bind(subject)
                .bind(now)
                .bind(window_after),
            )
            .await
            .map(|_| ())
    }

    /// Forgets `subject`'s failed sign-ins (it signed in).
    pub async fn clear_login_failures(&self, subject: &str) -> Result<(), sqlx::Error> {
        self.db
            .execute(sqlx::query("DELETE FROM login_failures WHERE subject = $1").bind(subject))
            .await
            .map(|_| ())
    }

    /// Drops windows that started before `window_after`.
    pub async fn prune_login_failures(&self, window_after: &str) -> Result<u64, sqlx::Error> {
        self.db
            .execute(
                sqlx::query("DELETE FROM login_failures WHERE window_start <= $1")
                    .bind(window_after),
            )
            .await
            .map(|r| r.rows_affected())
    }

    pub async fn count(&self) -> anyhow::Result<i64> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(self.db.pool())
            .await?;
        Ok(n)
    }
}
