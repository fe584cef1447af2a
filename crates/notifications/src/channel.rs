//! Where messages go: e-mail over SMTP, or a local sink when no SMTP server
//! is configured (embedded mode, tests).

use crate::domain::OutgoingMessage;
use anyhow::Context as _;
use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Mutex;

/// Why a message was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Trying again cannot help (a malformed address, a mailbox the server
    /// refuses for good): the notification fails at once.
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }
}

/// A way to deliver a message.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    /// What the channel is for people (`email`).
    fn name(&self) -> &'static str;
    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError>;
}

/// The e-mail channel the settings ask for: SMTP when `smtp_url` is set,
/// otherwise the local sink in `data_dir`.
pub fn email_channel(
    smtp_url: Option<&str>,
    from: &str,
    timeout: Duration,
    data_dir: &Path,
) -> anyhow::Result<Arc<dyn Channel>> {
    match smtp_url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(url) => Ok(Arc::new(SmtpChannel::new(url, from, timeout)?)),
        None => Ok(Arc::new(LocalSink::in_data_dir(data_dir)?)),
    }
}

/// E-mail through an SMTP server.
pub struct SmtpChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpChannel {
    /// `url` is `smtp://user:pass@host:port` (STARTTLS with `?tls=required`)
    /// or `smtps://...`; `timeout` bounds connecting and every command.
    pub fn new(url: &str, from: &str, timeout: Duration) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("invalid notifications.smtp_url: {e}"))?
            .timeout(Some(timeout))
            .build();
        let from = from
            .parse::<Mailbox>()
            .with_context(|| format!("invalid notifications.from address {from:?}"))?;
        Ok(Self { transport, from })
    }

    fn message(&self, m: &OutgoingMessage) -> Result<Message, SendError> {
        let address = m
            .to_email
            .parse()
            .map_err(|e| SendError::permanent(format!("invalid recipient address: {e}")))?;
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(Some(m.to_name.clone()), address))
            .subject(m.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(m.body.clone())
            .map_err(|e| SendError::permanent(format!("building the e-mail: {e}")))
    }
}

#[async_trait]
impl Channel for SmtpChannel {
    fn name(&self) -> &'static str {
        crate::domain::EMAIL
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let email = self.message(message)?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::permanent(format!("smtp: {e}"))),
            Err(e) => Err(SendError::transient(format!("smtp: {e}"))),
        }
    }
}

/// Appends one JSON line per message to a file, synced before it counts as
/// sent: the e-mail channel's stand-in where there is no SMTP server, and
/// a record of what would have gone out.
pub struct LocalSink {
    path: PathBuf,
    // Lines from concurrent sends must not interleave.
    lock: Mutex<()>,
}

impl LocalSink {
    /// The sink of a data dir: `<data_dir>/notifications/sent.jsonl`.
    pub fn in_data_dir(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("notifications");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self::new(dir.join("sent.jsonl")))
    }

    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Channel for LocalSink {
    fn name(&self) -> &'static str {
        crate::domain::EMAIL
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<(), SendError> {
        let record = serde_json::json!({
            "notification_id": message.notification_id,
            "user_id": message.user_id,
            "template": message.template,
            "to": {"email": message.to_email, "name": message.to_name},
            "subject": message.subject,
            "body": message.body,
            "sent_at": mercato_kernel::time::to_db(&mercato_kernel::time::now()),
        });
        let mut line = record.to_string();
        line.push('\n');
        let io = |e: std::io::Error| {
            SendError::transient(format!("writing {}: {e}", self.path.display()))
        };
        let _guard = self.lock.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(io)?;
        file.write_all(line.as_bytes()).await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn message(to_email: &str) -> OutgoingMessage {
        OutgoingMessage {
            notification_id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            template: "order_shipped".into(),
            to_email: to_email.into(),
            to_name: "Ada".into(),
            subject: "Your order is on its way".into(),
            body: "Hello Ada,\n".into(),
        }
    }

    #[tokio::test]
    async fn the_local_sink_appends_one_json_line_per_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sink = LocalSink::in_data_dir(dir.path()).expect("sink");
        let (a, b) = (message("a@example.com"), message("b@example.com"));
        sink.send(&a).await.expect("sent");
        sink.send(&b).await.expect("sent");
        let text = std::fs::read_to_string(dir.path().join("notifications/sent.jsonl"))
            .expect("sink file");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["notification_id"], a.notification_id.to_string());
        assert_eq!(lines[1]["to"]["email"], "b@example.com");
        assert_eq!(lines[1]["body"], "Hello Ada,\n");
    }

    #[test]
    fn smtp_settings_are_checked_when_the_channel_is_built() {
        let t = Duration::from_secs(1);
        assert!(SmtpChannel::new("smtp://localhost:2525", "Shop <shop@example.com>", t).is_ok());
        assert!(SmtpChannel::new("http://localhost", "shop@example.com", t).is_err());
        assert!(SmtpChannel::new("smtp://localhost:2525", "not an address", t).is_err());
    }

    #[test]
    fn a_malformed_recipient_address_is_a_permanent_failure() {
        let channel = SmtpChannel::new(
            "smtp://localhost:2525",
            "shop@example.com",
            Duration::from_secs(1),
        )
        .expect("channel");
        let err = channel
            .message(&message("not an address"))
            .expect_err("refused");
        assert!(err.permanent);
        assert!(channel.message(&message("ada@example.com")).is_ok());
    }
}
