//! Dry runs: integrations built with a [`Capture`] in their [`crate::Shared`] record every request
//! they would send, through the same code that sends, and are answered as if the receiver
//! accepted it ([`accepted`]). What a dry run shows is therefore what a notification sends, byte
//! for byte, but for secrets: a URL keeps only its origin (receivers put tokens in paths and
//! queries), no credential header is kept, and each secret an integration read is replaced in
//! the body by `<secret>`.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::sender::Reply;

/// One request an integration would have sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Captured {
    /// The integration type (`webhook`, `email`…).
    pub integration: String,
    /// `POST`, `PUT`, `GET`, or `SMTP`.
    pub method: String,
    /// Where, its path and query replaced by `<secret>`.
    pub url: String,
    /// The body's type.
    pub content_type: String,
    /// The body (an email: the whole message, headers included), secrets replaced.
    pub body: String,
    /// For a request without a body (Pushover's notification, WeChat's token request), the
    /// query string's parameters, which are then its content, secrets replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Where integrations record their requests during a dry run; clones share the record.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    got: Arc<Mutex<Vec<Captured>>>,
    secrets: Arc<Mutex<Vec<String>>>,
}

impl Capture {
    /// Records one request, with every secret noted so far replaced in its body.
    pub fn record(&self, integration: &str, method: &str, url: &str, content_type: &str, body: &[u8]) {
        let secrets = lock(&self.secrets).clone();
        let redact = |mut s: String| {
            for secret in secrets.iter().filter(|s| s.len() >= 4) {
                s = s.replace(secret.as_str(), "<secret>");
            }
            s
        };
        let query = if body.is_empty() {
            url::Url::parse(url).ok().and_then(|u| {
                u.query()?;
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in u.query_pairs() {
                    q.append_pair(&k, &redact(v.into_owned()));
                }
                Some(q.finish())
            })
        } else {
            None
        };
        lock(&self.got).push(Captured {
            integration: integration.to_string(),
            method: method.to_string(),
            url: origin_only(url),
            content_type: content_type.to_string(),
            body: redact(String::from_utf8_lossy(body).into_owned()),
            query,
        });
    }

    /// Notes secrets an integration read (keys that may appear in its bodies).
    pub fn secrets(&self, secrets: &[String]) {
        lock(&self.secrets).extend(secrets.iter().cloned());
    }

    /// Takes what was recorded so far.
    pub fn take(&self) -> Vec<Captured> {
        std::mem::take(&mut *lock(&self.got))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A URL's scheme, host and port, with `/<secret>` for anything after them.
pub fn origin_only(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.has_host() => {
            let mut out = format!("{}://{}", u.scheme(), u.host_str().unwrap_or_default());
            if let Some(p) = u.port() {
                out.push_str(&format!(":{p}"));
            }
            // `smtp://host:port` has an empty path, `http://host:port` has `/`.
            if !matches!(u.path(), "" | "/") || u.query().is_some() {
                out.push_str("/<secret>");
            }
            out
        }
        _ => "<secret>".into(),
    }
}

/// The answer a captured request gets: one that every integration's judge takes as success
/// (Slack's and Telegram's `ok`, WeChat's `errcode` and token, Jira's empty search, Rocket.Chat's
/// `success`), so that multi-step protocols go on to the request that notifies.
pub fn accepted() -> Reply {
    Reply {
        status: 200,
        content_type: Some("application/json".into()),
        body: br#"{"ok":true,"success":true,"status":"success","errcode":0,"errmsg":"ok","access_token":"dry-run","expires_in":7200,"issues":[],"total":0,"key":"DRY-1","id":"1","result":{"message_id":1,"date":0,"chat":{"id":1,"type":"private"}}}"#.to_vec(),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_origin_and_bodies_lose_their_secrets() {
        assert_eq!(
            origin_only("https://hooks.slack.com/services/T0/B0/XX"),
            "https://hooks.slack.com/<secret>"
        );
        assert_eq!(origin_only("http://127.0.0.1:9/"), "http://127.0.0.1:9");
        assert_eq!(origin_only("http://h/?token=x"), "http://h/<secret>");
        assert_eq!(origin_only("not a url"), "<secret>");
        let c = Capture::default();
        c.secrets(&["routing-key-1".into(), "ab".into()]);
        c.record(
            "pagerduty",
            "POST",
            "https://events.pagerduty.com/v2/enqueue",
            "application/json",
            br#"{"routing_key":"routing-key-1","ab":1}"#,
        );
        let got = c.take();
        assert_eq!(
            got[0].body, r#"{"routing_key":"<secret>","ab":1}"#,
            "short strings are not taken for secrets"
        );
        assert!(c.take().is_empty());
        assert_eq!(
            origin_only("smtp://mail.example.org:587"),
            "smtp://mail.example.org:587"
        );
        c.secrets(&["t0ken-value".into()]);
        c.record(
            "pushover",
            "POST",
            "https://api.pushover.net/1/messages.json?token=t0ken-value&title=a+b%26c",
            "text/plain",
            b"",
        );
        let got = c.take();
        assert_eq!(got[0].url, "https://api.pushover.net/<secret>");
        assert_eq!(
            got[0].query.as_deref(),
            Some("token=%3Csecret%3E&title=a+b%26c"),
            "the parameters, their secrets replaced"
        );
    }
}
