//! The shape every HTTP integration but the webhook takes: its config's templated fields
//! compiled once ([`Fields`]); per notification its secrets read, its request encoded from the
//! notification and the rendered fields by a pure function ([`Encoder::encode`], run on the
//! blocking pool within the template budgets), sent through the one HTTP seam
//! ([`HttpSender`]), and the reply judged by the integration's own rules ([`Encoder::judge`]).

use std::sync::Arc;

use tocsin_core::config::{HttpClientConfig, SecretSource};
use tocsin_core::nflog::ReceiverData;
use tracing::warn;

use crate::fields::{Fields, Render};
use crate::sender::{Endpoint, HttpSender, Reply, Request};
use crate::{BoxFuture, FailureReason, Kept, Notifier, NotifyData, NotifyError, Shared};

/// A request an encoder made.
pub struct Encoded {
    /// `POST` or `PUT`.
    pub method: &'static str,
    /// Where, when not the integration's configured endpoint (a URL built from the config
    /// and a secret, as Telegram's `/bot<token>/sendMessage`).
    pub url: Option<String>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// An `Authorization` of the integration's own (a Slack app token, an Opsgenie key).
    pub authorization: Option<String>,
    /// Headers of the integration's own (Rocket.Chat's tokens).
    pub headers: Vec<(String, String)>,
    /// What the judge needs of what was sent (Slack's channel).
    pub context: String,
    /// Sent instead when this request is refused for good (Slack's `chat.update` of a message
    /// that is gone): a kept message id, which a peer wrote, never stops a notification.
    pub fallback: Option<Box<Encoded>>,
}

impl Encoded {
    /// A JSON body with a trailing newline, as Go's encoder writes it.
    ///
    /// # Errors
    /// The value cannot be encoded (a float that is not finite).
    pub fn json(v: &impl serde::Serialize) -> Result<Encoded, String> {
        let mut body = serde_json::to_vec(v).map_err(|e| format!("encoding the request failed: {e}"))?;
        body.push(b'\n');
        Ok(Encoded {
            method: "POST",
            url: None,
            content_type: "application/json",
            body,
            authorization: None,
            headers: Vec::new(),
            context: String::new(),
            fallback: None,
        })
    }
}

/// One integration's protocol.
pub trait Encoder: Send + Sync + 'static {
    /// Its name (`slack`), in metrics and errors.
    const KIND: &'static str;
    /// Its templated fields, by name, with their text (each rendered with
    /// [`Render::field`], which names the fallback of a field that fails).
    fn fields(&self) -> Vec<(String, &str)>;
    /// The configured endpoint.
    fn endpoint(&self) -> SecretSource;
    /// `http_config`.
    fn http(&self) -> &HttpClientConfig;
    /// Secrets read at each send (files may be rotated), passed to [`Encoder::encode`].
    ///
    /// # Errors
    /// A secret file cannot be read.
    fn secrets(&self) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    /// Of what [`Encoder::secrets`] read, the values a dry run must not show (all of them,
    /// unless some are not secret, as Telegram's chat id).
    fn redacted(&self, secrets: &[String]) -> Vec<String> {
        secrets.to_vec()
    }
    /// The requests for one notification (pure), sent one after another until one fails (most
    /// integrations make one).
    ///
    /// # Errors
    /// The request cannot be made (a key that renders empty): the notification fails for good.
    fn encode(&self, d: &NotifyData, secrets: &[String], r: &mut Render<'_>) -> Result<Vec<Encoded>, String>;
    /// A reply judged.
    ///
    /// # Errors
    /// A failure, retryable or not.
    fn judge(&self, reply: &Reply, sent: &Encoded) -> Result<(), NotifyError>;
    /// What an accepted request leaves for the group's next notification (Slack's message id
    /// for `update_message`); `None` keeps what was kept.
    fn keep(&self, _reply: &Reply, _sent: &Encoded, _had: &ReceiverData) -> Kept {
        None
    }
}

/// An [`Encoder`] as a [`Notifier`].
pub struct HttpIntegration<E: Encoder> {
    enc: Arc<E>,
    fields: Arc<Fields>,
    sender: HttpSender,
    endpoint: Endpoint,
    shared: Shared,
}

impl<E: Encoder> HttpIntegration<E> {
    /// Compiles the encoder's fields and builds its client.
    ///
    /// # Errors
    /// A template that does not parse, or a client that cannot be built.
    pub fn new(enc: E, user_agent: &str, shared: &Shared) -> Result<Self, String> {
        let fields = compile(&enc, &shared.templates)?;
        let sender = HttpSender::new(E::KIND, enc.http(), user_agent)?.with_capture(shared.capture.clone());
        let endpoint = sender.endpoint(enc.endpoint());
        Ok(HttpIntegration {
            enc: Arc::new(enc),
            fields: Arc::new(fields),
            sender,
            endpoint,
            shared: shared.clone(),
        })
    }

