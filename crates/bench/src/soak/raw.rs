//! Clients that misbehave, on raw TCP connections: one sends a complete,
//! valid request and closes the socket a few milliseconds later without
//! reading (the server then cancels the request wherever it is), the other
//! trickles its request head a byte at a time, holding a connection open.

use anyhow::{bail, Context};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A slow client reads at most this much of its answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where raw requests go: a `host:port` to connect to, the `Host` header,
/// and the base URL's path (empty at the root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub connect: String,
    pub host: String,
    pub path_prefix: String,
}

impl Target {
    /// The target of an `http://` base URL (raw clients speak no TLS).
    pub fn from_base_url(base: &str) -> anyhow::Result<Target> {
        let url = reqwest::Url::parse(base).with_context(|| format!("parsing {base}"))?;
        if url.scheme() != "http" {
            bail!("raw clients need an http:// base URL, not {}", url.scheme());
        }
        let host = url
            .host_str()
            .with_context(|| format!("{base} has no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let host_port = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Target {
            connect: host_port.clone(),
            host: host_port,
            path_prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.connect)).await {
            Ok(r) => {
                let s = r?;
                s.set_nodelay(true)?;
                Ok(s)
            }
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            )),
        }
    }

    /// A whole HTTP/1.1 request with a JSON body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: &str,
        idempotency_key: &str,
        body: &[u8],
    ) -> Vec<u8> {
        let mut out = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nIdempotency-Key: {idempotency_key}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.path_prefix,
            self.host,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Connects, sends `request` whole, waits `hang_up_after` and closes the
    /// socket without reading anything.
    pub async fn hang_up(&self, request: &[u8], hang_up_after: Duration) -> std::io::Result<()> {
        let mut stream = self.connect().await?;
        stream.write_all(request).await?;
        if !hang_up_after.is_zero() {
            tokio::time::sleep(hang_up_after).await;
        }
        drop(stream);
        Ok(())
    }

    /// Sends `GET {path}` with its head trickled: one byte of a header value
    /// every `every`, `bytes` times (stopping early when `stop` says so), then
    /// the end of the head; then reads the answer within `read_within`.
    pub async fn slow_get(
        &self,
        path: &str,
        bytes: usize,
        every: Duration,
        read_within: Duration,
        stop: impl Fn() -> bool,
    ) -> SlowOutcome {
        let Ok(mut stream) = self.connect().await else {
            return SlowOutcome::NoConnection;
        };
        let head = format!(
            "GET {}{path} HTTP/1.1\r\nHost: {}\r\nX-Soak-Slow: ",
            self.path_prefix, self.host
        );
        if stream.write_all(head.as_bytes()).await.is_err() {
            return SlowOutcome::Closed;
        }
        for _ in 0..bytes {
            tokio::time::sleep(every).await;
            if stop() {
                return SlowOutcome::Abandoned;
            }
            if stream.write_all(b"z").await.is_err() {
                return SlowOutcome::Closed;
            }
        }
        if stream
            .write_all(b"\r\nConnection: close\r\n\r\n")
            .await
            .is_err()
        {
            return SlowOutcome::Closed;
        }
        let mut answer = Vec::new();
        let read = tokio::time::timeout(read_within, async {
            let mut buf = [0u8; 8192];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        answer.extend_from_slice(&buf[..n]);
                        if answer.len() >= MAX_ANSWER_BYTES {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
        .await;
        match parse_status(&answer) {
            Some(status) => SlowOutcome::Answered {
                status,
                body: body_of(&answer).to_vec(),
            },
            None if read.is_err() => SlowOutcome::NoAnswer,
            None => SlowOutcome::Closed,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum SlowOutcome {
    /// The server answered once the head was complete.
    Answered {
        status: u16,
        body: Vec<u8>,
    },
    /// The server closed the connection without an answer.
    Closed,
    /// Nothing came back in time.
    NoAnswer,
    NoConnection,
    /// The run ended while the head was being trickled.
    Abandoned,
}

/// The status code of an HTTP/1.x answer's status line.
pub fn parse_status(answer: &[u8]) -> Option<u16> {
    let line_end = answer.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&answer[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

fn body_of(answer: &[u8]) -> &[u8] {
    match answer.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &answer[i + 4..],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_http_base_urls() {
        let t = Target::from_base_url("http://127.0.0.1:8080").expect("target");
        assert_eq!(t.connect, "127.0.0.1:8080");
        assert_eq!(t.path_prefix, "");
        let t = Target::from_base_url("http://localhost/shop/").expect("target");
        assert_eq!(t.connect, "localhost:80");
        assert_eq!(t.path_prefix, "/shop");
        assert!(Target::from_base_url("https://example.com").is_err());
    }

    #[test]
    fn requests_are_complete() {
        let t = Target::from_base_url("http://127.0.0.1:9").expect("target");
        let r = t.request("POST", "/api/v1/checkout", "tok", "key-1", b"{}");
        let text = String::from_utf8(r).expect("utf-8");
        assert!(text.starts_with("POST /api/v1/checkout HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"));
        assert!(text.contains("Authorization: Bearer tok\r\n"));
        assert!(text.contains("Idempotency-Key: key-1\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\nConnection: close\r\n\r\n{}"));
    }

    #[test]
    fn status_lines_and_bodies() {
        let a = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\r\n{\"error\":1}";
        assert_eq!(parse_status(a), Some(503));
        assert_eq!(body_of(a), b"{\"error\":1}");
        assert_eq!(parse_status(b"HTTP/1.1 200"), None);
        assert_eq!(parse_status(b"garbage\r\n"), None);
        assert_eq!(body_of(b"HTTP/1.1 200 OK\r\n"), b"");
    }

    #[tokio::test]
    async fn a_slow_client_is_answered_once_its_head_is_complete() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 64];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).await.expect("read");
                head.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\nno")
                .await
                .expect("write");
            String::from_utf8(head).expect("utf-8")
        });
        let t = Target::from_base_url(&format!("http://127.0.0.1:{port}")).expect("target");
        let outcome = t
            .slow_get(
                "/x",
                3,
                Duration::from_millis(1),
                Duration::from_secs(5),
                || false,
            )
            .await;
        assert_eq!(
            outcome,
            SlowOutcome::Answered {
                status: 500,
                body: b"no".to_vec()
            }
        );
        let head = server.await.expect("server");
        assert!(head.contains("X-Soak-Slow: zzz\r\n"));
    }
}
