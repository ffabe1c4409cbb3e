//! The one HTTP path every HTTP integration sends through: `http_config` applied in one place
//! (authentication, OAuth2 tokens, `http_headers`, proxies, TLS, redirects), the lean
//! HTTP/1.1 client for plain `http://` URLs without a proxy and reqwest for the rest, and a
//! [`Reply`] bounded in size. An integration encodes its request (a pure function of the
//! notification and its rendered templates), posts it here, and judges the reply by its own
//! rules ([`check_status`] is the common one).

use std::borrow::Cow;

use reqwest::Url;
use tocsin_core::config::{HttpClientConfig, SecretSource};

use crate::{FailureReason, NotifyError, read_secret};

/// Redirects followed before giving up, as Go's HTTP client.
const MAX_REDIRECTS: usize = 10;
/// The most of a reply's body kept (the lean client keeps as much).
pub const REPLY_BYTES: usize = 64 * 1024;
/// The most of a reply's body quoted in an error message.
const QUOTED_BYTES: usize = 512;

/// What a receiver answered: its status, content type and the start of its body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body's first [`REPLY_BYTES`].
    pub body: Vec<u8>,
    /// `Retry-After`, as a duration from now.
    pub retry_after: Option<std::time::Duration>,
}

/// A `Retry-After` value: seconds, or an HTTP date (a date in the past is now).
pub fn parse_retry_after(v: &str, now: jiff::Timestamp) -> Option<std::time::Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    Some(at.duration_since(now).unsigned_abs())
        .filter(|_| at > now)
        .or(Some(std::time::Duration::ZERO))
}

impl Reply {
    /// `e` with the reply's `Retry-After` when it is retryable: the next attempt waits for it.
    pub fn annotate(&self, mut e: NotifyError) -> NotifyError {
        if e.retryable && e.retry_after.is_none() {
            e.retry_after = self.retry_after;
        }
        e
    }

    /// The start of the body as text, as error messages quote it.
    pub fn quoted(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        let mut end = text.len().min(QUOTED_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text
    }
}

/// The common judgement of a reply: 2xx succeeds; 5xx and the integration's `retry_codes` are
/// retried; any other status is final. The reason is Alertmanager 0.34's for the status.
///
/// # Errors
/// `unexpected status code N: <start of the body>`.
pub fn check_status(status: u16, body: &str, retry_codes: &[u16]) -> Result<(), NotifyError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let msg = format!("unexpected status code {status}: {body}");
    let reason = FailureReason::of_status(status);
    if status / 100 == 5 || retry_codes.contains(&status) {
        Err(NotifyError::retryable(reason, msg))
    } else {
        Err(NotifyError::fatal(reason, msg))
    }
}

/// Where requests go: a URL parsed once when the configuration gives it, or read (and parsed)
/// at every send from its file.
pub struct Endpoint {
    source: SecretSource,
    parsed: Option<Url>,
    /// The URL's origin when it is plain `http://` and no proxy can apply.
    plain: Option<crate::http1::Origin>,
}

/// A request to send: its body and type, and an `Authorization` of the integration's own (a
/// Slack app token) instead of `http_config`'s.
pub struct Request<'a> {
    /// Where.
    pub endpoint: &'a Endpoint,
    /// `POST` or `PUT`.
    pub method: &'static str,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body, POSTed.
    pub body: Vec<u8>,
    /// `Authorization` set by the integration.
    pub authorization: Option<String>,
    /// Headers set by the integration (after `http_config`'s).
    pub headers: Vec<(String, String)>,
}

/// An integration's HTTP client with its `http_config`.
pub struct HttpSender {
    /// The integration's name, in transport errors.
    kind: &'static str,
    client: reqwest::Client,
    cfg: HttpClientConfig,
    user_agent: String,
    oauth2: Option<crate::http::OAuth2Tokens>,
    capture: Option<crate::capture::Capture>,
}

