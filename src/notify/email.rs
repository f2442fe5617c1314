//! Mail through an SMTP server (lettre, rustls): STARTTLS, implicit TLS or plain, with
//! an optional login. Certificates are verified against the system's CAs plus
//! `email.ca_file`, unless `email.accept_invalid_certs` says otherwise.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::error_chain;
use super::message::Digest;
use crate::detect::Severity;

/// How the connection to the SMTP server is protected (`email.security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    StartTls,
    Tls,
    None,
}

/// The `email` section.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailSettings {
    pub enabled: bool,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    pub min_severity: Severity,
    /// Seconds to collect bans into one mail.
    pub digest_interval: u64,
    pub max_per_hour: u32,
    /// Only for test servers with self-signed certificates.
    pub accept_invalid_certs: bool,
    /// A PEM file of extra CA certificates to trust (a private CA or a self-signed
    /// server certificate), so verification can stay on.
    pub ca_file: Option<PathBuf>,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            enabled: false,
            smtp_host: "localhost".into(),
            smtp_port: 587,
            security: SmtpSecurity::StartTls,
            username: None,
            password: None,
            password_file: None,
            from: "security-monitor@localhost".into(),
            to: Vec::new(),
            min_severity: Severity::High,
            digest_interval: 300,
            max_per_hour: 12,
            accept_invalid_certs: false,
            ca_file: None,
        }
    }
}

/// How long one delivery may take, connection to QUIT.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Mailer {
    cfg: EmailSettings,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Mailer {
    /// Checks what can be checked before the first ban: the addresses, and that the
    /// password file and CA file can be read.
    pub fn new(cfg: &EmailSettings) -> Result<Mailer, String> {
        let from = cfg
            .from
            .parse::<Mailbox>()
            .map_err(|e| format!("email.from {:?} is not a mail address: {e}", cfg.from))?;
        let to = cfg
            .to
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse::<Mailbox>()
                    .map_err(|e| format!("email.to[{i}] {a:?} is not a mail address: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err("email.to is empty: give at least one recipient".into());
        }
        let m = Mailer {
            cfg: cfg.clone(),
            from,
            to,
        };
        m.password()?;
        m.tls()?;
        Ok(m)
    }

    /// What the channel is called in `status` and the journal.
    pub fn name(&self) -> String {
        format!(
            "email via {}:{} ({})",
            self.cfg.smtp_host,
            self.cfg.smtp_port,
            match self.cfg.security {
                SmtpSecurity::StartTls => "starttls",
                SmtpSecurity::Tls => "tls",
                SmtpSecurity::None => "no encryption",
            }
        )
    }

    /// The password, inline or read from `password_file` now (so a rotated file is
    /// picked up without a restart).
    fn password(&self) -> Result<Option<String>, String> {
        if let Some(p) = &self.cfg.password {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &self.cfg.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "email.password_file {}: cannot read it: {e} (it must be readable by the user the daemon runs as)",
                path.display()
            )
        })?;
        let pw = text.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(format!("email.password_file {} is empty", path.display()));
        }
        Ok(Some(pw))
    }

    fn tls(&self) -> Result<Option<TlsParameters>, String> {
        if self.cfg.security == SmtpSecurity::None {
            return Ok(None);
        }
        let mut b = TlsParameters::builder(self.cfg.smtp_host.clone());
        if let Some(path) = &self.cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("email.ca_file {}: cannot read it: {e}", path.display()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                format!(
                    "email.ca_file {}: not a PEM certificate: {}",
                    path.display(),
                    error_chain(&e)
                )
            })?;
            b = b.add_root_certificate(cert);
        }
        if self.cfg.accept_invalid_certs {
            b = b.dangerous_accept_invalid_certs(true);
        }
        b.build_rustls().map(Some).map_err(|e| {
            format!(
                "TLS settings for {}: {}",
                self.cfg.smtp_host,
                error_chain(&e)
            )
        })
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.cfg.smtp_host)
            .port(self.cfg.smtp_port)
            .timeout(Some(SMTP_TIMEOUT));
        b = match (self.cfg.security, self.tls()?) {
            (SmtpSecurity::StartTls, Some(t)) => b.tls(Tls::Required(t)),
            (SmtpSecurity::Tls, Some(t)) => b.tls(Tls::Wrapper(t)),
            _ => b.tls(Tls::None),
        };
        if let Some(user) = &self.cfg.username {
            let pw = self.password()?.unwrap_or_default();
            b = b.credentials(Credentials::new(user.clone(), pw));
        }
        Ok(b.build())
    }

    /// The mail for a digest. Only the subject is a header we fill with text of our own;
    /// log text goes into the body, escaped.
    pub fn message(&self, d: &Digest) -> Result<Message, String> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(d.subject())
            .header(ContentType::TEXT_PLAIN)
            .message_id(None);
        for t in &self.to {
            b = b.to(t.clone());
        }
        b.body(d.text())
            .map_err(|e| format!("cannot build the mail: {}", error_chain(&e)))
    }

    pub async fn send(&self, d: &Digest) -> Result<(), String> {
        let msg = self.message(d)?;
        let transport = self.transport()?;
        transport.send(msg).await.map(|_| ()).map_err(|e| {
            format!(
                "{}:{}: {}",
                self.cfg.smtp_host,
                self.cfg.smtp_port,
                error_chain(&e)
            )
        })
    }
}
