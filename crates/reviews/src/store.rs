//! Reviews, votes, what customers bought, and the rating aggregates.
//!
//! Aggregates move by deltas (`count + 1`, `total + rating`) in the
//! transaction that publishes or unpublishes a review, so concurrent
//! reviews of one product never lose one; each move bumps the product's
//! rating version, which orders `rating.changed` for its consumers.

use crate::domain::{average, ProductRating, Review, ReviewStatus, SellerRating};
use mercato_contracts::events::{RatingChanged, ReviewPublished, ReviewRemoved};
use mercato_kernel::db::{Db, Tx};
use mercato_kernel::outbox::Outbox;
use mercato_kernel::page::{Page, PageRequest};
use mercato_kernel::{inbox, time, Envelope};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Clone)]
pub struct ReviewsStore {
    db: Db,
    outbox: Outbox,
}

/// A review with what only the context sees.
#[derive(Debug, Clone)]
pub struct Stored {
    pub review: Review,
    pub author_id: Uuid,
    pub seller_id: Option<Uuid>,
}

/// How a product's reviews are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Newest,
    Helpful,
    RatingDesc,
    RatingAsc,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "newest" => Sort::Newest,
            "helpful" => Sort::Helpful,
            "rating_desc" => Sort::RatingDesc,
            "rating_asc" => Sort::RatingAsc,
            _ => return None,
        })
    }

    /// The column ordered by before the id, and whether it descends.
    fn column(self) -> Option<(&'static str, bool)> {
        match self {
            Sort::Newest => None,
            Sort::Helpful => Some(("helpful_votes", true)),
            Sort::RatingDesc => Some(("rating", true)),
            Sort::RatingAsc => Some(("rating", false)),
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            Sort::Newest => "id DESC",
            Sort::Helpful => "helpful_votes DESC, id DESC",
            Sort::RatingDesc => "rating DESC, id DESC",
            Sort::RatingAsc => "rating ASC, id DESC",
        }
    }
}

/// Where a page of a product's reviews ends: the last review's sort key
/// (none when sorted by newest) and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCursor {
    pub key: Option<i64>,
    pub id: String,
}

impl ReviewCursor {
    fn of(sort: Sort, r: &Review) -> Self {
        let key = match sort {
            Sort::Newest => None,
            Sort::Helpful => Some(r.helpful_votes),
            Sort::RatingDesc | Sort::RatingAsc => Some(r.rating),
        };
        Self {
            key,
            id: r.id.to_string(),
        }
    }

    fn encode(&self) -> String {
        match self.key {
            Some(k) => format!("{k}|{}", self.id),
            None => self.id.clone(),
        }
    }

    /// A decoded cursor: `key|id`, or an id alone. One the list did not
    /// issue still sorts somewhere (its key ignored when it is no number).
    pub fn parse(raw: &str) -> Self {
        match raw.split_once('|') {
            Some((key, id)) => Self {
                key: key.parse().ok(),
                id: id.to_owned(),
            },
            None => Self {
                key: None,
                id: raw.to_owned(),
            },
        }
    }
}

/// Why a review could not be stored.
#[derive(Debug)]
pub enum CreateError {
    /// The author reviewed the product already.
    Exists,
    Other(anyhow::Error),
}

impl From<anyhow::Error> for CreateError {
    fn from(e: anyhow::Error) -> Self {
        CreateError::Other(e)
    }
}

impl From<sqlx::Error> for CreateError {
    fn from(e: sqlx::Error) -> Self {
        if mercato_kernel::error::is_unique_violation(&e) {
            CreateError::Exists
        } else {
            CreateError::Other(e.into())
        }
    }
}

const COLUMNS: &str = "id, product_id, seller_id, author_id, author_name, rating, title, body, status, verified_purchase, helpful_votes, unhelpful_votes, created_at";

type Row = (
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    String,
);

/// What an erased author's reviews are signed with.
const ERASED: &str = "erased";

fn uuid(raw: &str) -> anyhow::Result<Uuid> {
    Ok(Uuid::parse_str(raw)?)
}

