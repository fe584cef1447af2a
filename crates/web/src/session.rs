//! The browser's side of a visit: a cookie session holding the API access
//! token, a CSRF token every form carries, and one-shot messages (flash)
//! carried across a redirect.
//!
//! - `mercato_session`: the access token from sign-in, `HttpOnly`,
//!   `SameSite=Lax`, for as long as the token is valid.
//! - `mercato_csrf`: a random token set on the first visit. A form posts it
//!   back in the field `csrf` and the two must match (a double-submit
//!   token; another site can neither read the cookie nor, with
//!   `SameSite=Lax`, send it with a form post). A post whose `Origin` is
//!   another site is refused as well. A digest of it is the visitor's
//!   `X-Session-Id`, so that what a signed-out visitor does is counted as
//!   one visit.
//! - `mercato_flash`: the message the next page shows, then clears.

use crate::api::{Call, Failure};
use crate::Web;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

pub const SESSION_COOKIE: &str = "mercato_session";
pub const CSRF_COOKIE: &str = "mercato_csrf";
pub const FLASH_COOKIE: &str = "mercato_flash";

/// Who is looking at a page.
pub struct Visitor {
    /// The access token, when signed in.
    pub token: Option<String>,
    /// `GET /me`, when signed in.
    pub user: Option<Value>,
    pub csrf: String,
    /// `X-Session-Id` for the API: a digest of the CSRF token.
    pub session: String,
    /// The message left by the last action, shown once.
    pub flash: Option<Value>,
    /// The page's path and query, to come back to after signing in.
    pub path: String,
    /// Cookies to set on whatever answers this visit.
    cookies: Vec<String>,
    secure: bool,
}

impl Visitor {
    pub fn role(&self) -> Option<&str> {
        self.user.as_ref().and_then(|u| u["role"].as_str())
    }

    pub fn is(&self, roles: &[&str]) -> bool {
        self.role().is_some_and(|r| roles.contains(&r))
    }

    /// A call to the API as this visitor.
    pub fn call(&self, method: Method, path: impl Into<String>) -> Call<'_> {
        Call {
            method,
            path: path.into(),
            token: self.token.as_deref(),
            session: Some(&self.session),
            body: None,
            idempotency_key: None,
        }
    }

    /// Signs in with `token`, valid for `max_age` seconds.
    pub fn sign_in(&mut self, token: &str, max_age: i64) {
        self.cookies
            .push(self.cookie(SESSION_COOKIE, token, Some(max_age.max(0))));
    }

    pub fn sign_out(&mut self) {
        self.cookies.push(self.cookie(SESSION_COOKIE, "", Some(0)));
        self.token = None;
        self.user = None;
    }

    /// A message for the next page: `status` (done) or `alert` (refused).
    pub fn flash(&mut self, kind: &str, text: &str) {
        let value = json!({"kind": kind, "text": text}).to_string();
        let encoded = hex::encode(value.as_bytes());
        self.cookies.push(self.cookie(FLASH_COOKIE, &encoded, None));
    }

    /// `response` with this visit's cookies.
    pub fn finish(self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        for cookie in self.cookies {
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        response
    }

    /// A redirect after a form (303: the browser follows with GET).
    pub fn redirect(self, to: &str) -> Response {
        self.finish(Redirect::to(to))
    }

    fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> String {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure {
            c.push_str("; Secure");
        }
        c
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl FromRequestParts<Web> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let secure = web.config.secure_cookies;
        let mut visitor = Visitor {
            token: None,
            user: None,
            csrf: String::new(),
            session: String::new(),
            flash: None,
            path: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".to_owned()),
            cookies: Vec::new(),
            secure,
        };
        match cookie(&parts.headers, CSRF_COOKIE).filter(|c| is_token(c)) {
            Some(c) => visitor.csrf = c.to_owned(),
            None => {
                visitor.csrf = random_token();
                // A year: the token protects forms, it is not a credential.
                visitor.cookies.push(visitor.cookie(
                    CSRF_COOKIE,
                    &visitor.csrf.clone(),
                    Some(365 * 24 * 3600),
                ));
            }
        }
        visitor.session = hex::encode(&Sha256::digest(visitor.csrf.as_bytes())[..16]);
        if let Some(raw) = cookie(&parts.headers, FLASH_COOKIE) {
            visitor.flash = hex::decode(raw)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .filter(|f| f["text"].is_string());
            visitor
                .cookies
                .push(visitor.cookie(FLASH_COOKIE, "", Some(0)));
        }
        if let Some(token) = cookie(&parts.headers, SESSION_COOKIE).filter(|t| !t.is_empty()) {
            visitor.token = Some(token.to_owned());
            match web.api.send(visitor.call(Method::GET, "/me")).await {
                Ok(user) => visitor.user = Some(user),
                // Expired, revoked or disabled: signed out.
                Err(f) if f.status == StatusCode::UNAUTHORIZED => visitor.sign_out(),
                Err(f) => return Err(crate::render::failure_page(&f)),
            }
        }
        Ok(visitor)
    }
}

/// The fields of a posted form, once its CSRF token has been checked.
pub struct Form {
    pub visitor: Visitor,
    fields: Vec<(String, String)>,
}

impl Form {
    /// The field's value, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every field, as sent.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }
}

impl FromRequest<Web> for Form {
    type Rejection = Response;

    async fn from_request(req: Request, web: &Web) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, web).await?;
        if let (Some(origin), Some(host)) = (
            parts
                .headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok()),
            parts
                .headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok()),
        ) {
            // `null` (a privacy setting, say) tells nothing: the token decides.
            let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
            if origin != "null" && origin_host != host {
                return Err(forbidden("this form was sent from another site"));
            }
        }
        let req = Request::from_parts(parts, body);
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(req, web)
            .await
            .map_err(|e| {
                crate::render::failure_page(&Failure::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    e.body_text(),
                ))
            })?;
        let sent = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        // Without the cookie the token is a fresh one, which nothing carried.
        if !same(sent, &visitor.csrf) {
            return Err(forbidden(
                "the form has expired or was not sent from this shop; reload the page and try again",
            ));
        }
        Ok(Form { visitor, fields })
    }
}

fn forbidden(message: &str) -> Response {
    crate::render::failure_page(&Failure::new(StatusCode::FORBIDDEN, "csrf", message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; mercato_csrf=abc; b=2"),
        );
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "mercato"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcd", "abcd"));
        assert!(!same("abcd", "abce"));
        assert!(!same("abc", "abcd"));
        assert!(is_token(&random_token()));
        assert!(!is_token("xyz"));
    }
}