    async fn send(&self, d: &NotifyData) -> Result<Kept, NotifyError> {
        let fatal = |m: String| NotifyError::fatal(FailureReason::Other, m);
        let secrets = self.enc.secrets().map_err(fatal)?;
        if let Some(c) = self.sender.capture() {
            c.secrets(&self.enc.redacted(&secrets));
        }
        let (enc, fields, d2) = (self.enc.clone(), self.fields.clone(), d.clone());
        // Templates come from the configuration: rendered on the blocking pool, within their
        // budgets, never on a runtime worker.
        let (sent, errors) =
            tokio::task::spawn_blocking(move || encode(&*enc, &fields, &d2, &secrets, jiff::Timestamp::now()))
                .await
                .map_err(|e| fatal(format!("rendering the templates failed: {e}")))?
                .map_err(fatal)?;
        if !errors.is_empty() {
            self.shared.template_errors.inc();
            warn!(group_key = %d.group_key, receiver = %d.receiver, integration = E::KIND, ?errors, "template error; sending the default text for those fields");
        }
        let mut kept: Kept = None;
        for req in sent {
            let mut req = req;
            loop {
                let elsewhere = req
                    .url
                    .as_ref()
                    .map(|u| self.sender.endpoint(SecretSource::Inline(u.clone())));
                let reply = self
                    .sender
                    .post(Request {
                        endpoint: elsewhere.as_ref().unwrap_or(&self.endpoint),
                        method: req.method,
                        content_type: req.content_type,
                        body: req.body.clone(),
                        authorization: req.authorization.clone(),
                        headers: req.headers.clone(),
                    })
                    .await?;
                match self.enc.judge(&reply, &req) {
                    Ok(()) => {
                        let had = kept.as_ref().unwrap_or(&d.receiver_data);
                        if let Some(k) = self.enc.keep(&reply, &req, had) {
                            kept = Some(k);
                        }
                        break;
                    }
                    Err(e) if !e.retryable && req.fallback.is_some() => {
                        warn!(group_key = %d.group_key, receiver = %d.receiver, integration = E::KIND, err = %e, "request refused; sending its fallback");
                        if let Some(f) = req.fallback.take() {
                            req = *f;
                        }
                    }
                    Err(e) => return Err(reply.annotate(e)),
                }
            }
        }
        Ok(kept)
    }
}

impl<E: Encoder> Notifier for HttpIntegration<E> {
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(self.send(data))
    }
}

/// An encoder's fields compiled on top of `templates`.
///
/// # Errors
/// Names the field whose template does not parse.
pub fn compile<E: Encoder>(enc: &E, templates: &tocsin_template::Template) -> Result<Fields, String> {
    Fields::compile(templates, enc.fields()).map_err(|e| format!("{}_configs {e}", E::KIND))
}

/// One notification's request and the template errors met (pure but for the templates' own
/// budgets): what [`HttpIntegration`] sends, for tests and dry runs.
///
/// # Errors
/// As [`Encoder::encode`].
pub fn encode<E: Encoder>(
    enc: &E,
    fields: &Fields,
    d: &NotifyData,
    secrets: &[String],
    now: jiff::Timestamp,
) -> Result<(Vec<Encoded>, Vec<String>), String> {
    let data = crate::email::template_data(d).to_value();
    let mut r = fields.render(&data, now);
    let sent = enc.encode(d, secrets, &mut r)?;
    Ok((sent, r.errors))
}

/// `s` cut to `n` characters, its last one `…` when cut (Alertmanager's `TruncateInRunes`);
/// whether it was cut.
pub fn truncate_runes(s: &str, n: usize) -> (String, bool) {
    if s.chars().count() <= n {
        return (s.to_string(), false);
    }
    if n <= 3 {
        return (s.chars().take(n).collect(), true);
    }
    let mut out: String = s.chars().take(n - 1).collect();
    out.push('…');
    (out, true)
}

/// [`truncate_runes`], with a warning naming the integration and field when it cut.
pub fn cut_runes(s: String, n: usize, what: &str, kind: &str) -> String {
    let (out, cut) = truncate_runes(&s, n);
    if cut {
        warn!(integration = kind, field = what, max_runes = n, "truncated a field");
    }
    out
}

/// A Slack-like list of fields (title, value, `short`) as templated fields named
/// `fields[i].title` and `fields[i].value`.
pub fn push_chat_fields<'a>(fields: &'a [(String, String, Option<bool>)], out: &mut Vec<(String, &'a str)>) {
    for (i, (t, v, _)) in fields.iter().enumerate() {
        out.push((format!("fields[{i}].title"), t));
        out.push((format!("fields[{i}].value"), v));
    }
}

/// `s` cut to at most `n` bytes on a character boundary, `…` included when cut (Alertmanager's
/// `TruncateInBytes`).
pub fn truncate_bytes(s: &str, n: usize) -> (String, bool) {
    if s.len() <= n {
        return (s.to_string(), false);
    }
    const ELLIPSIS: &str = "…";
    if n < ELLIPSIS.len() {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        return (s[..end].to_string(), true);
    }
    let mut end = n - ELLIPSIS.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (format!("{}{ELLIPSIS}", &s[..end]), true)
}

/// Whether every alert of the notification is resolved (the group's status is `resolved`).
pub fn all_resolved(d: &NotifyData) -> bool {
    d.alerts.iter().all(|a| !tocsin_core::time::is_zero(a.ends_at))
}

/// The SHA-256 of a group key in lowercase hex: the id Alertmanager derives from a group
/// (PagerDuty's dedup key, Opsgenie's alias, VictorOps' entity id).
pub fn group_hash(group_key: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(group_key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_in_runes_and_bytes_matches_alertmanagers() {
        assert_eq!(truncate_runes("abcdef", 6), ("abcdef".into(), false));
        assert_eq!(truncate_runes("abcdef", 4), ("abc…".into(), true));
        assert_eq!(truncate_runes("abcdef", 2), ("ab".into(), true));
        assert_eq!(truncate_runes("ééééé", 3), ("ééé".into(), true));
        assert_eq!(truncate_bytes("abcdef", 6), ("abcdef".into(), false));
        // 5 bytes: 2 of text and the 3-byte ellipsis.
        assert_eq!(truncate_bytes("abcdef", 5), ("ab…".into(), true));
        // "é" is 2 bytes: a cut never splits it.
        assert_eq!(truncate_bytes("éééé", 6), ("é…".into(), true));
    }
}