fn from_row(row: Row) -> anyhow::Result<Stored> {
    let (
        id,
        product_id,
        seller_id,
        author_id,
        author_name,
        rating,
        title,
        body,
        status,
        verified,
        helpful,
        unhelpful,
        created_at,
    ) = row;
    Ok(Stored {
        review: Review {
            id: uuid(&id)?,
            product_id: uuid(&product_id)?,
            author_name,
            rating,
            title,
            body,
            status: ReviewStatus::parse(&status)
                .ok_or_else(|| anyhow::anyhow!("unknown review status {status:?}"))?,
            verified_purchase: verified != 0,
            helpful_votes: helpful,
            unhelpful_votes: unhelpful,
            created_at: time::from_db(&created_at)?,
        },
        author_id: uuid(&author_id)?,
        seller_id: seller_id.as_deref().map(uuid).transpose()?,
    })
}

impl ReviewsStore {
    pub fn new(db: Db, outbox: Outbox) -> Self {
        Self { db, outbox }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Stores a review; a published one counts in its ratings at once.
    pub async fn create(&self, s: &Stored) -> Result<(), CreateError> {
        let r = &s.review;
        let mut tx = self.db.begin().await?;
        let now = time::to_db(&r.created_at);
        sqlx::query(&format!(
            "INSERT INTO reviews ({COLUMNS}, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, 0, $11, $11)"
        ))
        .bind(r.id.to_string())
        .bind(r.product_id.to_string())
        .bind(s.seller_id.map(|id| id.to_string()))
        .bind(s.author_id.to_string())
        .bind(&r.author_name)
        .bind(r.rating)
        .bind(&r.title)
        .bind(&r.body)
        .bind(r.status.as_str())
        .bind(i64::from(r.verified_purchase))
        .bind(&now)
        .execute(tx.conn())
        .await?;
        if r.status == ReviewStatus::Published {
            self.published(&mut tx, s).await?;
        }
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(())
    }

    /// A review came into the ratings: the aggregates move and it is told.
    async fn published(&self, tx: &mut Tx, s: &Stored) -> anyhow::Result<()> {
        let changed = self.move_rating(tx, s, 1).await?;
        let published = Envelope::new(
            crate::NAME,
            s.review.product_id.to_string(),
            &ReviewPublished {
                review_id: s.review.id,
                product_id: s.review.product_id,
                seller_id: s.seller_id,
                author_id: s.author_id,
                rating: s.review.rating,
            },
        )?;
        self.outbox.add(tx, &[published, changed]).await?;
        Ok(())
    }

    /// A published review left the ratings (rejected or deleted).
    async fn unpublished(&self, tx: &mut Tx, s: &Stored) -> anyhow::Result<()> {
        let changed = self.move_rating(tx, s, -1).await?;
        let removed = Envelope::new(
            crate::NAME,
            s.review.product_id.to_string(),
            &ReviewRemoved {
                review_id: s.review.id,
                product_id: s.review.product_id,
                author_id: s.author_id,
            },
        )?;
        self.outbox.add(tx, &[removed, changed]).await?;
        Ok(())
    }

    /// Adds (`sign` 1) or takes away (-1) one rating from the product's
    /// aggregate; returns `rating.changed`.
    async fn move_rating(&self, tx: &mut Tx, s: &Stored, sign: i64) -> anyhow::Result<Envelope> {
        let rating = s.review.rating.clamp(1, 5);
        let column = format!("r{rating}");
        let mut counts = [0_i64; 5];
        counts[(rating - 1) as usize] = sign;
        let (count, total, version): (i64, i64, i64) = sqlx::query_as(&format!(
            "INSERT INTO product_ratings (product_id, review_count, rating_total, r1, r2, r3, r4, r5, version)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)
             ON CONFLICT (product_id) DO UPDATE SET
                review_count = product_ratings.review_count + $2,
                rating_total = product_ratings.rating_total + $3,
                {column} = product_ratings.{column} + $2,
                version = product_ratings.version + 1
             RETURNING review_count, rating_total, version"
        ))
        .bind(s.review.product_id.to_string())
        .bind(sign)
        .bind(sign * rating)
        .bind(counts[0])
        .bind(counts[1])
        .bind(counts[2])
        .bind(counts[3])
        .bind(counts[4])
        .fetch_one(tx.conn())
        .await?;
        let seller_id = self.seller_in(tx, s.review.product_id).await?;
        Ok(Envelope::new(
            crate::NAME,
            s.review.product_id.to_string(),
            &RatingChanged {
                product_id: s.review.product_id,
                seller_id,
                average: average(total, count),
                count,
                version,
            },
        )?)
    }

    pub async fn get(&self, id: Uuid) -> anyhow::Result<Option<Stored>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM reviews WHERE id = $1"))
                .bind(id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        row.map(from_row).transpose()
    }

    /// A product's published reviews in `sort` order, optionally of one
    /// rating, after the review `after` (the cursor: its sort key and id).
    pub async fn for_product(
        &self,
        product_id: Uuid,
        sort: Sort,
        rating: Option<i64>,
        after: Option<&ReviewCursor>,
        limit: u32,
    ) -> anyhow::Result<Page<Review>> {
        let column = sort.column();
        let mut sql =
            format!("SELECT {COLUMNS} FROM reviews WHERE product_id = $1 AND status = 'published'");
        let mut n = 1;
        let mut arg = || {
            n += 1;
            format!("${n}")
        };
        if rating.is_some() {
            sql.push_str(&format!(" AND rating = {}", arg()));
        }
        if let Some(after) = after {
            match (column, after.key) {
                (Some((column, descending)), Some(_)) => {
                    let (key, key_again, id) = (arg(), arg(), arg());
                    let past = if descending { "<" } else { ">" };
                    sql.push_str(&format!(
                        " AND ({column} {past} {key} OR ({column} = {key_again} AND id < {id}))"
                    ));
                }
                _ => sql.push_str(&format!(" AND id < {}", arg())),
            }
        }
        sql.push_str(&format!(" ORDER BY {} LIMIT {}", sort.order_by(), arg()));
        let mut query = sqlx::query_as::<_, Row>(&sql).bind(product_id.to_string());
        if let Some(r) = rating {
            query = query.bind(r);
        }
        if let Some(after) = after {
            if let (Some(_), Some(key)) = (column, after.key) {
                query = query.bind(key).bind(key);
            }
            query = query.bind(after.id.clone());
        }
        let rows = query
            .bind(i64::from(limit) + 1)
            .fetch_all(self.db.pool())
            .await?;
        let reviews = rows
            .into_iter()
            .map(|r| from_row(r).map(|s| s.review))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(reviews, limit, |r| {
            ReviewCursor::of(sort, r).encode()
        }))
    }

