//! Templates, compiled into the binary and parsed once, and the filters
//! they use. Names ending in `.html` are HTML-escaped.

use crate::api::Failure;
use crate::session::Visitor;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use minijinja::{Environment, Value as Jv};
use serde_json::{json, Value};
use std::sync::LazyLock;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../templates/", $name)))),*]
    };
}

const TEMPLATES: &[(&str, &str)] = templates![
    "base.html",
    "flash.html",
    "error.html",
    "order_lines.html",
    "store/home.html",
    "store/search.html",
    "store/suggest.html",
    "store/product.html",
    "store/signin.html",
    "store/register.html",
    "store/cart.html",
    "store/checkout.html",
    "store/account.html",
    "store/orders.html",
    "store/order.html",
    "store/order_status.html",
    "console/dashboard.html",
    "console/orders.html",
    "console/order.html",
    "console/products.html",
    "console/product_new.html",
    "console/product.html",
    "console/table.html",
    "console/order_table.html",
    "console/dead_letters.html",
    "console/reports.html",
];

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // Checked by the tests; a broken template must not take the
            // server down with it.
            tracing::error!(template = name, error = %e, "template does not parse");
        }
    }
    env.add_filter("money", money_filter);
    env.add_filter("when", when_filter);
    env.add_filter("short", short_filter);
    env.add_filter("urlencode", |v: Jv| crate::store::encode(&v.to_string()));
    env
});

/// `{amount, currency}` as a person reads it: `12.50 EUR`.
pub fn money(amount: i64, currency: &str) -> String {
    format!("{} {currency}", decimal(amount, currency))
}

/// Minor units as a decimal number in the currency's unit: `12.50`, as a
/// form shows a price and [`parse_price`] reads it back.
pub fn decimal(amount: i64, currency: &str) -> String {
    let digits = minor_digits(currency);
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs}");
    }
    let unit = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = digits as usize
    )
}

/// Digits after the decimal point in a currency's minor unit (ISO 4217).
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// A decimal price a person typed (`12.5`, `12.50`, `12`) in minor units
/// of `currency`; `None` when it is not one.
pub fn parse_price(text: &str, currency: &str) -> Option<i64> {
    let digits = minor_digits(currency) as usize;
    let text = text.trim();
    let (whole, frac) = text.split_once(['.', ',']).unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty()
        || frac.len() > digits
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<digits$}").parse().ok()?
    };
    whole
        .checked_mul(10i64.pow(digits as u32))?
        .checked_add(frac)
}

fn money_filter(value: Jv) -> String {
    let amount = value
        .get_attr("amount")
        .ok()
        .and_then(|a| i64::try_from(a).ok());
    let currency = value.get_attr("currency").ok();
    match (amount, currency.as_ref().and_then(|c| c.as_str())) {
        (Some(a), Some(c)) => money(a, c),
        _ => String::new(),
    }
}

/// An RFC 3339 instant as `2026-12-01 10:45` (UTC).
fn when_filter(value: Jv) -> String {
    let s = value.as_str().unwrap_or_default();
    match s.get(..16) {
        Some(head) => format!("{} UTC", head.replacen('T', " ", 1)),
        None => s.to_owned(),
    }
}

/// The last eight characters of an id, as people quote it: a UUIDv7
/// begins with its time, alike for ids made together, and ends at random.
pub fn short(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    chars[chars.len().saturating_sub(8)..].iter().collect()
}

fn short_filter(value: Jv) -> String {
    short(value.as_str().unwrap_or_default())
}

/// Renders `name` with `context` and what every page shows (who is signed
/// in, the CSRF token, the message of the last action).
pub fn page(visitor: Visitor, name: &str, context: Value) -> Response {
    page_with_status(visitor, StatusCode::OK, name, context)
}

