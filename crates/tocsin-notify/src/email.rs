//! The email integration (§2.5): renders subject, headers and bodies from templates and sends
//! one message per notification over SMTP with lettre (rustls): plain, STARTTLS (required by
//! default) or implicit TLS, AUTH PLAIN/LOGIN.
//!
//! Rendering fails safe: when a template errors at send time the message is still sent, with a
//! body that names the error above the default alert list (Alertmanager drops the notification).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Identity, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tocsin_core::config::{EmailConfig, ThreadBy, TlsConfig};
use tocsin_core::time::is_zero;
use tocsin_template::data::{Alert as TAlert, Data};
use tocsin_template::{Options, Template, Value};
use tracing::warn;

use crate::{BoxFuture, FailureReason, Kept, Notifier, NotifyData, NotifyError, Shared, read_secret};

/// Bound on one SMTP conversation; the flush deadline bounds the retries.
const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// One `email_configs` item.
pub struct Email {
    cfg: Arc<EmailConfig>,
    shared: Shared,
}

impl Email {
    /// Validates the config's templates (a template that does not parse is a config error).
    ///
    /// # Errors
    /// Names the field whose template does not parse.
    pub fn new(cfg: EmailConfig, shared: &Shared) -> Result<Self, String> {
        let mut fields: Vec<(String, &str)> = vec![
            ("to".into(), &cfg.to),
            ("html".into(), &cfg.html),
            ("text".into(), &cfg.text),
        ];
        fields.extend(cfg.headers.iter().map(|(k, v)| (format!("headers.{k}"), v.as_str())));
        for (field, src) in fields {
            shared
                .templates
                .check(src)
                .map_err(|e| format!("email_configs {field}: {e}"))?;
        }
        Ok(Email {
            cfg: Arc::new(cfg),
            shared: shared.clone(),
        })
    }
}

/// Alertmanager's template data for a notification.
pub fn template_data(d: &NotifyData) -> Data {
    let p = crate::webhook::payload(d, 0);
    let kv = |l: &tocsin_core::labels::LabelSet| l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Data {
        receiver: p.receiver,
        status: p.status.into(),
        alerts: d
            .alerts
            .iter()
            .zip(&p.alerts)
            .map(|(a, pa)| TAlert {
                status: pa.status.into(),
                labels: kv(&a.labels),
                annotations: kv(&a.annotations),
                starts_at: Some(a.starts_at),
                ends_at: (!is_zero(a.ends_at)).then_some(a.ends_at),
                generator_url: a.generator_url.to_string(),
                fingerprint: pa.fingerprint.to_string(),
            })
            .collect(),
        group_labels: kv(p.group_labels),
        common_labels: kv(&p.common_labels),
        common_annotations: kv(&p.common_annotations),
        external_url: p.external_url.to_string(),
        notification_reason: p.notification_reason.into(),
        route_labels: kv(&d.route_labels),
    }
}

/// The rendered parts of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Header name → value, `Subject`, `To` and `From` included.
    pub headers: Vec<(String, String)>,
    /// Envelope recipients, comma-separated.
    pub to: String,
    /// Text part.
    pub text: Option<String>,
    /// HTML part.
    pub html: Option<String>,
    /// Template errors met (the message then carries a fallback body).
    pub errors: Vec<String>,
}

