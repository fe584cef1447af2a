//! Slugs: the names of categories as URLs and filters use them.

/// A slug made from a name: lower case, every run of characters other than
/// letters and digits one `-`, none at either end (`"Tea & Coffee"` is
/// `tea-coffee`).
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lower_case_words_joined_by_dashes() {
        assert_eq!(slugify("Tea & Coffee"), "tea-coffee");
        assert_eq!(slugify("  kitchen "), "kitchen");
        assert_eq!(slugify("Küche"), "küche");
        assert_eq!(slugify("--a__b--"), "a-b");
        assert_eq!(slugify("!!!"), "");
    }
}