pub fn page_with_status(
    visitor: Visitor,
    status: StatusCode,
    name: &str,
    mut context: Value,
) -> Response {
    if let Some(map) = context.as_object_mut() {
        map.insert("user".into(), visitor.user.clone().unwrap_or(Value::Null));
        map.insert("csrf".into(), Value::String(visitor.csrf.clone()));
        map.insert("flash".into(), visitor.flash.clone().unwrap_or(Value::Null));
        map.insert("path".into(), Value::String(visitor.path.clone()));
    }
    let html = render(name, &context);
    visitor.finish((status, html))
}

/// Just the template: the partials htmx swaps in.
pub fn partial(visitor: Visitor, name: &str, context: Value) -> Response {
    let html = render(name, &context);
    visitor.finish(html)
}

fn render(name: &str, context: &Value) -> Response {
    let rendered = ENV
        .get_template(name)
        .and_then(|t| t.render(Jv::from_serialize(context)));
    match rendered {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(template = name, error = %format!("{e:#}"), "rendering a page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><p>This page could not be shown.</p>"),
            )
                .into_response()
        }
    }
}

/// The error page for `visitor`, with the header of their session: when
/// the API no longer knows their session, the sign-in page instead.
pub fn error_page(mut visitor: Visitor, failure: &Failure) -> Response {
    if failure.status == StatusCode::UNAUTHORIZED {
        visitor.sign_out();
        return visitor.redirect("/signin");
    }
    let status = failure.status;
    let mut response = page_with_status(
        visitor,
        status,
        "error.html",
        json!({
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "reason": status.canonical_reason().unwrap_or("Error"),
            "code": failure.code,
            "message": failure.message,
        }),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

/// What a visitor sees when the API refused or could not answer: signed
/// out, the sign-in page; otherwise an error page with the API's message.
/// Without the visitor at hand (see [`error_page`]), the header shows no
/// session.
pub fn failure_page(failure: &Failure) -> Response {
    if failure.status == StatusCode::UNAUTHORIZED {
        return Redirect::to("/signin").into_response();
    }
    let context = json!({
        "title": failure.status.canonical_reason().unwrap_or("Error"),
        "status": failure.status.as_u16(),
        "reason": failure.status.canonical_reason().unwrap_or("Error"),
        "code": failure.code,
        "message": failure.message,
        "user": Value::Null,
    });
    let mut response = render("error.html", &context);
    *response.status_mut() = failure.status;
    if failure.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(ENV.get_template(name).is_ok(), "{name} does not parse");
        }
    }

    #[test]
    fn short_ids_are_the_random_tail() {
        assert_eq!(short("01a23144-e7c0-7d2e-9b1a-4f0c2d9e8a71"), "2d9e8a71");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn money_reads_in_the_currency_s_minor_unit() {
        assert_eq!(money(1250, "EUR"), "12.50 EUR");
        assert_eq!(money(5, "USD"), "0.05 USD");
        assert_eq!(money(-1999, "EUR"), "-19.99 EUR");
        assert_eq!(money(1250, "JPY"), "1250 JPY");
        assert_eq!(money(1250, "KWD"), "1.250 KWD");
    }

    #[test]
    fn typed_prices_become_minor_units() {
        assert_eq!(parse_price("12.50", "EUR"), Some(1250));
        assert_eq!(parse_price("12.5", "EUR"), Some(1250));
        assert_eq!(parse_price("12", "EUR"), Some(1200));
        assert_eq!(parse_price("0,99", "EUR"), Some(99));
        assert_eq!(parse_price(".5", "EUR"), Some(50));
        assert_eq!(parse_price("12.505", "EUR"), None);
        assert_eq!(parse_price("-1", "EUR"), None);
        assert_eq!(parse_price("", "EUR"), None);
        assert_eq!(parse_price("abc", "EUR"), None);
        assert_eq!(parse_price("99999999999999999999", "EUR"), None);
        assert_eq!(parse_price("1250", "JPY"), Some(1250));
        assert_eq!(parse_price("1.5", "JPY"), None);
    }
}
