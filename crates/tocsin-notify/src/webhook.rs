//! The webhook integration: payload version 4 (§5.5), field for field.

use std::borrow::Cow;

use serde::Serialize;
use tocsin_core::alert::Alert;
use tocsin_core::config::WebhookConfig;
use tocsin_core::labels::{Fingerprint, LabelSet};
use tocsin_core::time::{Nanos, is_zero};

use crate::{BoxFuture, FailureReason, Notifier, NotifyData, NotifyError, read_secret};

/// One alert in a webhook payload, borrowed from the alert it describes.
#[derive(Debug, Serialize, PartialEq)]
pub struct PayloadAlert<'a> {
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Labels.
    pub labels: &'a LabelSet,
    /// Annotations.
    pub annotations: &'a LabelSet,
    /// RFC 3339 with nanoseconds.
    #[serde(rename = "startsAt")]
    pub starts_at: Nanos,
    /// `0001-01-01T00:00:00Z` for firing alerts.
    #[serde(rename = "endsAt")]
    pub ends_at: Nanos,
    /// May be empty.
    #[serde(rename = "generatorURL")]
    pub generator_url: &'a str,
    /// 16 hex digits.
    pub fingerprint: Fingerprint,
}

/// The webhook body, in Alertmanager's field order. It borrows from the notification's data:
/// building it sends a burst of notifications without copying labels or formatting timestamps
/// into strings first.
#[derive(Debug, Serialize, PartialEq)]
pub struct Payload<'a> {
    /// Receiver name, regex-quoted.
    pub receiver: String,
    /// `firing` if any alert fires.
    pub status: &'static str,
    /// The alerts sent.
    pub alerts: Vec<PayloadAlert<'a>>,
    /// Why this notification is sent.
    pub notification_reason: &'static str,
    /// Group labels.
    #[serde(rename = "groupLabels")]
    pub group_labels: &'a LabelSet,
    /// Labels equal on all alerts sent.
    #[serde(rename = "commonLabels")]
    pub common_labels: Cow<'a, LabelSet>,
    /// Annotations equal on all alerts sent.
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: Cow<'a, LabelSet>,
    /// External URL.
    #[serde(rename = "externalURL")]
    pub external_url: &'a str,
    /// Always `"4"`.
    pub version: &'static str,
    /// Group key.
    #[serde(rename = "groupKey")]
    pub group_key: &'a str,
    /// Alerts dropped by `max_alerts`.
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
}

/// Escapes regex metacharacters like Go's `regexp.QuoteMeta`.
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The labels equal on every set; borrowed from the first set while that is all of them (the
/// usual single-alert notification copies nothing).
fn common<'a>(mut sets: impl Iterator<Item = &'a LabelSet>) -> Cow<'a, LabelSet> {
    let Some(first) = sets.next() else {
        return Cow::Owned(LabelSet::new());
    };
    let mut acc = Cow::Borrowed(first);
    for m in sets {
        if !acc.iter().all(|(k, v)| m.get(k) == Some(v)) {
            acc.to_mut().retain(|k, v| m.get(k) == Some(v));
        }
    }
    acc
}

fn payload_alert(a: &Alert) -> PayloadAlert<'_> {
    PayloadAlert {
        status: if is_zero(a.ends_at) { "firing" } else { "resolved" },
        labels: &a.labels,
        annotations: &a.annotations,
        starts_at: Nanos(a.starts_at),
        ends_at: Nanos(a.ends_at),
        generator_url: &a.generator_url,
        fingerprint: a.fingerprint,
    }
}

/// Builds the version 4 payload; `max_alerts` = 0 keeps every alert.
pub fn payload(data: &NotifyData, max_alerts: u64) -> Payload<'_> {
    let keep = if max_alerts == 0 {
        data.alerts.len()
    } else {
        data.alerts.len().min(max_alerts as usize)
    };
    let sent = &data.alerts[..keep];
    let alerts: Vec<PayloadAlert> = sent.iter().map(payload_alert).collect();
    let firing = alerts.iter().any(|a| a.status == "firing");
    Payload {
        receiver: quote_meta(&data.receiver),
        status: if firing { "firing" } else { "resolved" },
        notification_reason: data.reason.as_str(),
        group_labels: &data.group_labels,
        common_labels: common(sent.iter().map(|a| &a.labels)),
        common_annotations: common(sent.iter().map(|a| &a.annotations)),
        external_url: &data.external_url,
        version: "4",
        group_key: &data.group_key,
        truncated_alerts: (data.alerts.len() - keep) as u64,
        alerts,
    }
}

