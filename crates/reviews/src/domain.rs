//! Reviews, their moderation and the rating arithmetic.

use mercato_kernel::ApiError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use mercato_contracts::types::{ProductRating, Review, ReviewStatus};

/// The published reviews of a seller's products, summed up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SellerRating {
    /// The mean rating, to two decimals; 0 without reviews.
    pub average: f64,
    pub count: i64,
}

/// The mean of `count` ratings adding up to `total`, to two decimals.
pub fn average(total: i64, count: i64) -> f64 {
    if count <= 0 {
        return 0.0;
    }
    // Ratings are 1 to 5: the sums stay far inside f64's exact integers.
    ((total as f64 / count as f64) * 100.0).round() / 100.0
}

/// When a review waits for an admin.
#[derive(Debug, Clone, Default)]
pub struct Moderation {
    /// Every review waits (`reviews.moderation = "pre"`).
    pub pre: bool,
    /// Words that make a review wait, compared without case.
    pub block_list: Vec<String>,
}

impl Moderation {
    pub fn new(pre: bool, block_list: &[String]) -> Self {
        Self {
            pre,
            block_list: block_list
                .iter()
                .map(|w| w.trim().to_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
        }
    }

    /// `published`, or `pending` when the review trips a rule: moderation
    /// before publishing, a link, or a word of the block list.
    pub fn verdict(&self, title: &str, body: &str) -> ReviewStatus {
        let text = format!("{title}\n{body}").to_lowercase();
        let link = ["http://", "https://", "www."]
            .iter()
            .any(|l| text.contains(l));
        let blocked = text
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| self.block_list.iter().any(|b| b == word))
            || self
                .block_list
                .iter()
                .any(|b| b.contains(' ') && text.contains(b.as_str()));
        if self.pre || link || blocked {
            ReviewStatus::Pending
        } else {
            ReviewStatus::Published
        }
    }
}

/// 422 unless the rating is 1 to 5, the title 1 to 200 characters and the
/// body 1 to 5,000, neither only white space.
pub fn validate(rating: i64, title: &str, body: &str) -> Result<(), ApiError> {
    if !(1..=5).contains(&rating) {
        return Err(ApiError::validation(
            "rating must be an integer from 1 to 5",
        ));
    }
    if title.trim().is_empty() || title.chars().count() > 200 {
        return Err(ApiError::validation("title must be 1 to 200 characters"));
    }
    if body.trim().is_empty() || body.chars().count() > 5000 {
        return Err(ApiError::validation("body must be 1 to 5000 characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_have_two_decimals_and_none_is_zero() {
        assert_eq!(average(0, 0), 0.0);
        assert_eq!(average(13, 3), 4.33);
        assert_eq!(average(14, 3), 4.67);
        assert_eq!(average(5, 1), 5.0);
    }

    #[test]
    fn links_and_blocked_words_wait_for_an_admin() {
        let m = Moderation::new(false, &["Scam".into(), " ".into(), "total junk".into()]);
        assert_eq!(m.verdict("Great", "Lovely cup"), ReviewStatus::Published);
        assert_eq!(
            m.verdict("Great", "see https://x.test"),
            ReviewStatus::Pending
        );
        assert_eq!(
            m.verdict("Great", "visit www.x.test"),
            ReviewStatus::Pending
        );
        assert_eq!(m.verdict("A SCAM!", "no"), ReviewStatus::Pending);
        assert_eq!(m.verdict("Hm", "this is total junk"), ReviewStatus::Pending);
        // Words, not parts of them.
        assert_eq!(m.verdict("Scampi", "tasty"), ReviewStatus::Published);
        let pre = Moderation::new(true, &[]);
        assert_eq!(pre.verdict("Great", "Lovely"), ReviewStatus::Pending);
    }

    #[test]
    fn ratings_titles_and_bodies_have_their_bounds() {
        assert!(validate(1, "t", "b").is_ok());
        assert!(validate(5, "t", "b").is_ok());
        assert!(validate(0, "t", "b").is_err());
        assert!(validate(6, "t", "b").is_err());
        assert!(validate(3, " ", "b").is_err());
        assert!(validate(3, "t", "").is_err());
        assert!(validate(3, &"t".repeat(201), "b").is_err());
    }
}
