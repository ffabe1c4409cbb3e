//! WeChat Work (`wechat_configs`, reference §4 wechat): an access token fetched with the
//! application secret (`gettoken`), kept two hours per integration, then `message/send`. The
//! message is built from the rendered fields by [`message`] (pure).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tocsin_core::config::{SecretSource, WechatConfig};
use tracing::warn;

use crate::fields::{Fields, Render};
use crate::sender::{Endpoint, HttpSender, Reply, Request};
use crate::{BoxFuture, FailureReason, Kept, Notifier, NotifyData, NotifyError, Shared, read_secret};

/// How long a token is used before a new one is fetched.
const TOKEN_LIFETIME: Duration = Duration::from_secs(2 * 3600);
/// WeChat's "access token expired".
const TOKEN_EXPIRED: i64 = 42001;

#[derive(Serialize, Debug, PartialEq)]
struct Content {
    content: String,
}

/// `message/send`'s body, keys in Alertmanager's order (both contents always present).
#[derive(Serialize, Debug, PartialEq)]
pub struct Message {
    text: Content,
    #[serde(rename = "touser", skip_serializing_if = "String::is_empty")]
    to_user: String,
    #[serde(rename = "toparty", skip_serializing_if = "String::is_empty")]
    to_party: String,
    #[serde(rename = "totag", skip_serializing_if = "String::is_empty")]
    to_tag: String,
    #[serde(rename = "agentid", skip_serializing_if = "String::is_empty")]
    agent_id: String,
    safe: &'static str,
    #[serde(rename = "msgtype")]
    message_type: String,
    markdown: Content,
}

fn templated(c: &WechatConfig) -> Vec<(String, &str)> {
    vec![
        ("corp_id".into(), &c.corp_id),
        ("message".into(), &c.message),
        ("to_user".into(), &c.to_user),
        ("to_party".into(), &c.to_party),
        ("to_tag".into(), &c.to_tag),
        ("agent_id".into(), &c.agent_id),
    ]
}