impl HttpSender {
    /// A sender for integration `kind` with its `http_config`.
    ///
    /// # Errors
    /// As [`crate::http::build_client`].
    pub fn new(kind: &'static str, cfg: &HttpClientConfig, user_agent: &str) -> Result<Self, String> {
        let client = crate::http::build_client(cfg, user_agent)?;
        let oauth2 = cfg
            .oauth2
            .clone()
            .map(|o| crate::http::OAuth2Tokens::new(o, client.clone()));
        Ok(HttpSender {
            kind,
            client,
            cfg: cfg.clone(),
            user_agent: user_agent.to_string(),
            oauth2,
            capture: None,
        })
    }

    /// Records requests in `capture` instead of sending them (a dry run), when set.
    #[must_use]
    pub fn with_capture(mut self, capture: Option<crate::capture::Capture>) -> Self {
        self.capture = capture;
        self
    }

    /// The dry run's capture, when this sender records instead of sending.
    pub fn capture(&self) -> Option<&crate::capture::Capture> {
        self.capture.as_ref()
    }

    /// The endpoint at `url`: an inline URL is parsed now (parsing it per send was a fiftieth
    /// of a notification's CPU), a file is read at every send.
    pub fn endpoint(&self, url: SecretSource) -> Endpoint {
        let parsed = match &url {
            SecretSource::Inline(u) => Url::parse(u).ok(),
            SecretSource::File(_) => None,
        };
        // The lean client goes straight to the receiver: only when no proxy can apply.
        let plain = match (&parsed, &self.cfg.proxy_url) {
            (Some(u), None) if !self.cfg.proxy_from_environment => crate::http1::Origin::of(u),
            _ => None,
        };
        Endpoint {
            source: url,
            parsed,
            plain,
        }
    }

    /// A transport failure (refused, reset, timed out): worth retrying. Never quotes the URL,
    /// which is a secret.
    pub fn transport_error(&self, e: impl std::fmt::Display) -> NotifyError {
        NotifyError::retryable(FailureReason::Other, format!("{} request failed: {e}", self.kind))
    }