/// Renders every templated field; template errors are collected, not fatal.
pub fn render(cfg: &EmailConfig, templates: &Template, data: &Value, now: jiff::Timestamp) -> Rendered {
    let mut errors = Vec::new();
    let mut run = |src: &str, html: bool, what: &str| -> Option<String> {
        match templates.execute_str(src, data, &Options { html, now }) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(format!("{what}: {e}"));
                None
            }
        }
    };
    let opts = Options { html: false, now };
    let fallback_subject = || {
        templates
            .execute("email.default.subject", data, &opts)
            .unwrap_or_else(|_| "[Tocsin] notification".into())
    };
    let headers: Vec<(String, String)> = cfg
        .headers
        .iter()
        .map(|(k, v)| {
            let value = run(v, false, &format!("header {k}")).unwrap_or_else(|| match k.as_str() {
                "Subject" => fallback_subject(),
                _ => v.clone(),
            });
            (k.clone(), value)
        })
        .collect();
    let to = run(&cfg.to, false, "to").unwrap_or_else(|| cfg.to.clone());
    let html = (!cfg.html.is_empty()).then(|| run(&cfg.html, true, "html")).flatten();
    let text = (!cfg.text.is_empty()).then(|| run(&cfg.text, false, "text")).flatten();
    let text_failed = !cfg.text.is_empty() && text.is_none();
    let html_failed = !cfg.html.is_empty() && html.is_none();
    // Fail safe, field by field: what rendered is sent as rendered (a failing header has its
    // own fallback above). A body part that failed is replaced by a text naming the error and
    // listing the alerts as the default text template does, unless another part rendered.
    let text = if text_failed || (html_failed && text.is_none() && html.is_none()) {
        let list = templates
            .execute("email.default.text", data, &opts)
            .unwrap_or_else(|e| format!("(the default template failed too: {e})"));
        Some(format!(
            "Tocsin could not render this notification's template, so it sent this fallback message.\n\n{}\n\n{list}",
            errors.join("\n")
        ))
    } else {
        text
    };
    Rendered {
        headers,
        to,
        text,
        html,
        errors,
    }
}

fn fatal(msg: String) -> NotifyError {
    NotifyError::fatal(FailureReason::Other, msg)
}

fn read(inline: &Option<String>, file: &Option<std::path::PathBuf>) -> Result<Option<Vec<u8>>, String> {
    match (inline, file) {
        (Some(pem), _) => Ok(Some(pem.as_bytes().to_vec())),
        (None, Some(f)) => std::fs::read(f)
            .map(Some)
            .map_err(|e| format!("unable to read {}: {e}", f.display())),
        _ => Ok(None),
    }
}

fn tls_parameters(host: &str, tls: &TlsConfig) -> Result<TlsParameters, String> {
    let domain = tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let mut b = TlsParameters::builder(domain).dangerous_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(pem) = read(&tls.ca, &tls.ca_file)? {
        b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| format!("invalid CA certificate: {e}"))?);
    }
    if let (Some(cert), Some(key)) = (read(&tls.cert, &tls.cert_file)?, &tls.key) {
        let key = read_secret(key)?;
        b = b.identify_with(
            Identity::from_pem(&cert, key.as_bytes()).map_err(|e| format!("invalid client certificate or key: {e}"))?,
        );
    }
    b.build_rustls().map_err(|e| format!("TLS configuration: {e}"))
}

/// The message id every mail of one group's thread refers to, as Alertmanager 0.30+ makes it:
/// `<alert-{first 16 hex digits of SHA-256(group key)}-{local date or nothing}@alertmanager>`.
pub fn thread_id(group_key: &str, by: ThreadBy, today: jiff::civil::Date) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(group_key.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let date = match by {
        ThreadBy::Group => String::new(),
        ThreadBy::Day => today.to_string(),
    };
    format!("<alert-{hex}-{date}@alertmanager>")
}