/// The message from the rendered fields (pure).
pub fn message(c: &WechatConfig, r: &mut Render<'_>) -> Message {
    let text = r.field("message", r#"{{ template "wechat.default.message" . }}"#);
    let markdown = c.message_type == "markdown";
    Message {
        text: Content {
            content: if markdown { String::new() } else { text.clone() },
        },
        to_user: r.field("to_user", ""),
        to_party: r.field("to_party", ""),
        to_tag: r.field("to_tag", ""),
        agent_id: r.field("agent_id", ""),
        safe: "0",
        message_type: c.message_type.clone(),
        markdown: Content {
            content: if markdown { text } else { String::new() },
        },
    }
}

/// A configured WeChat integration.
pub struct Wechat {
    cfg: Arc<WechatConfig>,
    fields: Arc<Fields>,
    sender: HttpSender,
    token: Mutex<Option<(String, Instant)>>,
    shared: Shared,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Wechat {
    /// Compiles the templates and builds the client.
    ///
    /// # Errors
    /// A template that does not parse, or a client that cannot be built.
    pub fn new(cfg: WechatConfig, user_agent: &str, shared: &Shared) -> Result<Self, String> {
        let fields = Fields::compile(&shared.templates, templated(&cfg)).map_err(|e| format!("wechat_configs {e}"))?;
        let sender = HttpSender::new("wechat", &cfg.http, user_agent)?.with_capture(shared.capture.clone());
        Ok(Wechat {
            cfg: Arc::new(cfg),
            fields: Arc::new(fields),
            sender,
            token: Mutex::new(None),
            shared: shared.clone(),
        })
    }

    fn endpoint(&self, path: &str, query: &[(&str, &str)], keep_query: bool) -> Endpoint {
        let mut url = reqwest::Url::parse(&self.cfg.api_url)
            .and_then(|u| u.join(path))
            .unwrap_or_else(|_| reqwest::Url::parse("http://invalid/").expect("a valid URL"));
        let mut pairs: Vec<(String, String)> = if keep_query {
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        } else {
            Vec::new()
        };
        pairs.extend(query.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        pairs.sort();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        self.sender.endpoint(SecretSource::Inline(url.to_string()))
    }

    async fn access_token(&self, corp_id: &str, secret: &str) -> Result<String, NotifyError> {
        if let Some((t, at)) = lock(&self.token).as_ref()
            && at.elapsed() < TOKEN_LIFETIME
        {
            return Ok(t.clone());
        }
        // The token request replaces whatever query the API URL has, as Alertmanager's does.
        let ep = self.endpoint("gettoken", &[("corpid", corp_id), ("corpsecret", secret)], false);
        let reply = self
            .sender
            .post(Request {
                endpoint: &ep,
                method: "GET",
                content_type: "",
                body: Vec::new(),
                authorization: None,
                headers: Vec::new(),
            })
            .await?;
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            access_token: String,
        }
        let t: Token = serde_json::from_slice(&reply.body).map_err(|e| {
            NotifyError::fatal(
                FailureReason::of_status(reply.status),
                format!("wechat: token answer: {e}"),
            )
        })?;
        if t.access_token.is_empty() {
            return Err(NotifyError::fatal(
                FailureReason::ClientError,
                format!("invalid APISecret for CorpID: {corp_id}"),
            ));
        }
        *lock(&self.token) = Some((t.access_token.clone(), Instant::now()));
        Ok(t.access_token)
    }

    /// The answer to `message/send`: only a 200 with `errcode` 0 succeeds; an expired token is
    /// dropped and the send retried.
    fn judge(&self, reply: &Reply) -> Result<(), NotifyError> {
        if reply.status != 200 {
            return Err(NotifyError::retryable(
                FailureReason::of_status(reply.status),
                format!("unexpected status code {}", reply.status),
            ));
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            #[serde(default)]
            errcode: i64,
            #[serde(default)]
            errmsg: String,
        }
        let a: Answer = serde_json::from_slice(&reply.body)
            .map_err(|e| NotifyError::retryable(FailureReason::Other, format!("wechat: answer: {e}")))?;
        match a.errcode {
            0 => Ok(()),
            TOKEN_EXPIRED => {
                *lock(&self.token) = None;
                Err(NotifyError::retryable(FailureReason::AuthError, a.errmsg))
            }
            _ => Err(NotifyError::fatal(FailureReason::ClientError, a.errmsg)),
        }
    }

    async fn send(&self, d: &NotifyData) -> Result<(), NotifyError> {
        let fatal = |m: String| NotifyError::fatal(FailureReason::Other, m);
        let secret = read_secret(&self.cfg.api_secret).map_err(fatal)?;
        let data = crate::email::template_data(d).to_value();
        let (cfg, fields) = (self.cfg.clone(), self.fields.clone());
        let (msg, corp_id, secret, errors) = tokio::task::spawn_blocking(move || {
            let mut r = fields.render(&data, jiff::Timestamp::now());
            let corp_id = r.field("corp_id", "");
            let secret = r.template(&secret).map_err(|e| format!("templating error: {e}"))?;
            let msg = message(&cfg, &mut r);
            Ok::<_, String>((msg, corp_id, secret, r.errors))
        })
        .await
        .map_err(|e| fatal(format!("rendering the templates failed: {e}")))?
        .map_err(fatal)?;
        if !errors.is_empty() {
            self.shared.template_errors.inc();
            warn!(group_key = %d.group_key, receiver = %d.receiver, integration = "wechat", ?errors, "template error; sending the default text for those fields");
        }
        // A dry run shows the token request's parameters: the secret among them is redacted.
        if let Some(c) = self.sender.capture() {
            c.secrets(std::slice::from_ref(&secret));
        }
        let token = self.access_token(&corp_id, &secret).await?;
        let ep = self.endpoint("message/send", &[("access_token", &token)], true);
        let mut body = serde_json::to_vec(&msg).map_err(|e| fatal(e.to_string()))?;
        body.push(b'\n');
        let reply = self
            .sender
            .post(Request {
                endpoint: &ep,
                method: "POST",
                content_type: "application/json",
                body,
                authorization: None,
                headers: Vec::new(),
            })
            .await?;
        self.judge(&reply).map_err(|e| reply.annotate(e))
    }
}

impl Notifier for Wechat {
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
        Box::pin(async move { self.send(data).await.map(|()| None) })
    }
}
