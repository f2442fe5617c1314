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

/// Why mail cannot be set up or sent.
#[derive(Debug, thiserror::Error)]
pub enum EmailError {
    #[error("email.from {address:?} is not a mail address: {detail}")]
    From { address: String, detail: String },
    #[error("email.to[{index}] {address:?} is not a mail address: {detail}")]
    To {
        index: usize,
        address: String,
        detail: String,
    },
    #[error("email.to is empty: give at least one recipient")]
    NoRecipient,
    #[error("email.password_file {path}: cannot read it: {source} (it must be readable by the user the daemon runs as)")]
    PasswordFile {
        path: String,
        source: std::io::Error,
    },
    #[error("email.password_file {0} is empty")]
    EmptyPasswordFile(String),
    #[error("email.ca_file {path}: cannot read it: {source}")]
    CaFile {
        path: String,
        source: std::io::Error,
    },
    #[error("email.ca_file {path}: not a PEM certificate: {detail}")]
    CaPem { path: String, detail: String },
    #[error("TLS settings for {host}: {detail}")]
    Tls { host: String, detail: String },
    #[error("cannot build the mail: {0}")]
    Build(String),
    /// The server refused or could not be reached.
    #[error("{host}:{port}: {detail}")]
    Send {
        host: String,
        port: u16,
        detail: String,
    },
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
    pub fn new(cfg: &EmailSettings) -> Result<Mailer, EmailError> {
        let from = cfg.from.parse::<Mailbox>().map_err(|e| EmailError::From {
            address: cfg.from.clone(),
            detail: e.to_string(),
        })?;
        let to = cfg
            .to
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse::<Mailbox>().map_err(|e| EmailError::To {
                    index: i,
                    address: a.clone(),
                    detail: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(EmailError::NoRecipient);
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
    fn password(&self) -> Result<Option<String>, EmailError> {
        if let Some(p) = &self.cfg.password {
            return Ok(Some(p.clone()));
        }
        let Some(path) = &self.cfg.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| EmailError::PasswordFile {
            path: path.display().to_string(),
            source,
        })?;
        let pw = text.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(EmailError::EmptyPasswordFile(path.display().to_string()));
        }
        Ok(Some(pw))
    }

    fn tls(&self) -> Result<Option<TlsParameters>, EmailError> {
        if self.cfg.security == SmtpSecurity::None {
            return Ok(None);
        }
        let mut b = TlsParameters::builder(self.cfg.smtp_host.clone());
        if let Some(path) = &self.cfg.ca_file {
            let pem = std::fs::read(path).map_err(|source| EmailError::CaFile {
                path: path.display().to_string(),
                source,
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| EmailError::CaPem {
                path: path.display().to_string(),
                detail: error_chain(&e),
            })?;
            b = b.add_root_certificate(cert);
        }
        if self.cfg.accept_invalid_certs {
            b = b.dangerous_accept_invalid_certs(true);
        }
        b.build_rustls().map(Some).map_err(|e| EmailError::Tls {
            host: self.cfg.smtp_host.clone(),
            detail: error_chain(&e),
        })
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, EmailError> {
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
    pub fn message(&self, d: &Digest) -> Result<Message, EmailError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(d.subject())
            .header(ContentType::TEXT_PLAIN)
            .message_id(None);
        for t in &self.to {
            b = b.to(t.clone());
        }
        b.body(d.text())
            .map_err(|e| EmailError::Build(error_chain(&e)))
    }

    pub async fn send(&self, d: &Digest) -> Result<(), EmailError> {
        let msg = self.message(d)?;
        let transport = self.transport()?;
        transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| EmailError::Send {
                host: self.cfg.smtp_host.clone(),
                port: self.cfg.smtp_port,
                detail: error_chain(&e),
            })
    }
}