    /// Every review in `status` (every one for `None`), newest first.
    pub async fn by_status(
        &self,
        status: Option<ReviewStatus>,
        page: &PageRequest,
    ) -> anyhow::Result<Page<Review>> {
        let mut sql = format!("SELECT {COLUMNS} FROM reviews WHERE 1 = 1");
        let mut n = 0;
        let mut arg = || {
            n += 1;
            format!("${n}")
        };
        if status.is_some() {
            sql.push_str(&format!(" AND status = {}", arg()));
        }
        if page.after.is_some() {
            sql.push_str(&format!(" AND id < {}", arg()));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", arg()));
        let mut query = sqlx::query_as::<_, Row>(&sql);
        if let Some(s) = status {
            query = query.bind(s.as_str());
        }
        if let Some(after) = &page.after {
            query = query.bind(after.clone());
        }
        let rows = query
            .bind(i64::from(page.limit) + 1)
            .fetch_all(self.db.pool())
            .await?;
        let reviews = rows
            .into_iter()
            .map(|r| from_row(r).map(|s| s.review))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Page::from_rows(reviews, page.limit, |r| r.id.to_string()))
    }

    /// Moves a review from one of `from` to `to`, in and out of the ratings
    /// as it goes; `None` when it was in none of `from` (or is gone).
    pub async fn set_status(
        &self,
        id: Uuid,
        from: &[ReviewStatus],
        to: ReviewStatus,
    ) -> anyhow::Result<Option<Stored>> {
        let allowed = from
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut tx = self.db.begin().await?;
        // The row as it was, locked by the update that changes it.
        let Some(before) = self.locked(&mut tx, id).await? else {
            tx.rollback().await;
            return Ok(None);
        };
        if !from.contains(&before.review.status) {
            tx.rollback().await;
            return Ok(None);
        }
        sqlx::query(&format!(
            "UPDATE reviews SET status = $2, updated_at = $3 WHERE id = $1 AND status IN ({allowed})"
        ))
        .bind(id.to_string())
        .bind(to.as_str())
        .bind(time::to_db(&time::now()))
        .execute(tx.conn())
        .await?;
        let was = before.review.status == ReviewStatus::Published;
        let is = to == ReviewStatus::Published;
        if !was && is {
            self.published(&mut tx, &before).await?;
        } else if was && !is {
            self.unpublished(&mut tx, &before).await?;
        }
        tx.commit().await?;
        let mut after = before;
        after.review.status = to;
        Ok(Some(after))
    }

