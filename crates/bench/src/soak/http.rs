//! Requests of the soak's well-behaved clients: each goes through the shared
//! HTTP client, is read whole, and is filed with the [`Recorder`].

use super::record::{Op, Recorder, Request};
use crate::api::Api;
use reqwest::Method;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request to `/api/v1{path}`; `template` is the path with ids as `{id}`.
pub struct Call<'a> {
    pub op: Op,
    pub method: Method,
    pub template: &'a str,
    pub path: String,
    pub token: Option<&'a str>,
    pub body: Option<Value>,
    pub key: Option<String>,
    pub timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    pub fn new(op: Op, method: Method, template: &'a str, path: impl Into<String>) -> Self {
        Call {
            op,
            method,
            template,
            path: path.into(),
            token: None,
            body: None,
            key: None,
            timeout: None,
        }
    }

    pub fn get(op: Op, template: &'a str, path: impl Into<String>) -> Self {
        Call::new(op, Method::GET, template, path)
    }

    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A read answer.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn is_server_error(&self) -> bool {
        self.status >= 500
    }
}

#[derive(Clone)]
pub struct Http {
    pub api: Api,
    pub rec: Arc<Recorder>,
}

impl Http {
    /// Sends the call and reads its answer; `None` when no status was read
    /// (connection failure or time-out). Either way it is recorded.
    pub async fn send(&self, call: Call<'_>) -> Option<Reply> {
        let path = format!("/api/v1{}", call.path);
        let mut req = self
            .api
            .client()
            .request(call.method.clone(), self.api.url(&path));
        if let Some(t) = call.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        if let Some(k) = &call.key {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(t) = call.timeout {
            req = req.timeout(t);
        }
        let started = Instant::now();
        let answer = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        }
        .await;
        match answer {
            Ok((status, bytes)) => {
                let template = format!("/api/v1{}", call.template);
                self.rec.answered(
                    &Request {
                        op: call.op,
                        method: call.method.as_str(),
                        template: &template,
                        path: &path,
                    },
                    status,
                    &bytes,
                    started.elapsed(),
                );
                Some(Reply {
                    status,
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                })
            }
            Err(_) => {
                self.rec.no_answer(call.op);
                None
            }
        }
    }
}