    /// Sends `req` and returns the reply, whatever its status.
    ///
    /// # Errors
    /// The URL or a secret file cannot be read, the OAuth2 token cannot be had, or the request
    /// failed in transport.
    pub async fn post(&self, req: Request<'_>) -> Result<Reply, NotifyError> {
        let fatal = |e: String| NotifyError::fatal(FailureReason::Other, e);
        // A dry run: recorded before any credential is read or token fetched.
        if let Some(c) = &self.capture {
            let url = match &req.endpoint.parsed {
                Some(u) => u.to_string(),
                None => read_secret(&req.endpoint.source).unwrap_or_default(),
            };
            c.record(self.kind, req.method, &url, req.content_type, &req.body);
            return Ok(crate::capture::accepted());
        }
        let auth = match (req.authorization, &self.oauth2) {
            (Some(a), _) => Some(a),
            // A token the endpoint refused is not retried blindly: 4xx is final, like a receiver's.
            (None, Some(o)) => Some(o.header().await.map_err(|(status, msg)| match status {
                400..=499 => NotifyError::fatal(FailureReason::of_status(status), msg),
                _ => NotifyError::retryable(FailureReason::of_status(status), msg),
            })?),
            (None, None) => crate::http::authorization(&self.cfg).map_err(fatal)?,
        };
        let mut headers = crate::http::extra_headers(&self.cfg).map_err(fatal)?;
        headers.extend(req.headers);
        let ep = req.endpoint;
        if let (Some(origin), Some(url)) = (&ep.plain, &ep.parsed) {
            return self
                .send_plain(origin, url, (req.method, req.content_type, req.body), auth, &headers)
                .await;
        }
        let url = match &ep.parsed {
            Some(url) => url.clone(),
            None => {
                let url = read_secret(&ep.source).map_err(fatal)?;
                Url::parse(&url).map_err(|e| self.transport_error(format!("invalid URL: {e}")))?
            }
        };
        // A GET carries no body (WeChat's token request).
        let body = (req.method != "GET").then_some((req.content_type, req.body));
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| fatal(format!("invalid method {:?}", req.method)))?;
        self.send_full(method, url, body, auth, &headers).await
    }

    /// Sends through reqwest, which follows redirects as configured.
    async fn send_full(
        &self,
        method: reqwest::Method,
        url: Url,
        body: Option<(&'static str, Vec<u8>)>,
        auth: Option<String>,
        headers: &[(String, String)],
    ) -> Result<Reply, NotifyError> {
        let fatal = |e: String| NotifyError::fatal(FailureReason::Other, e);
        let mut req = self.client.request(method, url);
        for (k, v) in headers {
            let name = reqwest::header::HeaderName::try_from(k.as_str())
                .map_err(|_| fatal(format!("invalid header name {k:?}")))?;
            let value = reqwest::header::HeaderValue::try_from(v.as_str())
                .map_err(|_| fatal(format!("invalid value of header {k}")))?;
            req = req.header(name, value);
        }
        if let Some((content_type, body)) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        }
        if let Some(a) = auth {
            let mut v = reqwest::header::HeaderValue::try_from(a)
                .map_err(|_| fatal("invalid authorization header value".into()))?;
            v.set_sensitive(true);
            req = req.header(reqwest::header::AUTHORIZATION, v);
        }
        let mut resp = req.send().await.map_err(|e| self.transport_error(e.without_url()))?;
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now()));
        // A receiver may answer with gigabytes, or a body that never ends: keep the start.
        let mut body = Vec::new();
        while body.len() < REPLY_BYTES {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(REPLY_BYTES - body.len())]),
                _ => break,
            }
        }
        Ok(Reply {
            status: resp.status().as_u16(),
            content_type,
            body,
            retry_after,
        })
    }

    /// Sends on the lean client, following redirects like Go's client (and reqwest): 301, 302
    /// and 303 continue with a GET without body, 307 and 308 repeat the request; credentials are
    /// not sent to another host or port. A redirect to anything but plain HTTP goes on in reqwest.
    async fn send_plain(
        &self,
        origin: &crate::http1::Origin,
        configured: &Url,
        (method, content_type, body): (&'static str, &'static str, Vec<u8>),
        mut auth: Option<String>,
        headers: &[(String, String)],
    ) -> Result<Reply, NotifyError> {
        let mut url = Cow::Borrowed(configured);
        let mut post = true;
        let mut elsewhere: Option<crate::http1::Origin> = None;
        let mut redirects = 0;
        loop {
            let on = elsewhere.as_ref().unwrap_or(origin);
            let request = crate::http1::encode(
                if post { method } else { "GET" },
                &url,
                on.host(),
                &self.user_agent,
                auth.as_deref(),
                headers,
                (post && method != "GET").then_some((content_type, body.as_slice())),
            );
            let resp = on.send(&request).await.map_err(|e| self.transport_error(e))?;
            let location = match resp.location {
                Some(l) if self.cfg.follow_redirects && matches!(resp.status, 301 | 302 | 303 | 307 | 308) => l,
                _ => {
                    return Ok(Reply {
                        status: resp.status,
                        content_type: resp.content_type,
                        body: resp.body,
                        retry_after: resp
                            .retry_after
                            .as_deref()
                            .and_then(|v| parse_retry_after(v, jiff::Timestamp::now())),
                    });
                }
            };
            if redirects == MAX_REDIRECTS {
                return Err(self.transport_error(format_args!("stopped after {MAX_REDIRECTS} redirects")));
            }
            redirects += 1;
            // Not quoted: a Location may carry the same secrets as the URL.
            let next = url
                .join(&location)
                .map_err(|e| self.transport_error(format!("failed to parse Location header: {e}")))?;
            if (next.host_str(), next.port_or_known_default()) != (url.host_str(), url.port_or_known_default()) {
                auth = None;
            }
            post &= matches!(resp.status, 307 | 308);
            if origin.serves(&next) {
                elsewhere = None;
            } else if let Some(o) = crate::http1::Origin::of(&next) {
                elsewhere = Some(o);
            } else {
                let body = (post && method != "GET").then_some((content_type, body));
                let method = if post {
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST)
                } else {
                    reqwest::Method::GET
                };
                return self.send_full(method, next, body, auth, headers).await;
            }
            url = Cow::Owned(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_endless_reply_body_is_read_no_further_than_its_start() {
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
        // Through reqwest: a proxy setting keeps the lean client out of it.
        let cfg = HttpClientConfig {
            proxy_from_environment: true,
            ..HttpClientConfig::default()
        };
        let sender = HttpSender::new("test", &cfg, "Tocsin").unwrap();
        let ep = sender.endpoint(SecretSource::Inline(format!("http://{addr}/")));
        let reply = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sender.post(Request {
                endpoint: &ep,
                method: "POST",
                content_type: "application/json",
                body: b"{}".to_vec(),
                authorization: None,
                headers: Vec::new(),
            }),
        )
        .await
        .expect("read the start and stopped")
        .unwrap();
        assert_eq!(reply.status, 500);
        assert_eq!(reply.body.len(), REPLY_BYTES);
        assert_eq!(reply.quoted().len(), QUOTED_BYTES);
    }

    #[tokio::test]
    async fn a_retry_after_is_read_on_both_paths() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow")
                        .await;
                });
            }
        });
        // The lean client (plain http, no proxy), then reqwest (a proxy setting keeps the lean
        // client out of it).
        for from_env in [false, true] {
            let cfg = HttpClientConfig {
                proxy_from_environment: from_env,
                ..HttpClientConfig::default()
            };
            let sender = HttpSender::new("test", &cfg, "Tocsin").unwrap();
            let ep = sender.endpoint(SecretSource::Inline(format!("http://{addr}/")));
            let reply = sender
                .post(Request {
                    endpoint: &ep,
                    method: "POST",
                    content_type: "application/json",
                    body: b"{}".to_vec(),
                    authorization: None,
                    headers: Vec::new(),
                })
                .await
                .unwrap();
            assert_eq!(
                reply.retry_after,
                Some(std::time::Duration::from_secs(3)),
                "proxy_from_environment={from_env}"
            );
            let e = reply.annotate(check_status(reply.status, &reply.quoted(), &[429]).unwrap_err());
            assert_eq!(
                (e.retryable, e.retry_after),
                (true, Some(std::time::Duration::from_secs(3)))
            );
        }
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let now: jiff::Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let d = |s| parse_retry_after(s, now);
        assert_eq!(d("7"), Some(std::time::Duration::from_secs(7)));
        assert_eq!(
            d("Mon, 07 Dec 2026 10:00:30 GMT"),
            Some(std::time::Duration::from_secs(30))
        );
        assert_eq!(d("Mon, 07 Dec 2026 09:00:00 GMT"), Some(std::time::Duration::ZERO));
        assert_eq!(d("soon"), None);
    }

    #[test]
    fn statuses_are_judged_as_alertmanager_does() {
        assert!(check_status(204, "", &[]).is_ok());
        let e = check_status(503, "busy", &[]).unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.reason, FailureReason::ServerError);
        assert_eq!(e.message, "unexpected status code 503: busy");
        let e = check_status(429, "slow down", &[]).unwrap_err();
        assert!(!e.retryable, "429 is final unless the integration retries it");
        assert_eq!(e.reason, FailureReason::RateLimited);
        assert!(check_status(429, "", &[429]).unwrap_err().retryable);
        let e = check_status(403, "", &[403]).unwrap_err();
        assert!(e.retryable);
        assert_eq!(e.reason, FailureReason::AuthError);
    }
}