/// A configured webhook.
pub struct Webhook {
    conf: WebhookConfig,
    client: reqwest::Client,
    user_agent: String,
    /// The URL parsed once when it is written in the configuration (parsing it per send was a
    /// fiftieth of a notification's CPU); a `url_file` is read and parsed at every send.
    parsed: Option<reqwest::Url>,
    /// The URL's origin when it is plain `http://` without a proxy: sent by [`crate::http1`].
    plain: Option<crate::http1::Origin>,
    /// `oauth2`: tokens for the Authorization header.
    oauth2: Option<crate::http::OAuth2Tokens>,
}

/// Redirects followed before giving up, as Go's HTTP client.
const MAX_REDIRECTS: usize = 10;

fn transport_error(e: impl std::fmt::Display) -> NotifyError {
    // Transport errors (refused, reset, timeouts) are worth retrying; never log the URL, which is
    // a secret.
    NotifyError::retryable(FailureReason::Other, format!("webhook request failed: {e}"))
}

impl Webhook {
    /// Builds the HTTP client for a webhook config.
    ///
    /// # Errors
    /// As [`crate::http::build_client`].
    pub fn new(conf: WebhookConfig, user_agent: &str) -> Result<Self, String> {
        let client = crate::http::build_client(&conf.http, user_agent)?;
        let parsed = match &conf.url {
            tocsin_core::config::SecretSource::Inline(u) => reqwest::Url::parse(u).ok(),
            tocsin_core::config::SecretSource::File(_) => None,
        };
        // The lean client goes straight to the receiver: only when no proxy can apply.
        let plain = match (&parsed, &conf.http.proxy_url) {
            (Some(url), None) if !conf.http.proxy_from_environment => crate::http1::Origin::of(url),
            _ => None,
        };
        let oauth2 = conf
            .http
            .oauth2
            .clone()
            .map(|o| crate::http::OAuth2Tokens::new(o, client.clone()));
        Ok(Webhook {
            conf,
            client,
            user_agent: user_agent.to_string(),
            parsed,
            plain,
            oauth2,
        })
    }

    async fn send(&self, data: &NotifyData) -> Result<(), NotifyError> {
        // Sized for a few alerts, so that a small body is written without growing the buffer.
        let mut body = Vec::with_capacity(1024 + 512 * data.alerts.len().min(64));
        serde_json::to_writer(&mut body, &payload(data, self.conf.max_alerts))
            .map_err(|e| NotifyError::fatal(FailureReason::Other, e.to_string()))?;
        let auth = match &self.oauth2 {
            // A token the endpoint refused is not retried blindly: 4xx is final, like a receiver's.
            Some(o) => Some(o.header().await.map_err(|(status, msg)| match status {
                400..=499 => NotifyError::fatal(FailureReason::of_status(status), msg),
                _ => NotifyError::retryable(FailureReason::of_status(status), msg),
            })?),
            None => {
                crate::http::authorization(&self.conf.http).map_err(|e| NotifyError::fatal(FailureReason::Other, e))?
            }
        };
        let headers =
            crate::http::extra_headers(&self.conf.http).map_err(|e| NotifyError::fatal(FailureReason::Other, e))?;
        if let (Some(origin), Some(url)) = (&self.plain, &self.parsed) {
            return self.send_plain(origin, url, body, auth, &headers).await;
        }
        let url = match &self.parsed {
            Some(url) => url.clone(),
            None => {
                let url = read_secret(&self.conf.url).map_err(|e| NotifyError::fatal(FailureReason::Other, e))?;
                reqwest::Url::parse(&url).map_err(|e| transport_error(format!("invalid URL: {e}")))?
            }
        };
        self.send_full(reqwest::Method::POST, url, Some(body), auth, &headers)
            .await
    }