impl Email {
    async fn send(&self, d: &NotifyData) -> Result<(), NotifyError> {
        let cfg = &self.cfg;
        let data = template_data(d).to_value();
        // Templates come from the configuration: rendering runs on the blocking pool (its work
        // and value budgets bound it; the attempt's deadline bounds the wait for it), never on a
        // runtime worker that also serves ingest and other sends.
        let (c, templates) = (self.cfg.clone(), self.shared.templates.clone());
        let r = tokio::task::spawn_blocking(move || render(&c, &templates, &data, jiff::Timestamp::now()))
            .await
            .map_err(|e| fatal(format!("rendering the templates failed: {e}")))?;
        if !r.errors.is_empty() {
            self.shared.template_errors.inc();
            warn!(
                group_key = %d.group_key,
                receiver = %d.receiver,
                integration = "email",
                errors = ?r.errors,
                "template error; sending a fallback message"
            );
        }
        let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let from: Mailbox = header("From")
            .unwrap_or(&cfg.from)
            .parse()
            .map_err(|e| fatal(format!("parse 'from' addresses: {e}")))?;
        let rcpts: Mailboxes = r.to.parse().map_err(|e| fatal(format!("parse 'to' addresses: {e}")))?;
        let mut b = Message::builder().from(from).date_now().message_id(None);
        for (k, v) in &r.headers {
            match k.as_str() {
                "From" => {}
                "To" => {
                    let to: Mailboxes = v.parse().map_err(|e| fatal(format!("parse 'To' header: {e}")))?;
                    for m in to {
                        b = b.to(m);
                    }
                }
                "Subject" => b = b.subject(v.clone()),
                _ => {
                    let name = HeaderName::new_from_ascii(k.clone()).map_err(|e| fatal(format!("header {k}: {e}")))?;
                    b = b.raw_header(HeaderValue::new(name, v.clone()));
                }
            }
        }
        if let Some(by) = cfg.threading {
            let id = thread_id(&d.group_key, by, jiff::ZonedDateTime::now().date());
            for h in ["References", "In-Reply-To"] {
                let name = HeaderName::new_from_ascii_str(h);
                b = b.raw_header(HeaderValue::new(name, id.clone()));
            }
        }
        let msg = match (r.text, r.html) {
            (Some(t), Some(h)) => b.multipart(MultiPart::alternative_plain_html(t, h)),
            (None, Some(h)) => b.singlepart(SinglePart::html(h)),
            (Some(t), None) => b.singlepart(SinglePart::plain(t)),
            (None, None) => b.singlepart(SinglePart::plain(String::new())),
        }
        .map_err(|e| fatal(format!("build message: {e}")))?;
        let envelope = lettre::address::Envelope::new(
            msg.envelope().from().cloned(),
            rcpts.into_iter().map(|m| m.email).collect(),
        )
        .map_err(|e| fatal(format!("envelope: {e}")))?;
        if let Some(c) = &self.shared.capture {
            let url = format!("smtp://{}:{}", cfg.host, cfg.port);
            c.record("email", "SMTP", &url, "message/rfc822", &msg.formatted());
            return Ok(());
        }

        let params = tls_parameters(&cfg.host, &cfg.tls).map_err(fatal)?;
        let tls = if cfg.implicit_tls {
            Tls::Wrapper(params)
        } else if cfg.require_tls {
            Tls::Required(params)
        } else {
            Tls::None
        };
        let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            .port(cfg.port)
            .tls(tls)
            .hello_name(ClientId::Domain(cfg.hello.clone()))
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = &cfg.auth_username {
            // Go's rule (net/smtp PlainAuth): credentials travel only over TLS, or to this host.
            if !cfg.implicit_tls && !cfg.require_tls && !is_loopback(&cfg.host) {
                return Err(fatal(format!(
                    "refusing to send SMTP credentials to {}:{} over an unencrypted connection: set require_tls (or use TLS on connect), or relay through a smarthost on this host",
                    cfg.host, cfg.port
                )));
            }
            let pw = cfg.auth_password.as_ref().map(read_secret).transpose().map_err(fatal)?;
            t = t
                .credentials(Credentials::new(user.clone(), pw.unwrap_or_default()))
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        let addr = format!("{}:{}", cfg.host, cfg.port);
        match t.build().send_raw(&envelope, &msg.formatted()).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let hint = if cfg.require_tls && !cfg.implicit_tls && e.to_string().contains("STARTTLS") {
                    " ('require_tls' is true (the default) but the server does not offer STARTTLS)"
                } else {
                    ""
                };
                let msg = format!("send email via {addr}: {e}{hint}");
                Err(if e.is_permanent() {
                    NotifyError::fatal(FailureReason::ClientError, msg)
                } else if e.is_transient() {
                    NotifyError::retryable(FailureReason::ServerError, msg)
                } else {
                    NotifyError::retryable(FailureReason::Other, msg)
                })
            }
        }
    }
}

/// Whether `host` is this machine, where plaintext credentials never cross a network.
fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Notifier for Email {
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move { self.send(data).await.map(|()| None) })
    }
}

#[cfg(test)]
mod loopback_tests {
    #[test]
    fn only_this_host_counts_as_loopback() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"] {
            assert!(super::is_loopback(h), "{h}");
        }
        for h in ["smtp.example.com", "10.0.0.1", "localhost.example.com"] {
            assert!(!super::is_loopback(h), "{h}");
        }
    }
}
