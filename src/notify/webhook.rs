//! Webhooks: a digest posted as JSON, in a generic shape or shaped for Slack or Discord.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use super::error_chain;
use super::message::Digest;
use crate::detect::Severity;

/// The shape of a webhook's JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Every field of every ban, for your own tooling.
    Generic,
    /// `{"text": …}` for a Slack incoming webhook.
    Slack,
    /// `{"content": …}` for a Discord webhook, with mentions switched off.
    Discord,
}

impl WebhookFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Generic => "generic",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Discord => "discord",
        }
    }
}

/// One entry of `webhooks`: where ban notices are posted as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    /// http:// or https://; may hold a secret token, so only its host is ever shown.
    pub url: String,
    pub format: WebhookFormat,
    pub min_severity: Severity,
    /// Extra request headers (an `Authorization` token, say).
    pub headers: BTreeMap<String, String>,
    /// Seconds to collect bans into one post.
    pub digest_interval: u64,
    pub max_per_hour: u32,
    /// A PEM file of CA certificates trusted besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
}

impl WebhookSettings {
    pub fn new(url: &str, format: WebhookFormat) -> WebhookSettings {
        WebhookSettings {
            url: url.to_string(),
            format,
            min_severity: Severity::High,
            headers: BTreeMap::new(),
            digest_interval: 60,
            max_per_hour: 60,
            ca_file: None,
        }
    }
}

/// Why a webhook cannot be set up or posted to. Setup errors name the entry
/// (`webhooks[2]`); post errors name the channel (host only: the URL may hold a secret).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks[{index}].url: not a URL: {detail}")]
    Url { index: usize, detail: String },
    #[error("webhooks[{index}].headers.{name}: {detail}")]
    Header {
        index: usize,
        name: String,
        detail: String,
    },
    #[error("webhooks[{index}].ca_file {path}: cannot read it: {source}")]
    CaFile {
        index: usize,
        path: String,
        source: std::io::Error,
    },
    #[error("webhooks[{index}].ca_file {path}: not a PEM certificate: {detail}")]
    CaPem {
        index: usize,
        path: String,
        detail: String,
    },
    #[error("webhooks[{index}].ca_file {path}: no certificate in it")]
    NoCertificate { index: usize, path: String },
    #[error("webhooks[{index}]: cannot set up HTTP: {detail}")]
    Client { index: usize, detail: String },
    #[error("{0}")]
    Body(String),
    #[error("{name}: {detail}")]
    Post { name: String, detail: String },
    /// The receiver answered, but not with a success.
    #[error("{name}: HTTP {status}: {text}")]
    Status {
        name: String,
        status: reqwest::StatusCode,
        text: String,
    },
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct Poster {
    url: reqwest::Url,
    format: WebhookFormat,
    client: reqwest::Client,
    name: String,
}

impl Poster {
    pub fn new(cfg: &WebhookSettings, index: usize) -> Result<Poster, WebhookError> {
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| WebhookError::Url {
            index,
            detail: e.to_string(),
        })?;
        let header_error = |name: &str, detail: String| WebhookError::Header {
            index,
            name: name.to_string(),
            detail,
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name =
                HeaderName::from_bytes(k.as_bytes()).map_err(|e| header_error(k, e.to_string()))?;
            let mut value = HeaderValue::from_str(v).map_err(|e| header_error(k, e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &cfg.ca_file {
            let shown = path.display().to_string();
            let pem = std::fs::read(path).map_err(|source| WebhookError::CaFile {
                index,
                path: shown.clone(),
                source,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| WebhookError::CaPem {
                    index,
                    path: shown.clone(),
                    detail: error_chain(&e),
                })?;
            if certs.is_empty() {
                return Err(WebhookError::NoCertificate { index, path: shown });
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("security-monitor/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()
            .map_err(|e| WebhookError::Client {
                index,
                detail: error_chain(&e),
            })?;
        // The path and query of a Slack or Discord URL are its secret: show the host only.
        let name = format!(
            "webhook {} {}://{}{}",
            cfg.format.as_str(),
            url.scheme(),
            url.host_str().unwrap_or("?"),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        Ok(Poster {
            url,
            format: cfg.format,
            client,
            name,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn body(&self, d: &Digest) -> serde_json::Value {
        match self.format {
            WebhookFormat::Generic => d.generic_json(),
            WebhookFormat::Slack => d.slack_json(),
            WebhookFormat::Discord => d.discord_json(),
        }
    }

    pub async fn send(&self, d: &Digest) -> Result<(), WebhookError> {
        let body =
            serde_json::to_vec(&self.body(d)).map_err(|e| WebhookError::Body(e.to_string()))?;
        let resp = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| WebhookError::Post {
                name: self.name.clone(),
                detail: error_chain(&e.without_url()),
            })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        Err(WebhookError::Status {
            name: self.name.clone(),
            status,
            text: super::message::clean(text.trim(), 200),
        })
    }
}