    /// Sends through reqwest, which follows redirects as configured.
    async fn send_full(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        body: Option<Vec<u8>>,
        auth: Option<String>,
        headers: &[(String, String)],
    ) -> Result<(), NotifyError> {
        let mut req = self.client.request(method, url);
        for (k, v) in headers {
            let name = reqwest::header::HeaderName::try_from(k.as_str())
                .map_err(|_| NotifyError::fatal(FailureReason::Other, format!("invalid header name {k:?}")))?;
            let value = reqwest::header::HeaderValue::try_from(v.as_str())
                .map_err(|_| NotifyError::fatal(FailureReason::Other, format!("invalid value of header {k}")))?;
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        if let Some(a) = auth {
            let mut v = reqwest::header::HeaderValue::try_from(a)
                .map_err(|_| NotifyError::fatal(FailureReason::Other, "invalid authorization header value"))?;
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        let resp = req.send().await.map_err(|e| transport_error(e.without_url()))?;
        classify(resp.status().as_u16(), || head_of_body(resp)).await
    }

    /// Sends on the lean client, following redirects like Go's client (and reqwest): 301, 302
    /// and 303 continue with a GET without body, 307 and 308 repeat the request; credentials are
    /// not sent to another host or port. A redirect to anything but plain HTTP goes on in reqwest.
    async fn send_plain(
        &self,
        origin: &crate::http1::Origin,
        configured: &reqwest::Url,
        body: Vec<u8>,
        mut auth: Option<String>,
        headers: &[(String, String)],
    ) -> Result<(), NotifyError> {
        let mut url = Cow::Borrowed(configured);
        let mut post = true;
        let mut elsewhere: Option<crate::http1::Origin> = None;
        let mut redirects = 0;
        loop {
            let on = elsewhere.as_ref().unwrap_or(origin);
            let request = crate::http1::encode(
                if post { "POST" } else { "GET" },
                &url,
                on.host(),
                &self.user_agent,
                auth.as_deref(),
                headers,
                post.then_some(("application/json", body.as_slice())),
            );
            let resp = on.send(&request).await.map_err(transport_error)?;
            let location = match resp.location {
                Some(l) if self.conf.http.follow_redirects && matches!(resp.status, 301 | 302 | 303 | 307 | 308) => l,
                _ => {
                    return classify(resp.status, || async {
                        String::from_utf8_lossy(&resp.body).into_owned()
                    })
                    .await;
                }
            };
            if redirects == MAX_REDIRECTS {
                return Err(transport_error(format_args!("stopped after {MAX_REDIRECTS} redirects")));
            }
            redirects += 1;
            // Not quoted: a Location may carry the same secrets as the URL.
            let next = url
                .join(&location)
                .map_err(|e| transport_error(format!("failed to parse Location header: {e}")))?;
            if (next.host_str(), next.port_or_known_default()) != (url.host_str(), url.port_or_known_default()) {
                auth = None;
            }
            post &= matches!(resp.status, 307 | 308);
            if origin.serves(&next) {
                elsewhere = None;
            } else if let Some(o) = crate::http1::Origin::of(&next) {
                elsewhere = Some(o);
            } else {
                let (method, body) = if post {
                    (reqwest::Method::POST, Some(body))
                } else {
                    (reqwest::Method::GET, None)
                };
                return self.send_full(method, next, body, auth, headers).await;
            }
            url = Cow::Owned(next);
        }
    }
}

/// The most of an error response's body read (the message keeps 512 bytes of it).
const ERROR_BODY_BYTES: usize = 1024;

/// The start of a response body, read no further than [`ERROR_BODY_BYTES`]: a receiver may
/// answer an error with gigabytes, or a body that never ends.
async fn head_of_body(mut resp: reqwest::Response) -> String {
    let mut head = Vec::new();
    while head.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(c)) => head.extend_from_slice(&c[..c.len().min(ERROR_BODY_BYTES - head.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Maps a response status to success or a (retryable?) error: 2xx ok, 5xx retry, others fail.
pub async fn classify<F, Fut>(status: u16, body: F) -> Result<(), NotifyError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = String>,
{
    if (200..300).contains(&status) {
        return Ok(());
    }
    let mut text = body().await;
    let mut end = text.len().min(512);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    let msg = format!("unexpected status code {status}: {text}");
    // 5xx is retried; every other status is final (the webhook has no retry codes).
    let reason = FailureReason::of_status(status);
    if status / 100 == 5 {
        Err(NotifyError::retryable(reason, msg))
    } else {
        Err(NotifyError::fatal(reason, msg))
    }
}

impl Notifier for Webhook {
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.send(data))
    }
}

#[cfg(test)]
mod error_body_tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_endless_error_body_is_read_no_further_than_its_head() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            // A body that never ends.
            let chunk = format!("{:x}\r\n{}\r\n", 4096, "e".repeat(4096));
            while s.write_all(chunk.as_bytes()).await.is_ok() {}
        });
        let resp = reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .send()
            .await
            .unwrap();
        let head = tokio::time::timeout(std::time::Duration::from_secs(5), super::head_of_body(resp))
            .await
            .expect("read the head and stopped");
        assert_eq!(head.len(), super::ERROR_BODY_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use tocsin_core::labels::fingerprint;
    use tocsin_core::nflog::NotifyReason;
    use tocsin_core::time::ZERO;

    fn alert(name: &str, team: &str, resolved: bool) -> Alert {
        let labels: LabelSet = [
            ("alertname".to_string(), name.to_string()),
            ("team".to_string(), team.to_string()),
        ]
        .into();
        Alert {
            fingerprint: fingerprint(&labels),
            labels,
            annotations: [("summary".to_string(), format!("{name} is down"))].into(),
            starts_at: "2026-11-23T18:33:30.712Z".parse::<Timestamp>().unwrap(),
            ends_at: if resolved {
                "2026-11-23T18:40:00Z".parse().unwrap()
            } else {
                ZERO
            },
            generator_url: "http://prom/graph".into(),
            ..Alert::default()
        }
    }

    #[test]
    fn payload_v4_is_byte_for_byte() {
        let data = NotifyData {
            receiver: "team.x".into(),
            group_key: r#"{}/{team="a.b"}:{alertname="A1"}"#.into(),
            group_labels: [("alertname".to_string(), "A1".to_string())].into(),
            reason: NotifyReason::FirstNotification,
            external_url: "http://vm:19093".into(),
            alerts: vec![alert("A1", "a.b", false), alert("A1", "c", true)],
        };
        let json = serde_json::to_string(&payload(&data, 1)).unwrap();
        let fp = alert("A1", "a.b", false).fingerprint.to_string();
        let expected = format!(
            concat!(
                r#"{{"receiver":"team\\.x","status":"firing","alerts":[{{"status":"firing","labels":{{"alertname":"A1","team":"a.b"}},"#,
                r#""annotations":{{"summary":"A1 is down"}},"startsAt":"2026-11-23T18:33:30.712Z","endsAt":"0001-01-01T00:00:00Z","#,
                r#""generatorURL":"http://prom/graph","fingerprint":"{}"}}],"notification_reason":"first notification","#,
                r#""groupLabels":{{"alertname":"A1"}},"commonLabels":{{"alertname":"A1","team":"a.b"}},"#,
                r#""commonAnnotations":{{"summary":"A1 is down"}},"externalURL":"http://vm:19093","version":"4","#,
                r#""groupKey":"{{}}/{{team=\"a.b\"}}:{{alertname=\"A1\"}}","truncatedAlerts":1}}"#
            ),
            fp
        );
        assert_eq!(json, expected);
        let all = payload(&data, 0);
        assert_eq!(all.truncated_alerts, 0);
        assert_eq!(all.alerts[1].status, "resolved");
        assert_eq!(*all.common_labels, [("alertname".to_string(), "A1".to_string())].into());
        // One alert: its own labels are the common ones.
        let one = NotifyData {
            alerts: vec![alert("A1", "c", true)],
            ..data
        };
        let p = payload(&one, 0);
        assert_eq!(*p.common_labels, one.alerts[0].labels);
        assert_eq!(*p.common_annotations, one.alerts[0].annotations);
    }

    #[tokio::test]
    async fn status_classification() {
        let body = || async { "oops".to_string() };
        assert!(classify(200, body).await.is_ok());
        let e = classify(503, body).await.unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.reason, FailureReason::ServerError);
        let e = classify(404, body).await.unwrap_err();
        assert!(!e.retryable);
        assert_eq!(e.message, "unexpected status code 404: oops");
        assert_eq!(e.reason, FailureReason::ClientError);
        // Alertmanager 0.34's reasons: 401/403 authError, 429 rateLimited (final for a webhook).
        for (status, reason) in [
            (401, FailureReason::AuthError),
            (403, FailureReason::AuthError),
            (429, FailureReason::RateLimited),
        ] {
            let e = classify(status, body).await.unwrap_err();
            assert!(!e.retryable, "{status}");
            assert_eq!(e.reason, reason, "{status}");
        }
    }
}
