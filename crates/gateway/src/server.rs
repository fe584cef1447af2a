//! The HTTP/1.1 server loop, with the limits that keep slow and idle clients
//! from holding the process: a cap on open connections, a time-out on
//! reading a request head (counted from its first byte), and a time-out on a
//! kept-alive connection that sends nothing. Request bodies have a time-out
//! of their own (see `observe`). On shutdown it stops accepting, lets
//! requests in flight finish for a while, then closes what is left.

use axum::extract::connect_info::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// What a client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed as soon as accepted.
    pub max_connections: usize,
    /// A request head must arrive whole within this, from its first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long
    /// without a new request starting (also a new connection that sends nothing).
    pub idle_timeout: Duration,
    /// How long requests in flight may take to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("mercato_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let watch = Arc::new(Watch::default());
        let io = TokioIo::new(Watched::new(stream, watch.clone(), limits));
        let service = hyper_util::service::TowerToHyperService::new(
            router
                .clone()
                .map_request({
                    let watch = watch.clone();
                    move |mut req: hyper::Request<hyper::body::Incoming>| {
                        watch.request_started();
                        req.extensions_mut().insert(ConnectInfo(peer));
                        req
                    }
                })
                .map_response({
                    let watch = watch.clone();
                    move |res: axum::response::Response| {
                        watch.request_answered();
                        res
                    }
                }),
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // hyper's own head time-out runs from when it starts waiting
            // for a head, idle time included: it is the idle limit here,
            // and `Watched` holds a started head to the shorter one.
            .header_read_timeout(limits.idle_timeout)
            .keep_alive(true)
            .serve_connection(io, service);
        let conn = graceful.watch(conn);
        let open = open.clone();
        open.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("mercato_http_connections_open").increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            open.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!("mercato_http_connections_open").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!(open = open.load(Ordering::Relaxed), "connections still open after the drain time-out; closing them");
        }
    }
}

/// What a connection's stream needs to know of its requests.
#[derive(Default)]
struct Watch {
    /// Requests handed to the router and not yet answered.
    in_flight: AtomicUsize,
    /// Bumped when a request reaches the router: its head is complete.
    heads: AtomicUsize,
    /// Answers the router has given.
    answers: AtomicUsize,
}

impl Watch {
    fn request_started(&self) {
        self.heads.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn request_answered(&self) {
        self.answers.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// At most this much is read at a time. hyper checks a head's size only
/// between reads, and a read fills whatever room its buffer has: a head far
/// over the limit that arrived all at once could be read whole and served.
/// In steps of this size it is refused (431) however it arrives.
const READ_CHUNK: usize = 16 * 1024;

/// How long, and how much, a closing connection reads and drops of what
/// its client still sends (see `Watched::poll_shutdown`).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 8 * 1024 * 1024;

/// A connection's stream, watched both ways.
///
/// Reads fail once a request head has been arriving for longer than the
/// head time-out: the first byte read while no request is in flight starts
/// the clock, the head reaching the router stops it.
///
/// Writes: the answers hyper gives by itself to a head it cannot parse (400,
/// 414 URI too long, 431 headers too large) have an empty body; they leave
/// in the JSON error shape instead, like every other error.
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
    header_read_timeout: Duration,
    /// The head being read: its deadline, and the head count when it began.
    head: Option<(Pin<Box<Sleep>>, usize)>,
    /// Router answers whose head has been written.
    answers_written: usize,
    /// A JSON answer standing in for hyper's bare one, and how much of it
    /// has been written.
    replacement: Option<(Vec<u8>, usize)>,
    /// Closing: until when, and how many more bytes, what the client still
    /// sends is read and dropped.
    linger: Option<(Pin<Box<Sleep>>, usize)>,
}

impl Watched {
    fn new(stream: TcpStream, watch: Arc<Watch>, limits: ConnectionLimits) -> Self {
        Self {
            stream,
            watch,
            header_read_timeout: limits.header_read_timeout,
            head: None,
            answers_written: 0,
            replacement: None,
            linger: None,
        }
    }
}

/// hyper's own answer to an unparsable head, in the JSON error shape; `None`
/// for anything else (a router answer, a body chunk).
fn json_for_bare_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let (code, message) = match rest.get(..4)? {
        b"400 " => ("bad_request", "the request could not be parsed"),
        b"414 " => ("uri_too_long", "the request target is too long"),
        b"431 " => ("headers_too_large", "the request headers are too large"),
        _ => return None,
    };
    // A head alone, with no body.
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if end != buf.len() {
        return None;
    }
    let status = std::str::from_utf8(&rest[..3]).ok()?;
    let reason = axum::http::StatusCode::from_bytes(status.as_bytes())
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let heads = this.watch.heads.load(Ordering::Acquire);
        if let Some((deadline, started_at)) = &mut this.head {
            if *started_at != heads {
                // That head reached the router.
                this.head = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                metrics::counter!("mercato_http_slow_heads_total").increment(1);
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received in time",
                )));
            }
        }
        let before = buf.filled().len();
        let read = if buf.remaining() <= READ_CHUNK {
            Pin::new(&mut this.stream).poll_read(cx, buf)
        } else {
            let mut chunk = [0u8; READ_CHUNK];
            let mut small = ReadBuf::new(&mut chunk);
            let read = Pin::new(&mut this.stream).poll_read(cx, &mut small);
            if let Poll::Ready(Ok(())) = read {
                buf.put_slice(small.filled());
            }
            read
        };
        if let Poll::Ready(Ok(())) = read {
            let got = buf.filled().len() > before;
            if got && this.head.is_none() && this.watch.in_flight.load(Ordering::Acquire) == 0 {
                let mut deadline = Box::pin(tokio::time::sleep_until(
                    Instant::now() + this.header_read_timeout,
                ));
                // Registers the waker, so that a stalled head wakes the reader.
                let _ = deadline.as_mut().poll(cx);
                this.head = Some((deadline, heads));
            }
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacement.is_none() && buf.starts_with(b"HTTP/1.1 ") {
            if this.watch.answers.load(Ordering::Acquire) > this.answers_written {
                this.answers_written += 1;
            } else if let Some(json) = json_for_bare_answer(buf) {
                this.replacement = Some((json, 0));
            }
        }
        // hyper hands the same buffer again until told it is written.
        if let Some((json, done)) = &mut this.replacement {
            while *done < json.len() {
                match Pin::new(&mut this.stream).poll_write(cx, &json[*done..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => *done += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            this.replacement = None;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    /// Closes the way a client can read the last answer: after the FIN,
    /// what the client still sends (the rest of a body refused with 413,
    /// say) is read and dropped for a while, because closing a socket with
    /// unread data resets the connection, and a reset can destroy the
    /// answer before the client reads it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.linger.is_none() {
            match Pin::new(&mut this.stream).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {}
                // Gone already: nothing left to protect.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
            this.linger = Some((Box::pin(tokio::time::sleep(LINGER_TIME)), LINGER_BYTES));
        }
        let Some((deadline, budget)) = &mut this.linger else {
            return Poll::Ready(Ok(()));
        };
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        let mut scratch = [0u8; READ_CHUNK];
        loop {
            let mut sink = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut sink) {
                Poll::Ready(Ok(())) if !sink.filled().is_empty() && *budget > 0 => {
                    *budget = budget.saturating_sub(sink.filled().len());
                }
                // The client's FIN, an error, or enough read: done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    // Not vectored: hyper then writes each answer's head at the start of a
    // buffer of its own, where `poll_write` can tell whose answer it is.
    fn is_write_vectored(&self) -> bool {
        false
    }
}