    /// Takes the review's row lock (on PostgreSQL) and reads it.
    async fn locked(&self, tx: &mut Tx, id: Uuid) -> anyhow::Result<Option<Stored>> {
        let touched = sqlx::query("UPDATE reviews SET updated_at = updated_at WHERE id = $1")
            .bind(id.to_string())
            .execute(tx.conn())
            .await?;
        if touched.rows_affected() == 0 {
            return Ok(None);
        }
        let row: Row = sqlx::query_as(&format!("SELECT {COLUMNS} FROM reviews WHERE id = $1"))
            .bind(id.to_string())
            .fetch_one(tx.conn())
            .await?;
        Ok(Some(from_row(row)?))
    }

    /// Deletes a review and its votes; a published one leaves the ratings.
    pub async fn delete(&self, id: Uuid) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let Some(before) = self.locked(&mut tx, id).await? else {
            tx.rollback().await;
            return Ok(false);
        };
        for sql in [
            "DELETE FROM review_votes WHERE review_id = $1",
            "DELETE FROM reviews WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(tx.conn())
                .await?;
        }
        if before.review.status == ReviewStatus::Published {
            self.unpublished(&mut tx, &before).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records `voter`'s vote on a review (replacing theirs) and counts the
    /// votes again, with the review's row locked so no vote is missed.
    pub async fn vote(
        &self,
        id: Uuid,
        voter: Uuid,
        helpful: bool,
    ) -> anyhow::Result<Option<Review>> {
        let mut tx = self.db.begin().await?;
        let published = self
            .locked(&mut tx, id)
            .await?
            .is_some_and(|s| s.review.status == ReviewStatus::Published);
        if !published {
            tx.rollback().await;
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO review_votes (review_id, voter_id, helpful) VALUES ($1, $2, $3)
             ON CONFLICT (review_id, voter_id) DO UPDATE SET helpful = $3",
        )
        .bind(id.to_string())
        .bind(voter.to_string())
        .bind(i64::from(helpful))
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE reviews SET
                helpful_votes = (SELECT COUNT(*) FROM review_votes WHERE review_id = $1 AND helpful = 1),
                unhelpful_votes = (SELECT COUNT(*) FROM review_votes WHERE review_id = $1 AND helpful = 0)
             WHERE id = $1",
        )
        .bind(id.to_string())
        .execute(tx.conn())
        .await?;
        let row: Row = sqlx::query_as(&format!("SELECT {COLUMNS} FROM reviews WHERE id = $1"))
            .bind(id.to_string())
            .fetch_one(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(Some(from_row(row)?.review))
    }

    pub async fn product_rating(&self, product_id: Uuid) -> anyhow::Result<ProductRating> {
        let row: Option<(i64, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT review_count, rating_total, r1, r2, r3, r4, r5 FROM product_ratings WHERE product_id = $1",
        )
        .bind(product_id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        let (count, total, r1, r2, r3, r4, r5) = row.unwrap_or_default();
        let distribution: BTreeMap<String, i64> = [r1, r2, r3, r4, r5]
            .into_iter()
            .enumerate()
            .map(|(i, n)| ((i + 1).to_string(), n))
            .collect();
        Ok(ProductRating {
            average: average(total, count),
            count,
            distribution,
        })
    }

    /// The seller's rating: their products' ratings summed, so that a
    /// product whose seller became known after its reviews counts too.
    pub async fn seller_rating(&self, seller_id: Uuid) -> anyhow::Result<SellerRating> {
        let (count, total): (i64, i64) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(r.review_count), 0) AS BIGINT), CAST(COALESCE(SUM(r.rating_total), 0) AS BIGINT)
             FROM product_ratings r JOIN products p ON p.product_id = r.product_id
             WHERE p.seller_id = $1",
        )
        .bind(seller_id.to_string())
        .fetch_one(self.db.pool())
        .await?;
        Ok(SellerRating {
            average: average(total, count),
            count,
        })
    }

    /// Whether the customer bought the product in an order still standing.
    pub async fn bought(&self, customer_id: Uuid, product_id: Uuid) -> anyhow::Result<bool> {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM purchases WHERE customer_id = $1 AND product_id = $2 AND active = 1",
        )
        .bind(customer_id.to_string())
        .bind(product_id.to_string())
        .fetch_one(self.db.pool())
        .await?;
        Ok(n > 0)
    }

    /// A confirmed order's products, as bought by its customer; once per event.
    pub async fn record_purchase(
        &self,
        consumer: &str,
        event_id: Uuid,
        order_id: Uuid,
        customer_id: Uuid,
        products: &[Uuid],
    ) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        if !inbox::claim(&mut tx, consumer, event_id).await? {
            tx.rollback().await;
            return Ok(());
        }
        let (withdrawn,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM withdrawn_orders WHERE order_id = $1")
                .bind(order_id.to_string())
                .fetch_one(tx.conn())
                .await?;
        let active = i64::from(withdrawn == 0);
        for product in products {
            sqlx::query(
                "INSERT INTO purchases (order_id, product_id, customer_id, active) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (order_id, product_id) DO NOTHING",
            )
            .bind(order_id.to_string())
            .bind(product.to_string())
            .bind(customer_id.to_string())
            .bind(active)
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A cancelled or refunded order no longer makes its customer a buyer,
    /// nor does its confirmation if it arrives later.
    pub async fn withdraw_purchase(&self, order_id: Uuid) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query("INSERT INTO withdrawn_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(order_id.to_string())
            .execute(tx.conn())
            .await?;
        sqlx::query("UPDATE purchases SET active = 0 WHERE order_id = $1")
            .bind(order_id.to_string())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who sells a product, unless a newer version is known.
    pub async fn record_product(
        &self,
        product_id: Uuid,
        seller_id: Uuid,
        version: i64,
    ) -> anyhow::Result<()> {
        let query = sqlx::query(
            "INSERT INTO products (product_id, seller_id, version) VALUES ($1, $2, $3)
             ON CONFLICT (product_id) DO UPDATE SET seller_id = $2, version = $3
             WHERE products.version <= $3",
        )
        .bind(product_id.to_string())
        .bind(seller_id.to_string())
        .bind(version);
        self.db.execute(query).await?;
        Ok(())
    }

    pub async fn seller_of(&self, product_id: Uuid) -> anyhow::Result<Option<Uuid>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT seller_id FROM products WHERE product_id = $1")
                .bind(product_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        row.map(|(s,)| uuid(&s)).transpose()
    }

    async fn seller_in(&self, tx: &mut Tx, product_id: Uuid) -> anyhow::Result<Option<Uuid>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT seller_id FROM products WHERE product_id = $1")
                .bind(product_id.to_string())
                .fetch_optional(tx.conn())
                .await?;
        row.map(|(s,)| uuid(&s)).transpose()
    }

    /// The name a user signs reviews with: theirs on new reviews and old.
    /// Not for an erased user: their events may arrive after the erasure.
    pub async fn record_author(&self, user_id: Uuid, name: &str) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        let named = sqlx::query(
            "INSERT INTO authors (user_id, name) VALUES ($1, $2)
             ON CONFLICT (user_id) DO UPDATE SET name = $2 WHERE authors.erased = 0",
        )
        .bind(user_id.to_string())
        .bind(name)
        .execute(tx.conn())
        .await?;
        if named.rows_affected() == 1 {
            sqlx::query("UPDATE reviews SET author_name = $2 WHERE author_id = $1")
                .bind(user_id.to_string())
                .bind(name)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn author_name(&self, user_id: Uuid) -> anyhow::Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT name FROM authors WHERE user_id = $1 AND erased = 0")
                .bind(user_id.to_string())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(row.map(|(n,)| n))
    }

    /// A user erased their account: their reviews stay, signed `erased`;
    /// their name and what they bought are forgotten.
    pub async fn erase_author(&self, user_id: Uuid) -> anyhow::Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query("UPDATE reviews SET author_name = $2 WHERE author_id = $1")
            .bind(user_id.to_string())
            .bind(ERASED)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO authors (user_id, name, erased) VALUES ($1, '', 1)
             ON CONFLICT (user_id) DO UPDATE SET name = '', erased = 1",
        )
        .bind(user_id.to_string())
        .execute(tx.conn())
        .await?;
        sqlx::query("DELETE FROM purchases WHERE customer_id = $1")
            .bind(user_id.to_string())
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
