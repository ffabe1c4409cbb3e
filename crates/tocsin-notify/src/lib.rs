//! Integrations: how a flushed group becomes a request to a receiver, and retry until the deadline.
//!
//! Entry points: [`Notifier`] (one integration instance), [`build_integrations`] (a receiver's
//! integrations from validated config), [`send_with_retry`] (Alertmanager's RetryStage) and
//! [`webhook::payload`] (the version 4 webhook body, a pure function), [`email::Email`] (SMTP
//! with bodies rendered by `tocsin-template`) and [`http1::Origin`] (the lean HTTP/1.1 client
//! that sends webhooks to plain `http://` URLs; reqwest sends the rest). Integrations built with
//! a [`capture::Capture`] record their requests instead of sending them (dry runs).
//!
//! Depends on `tocsin-core` for the domain types; must not depend on the server, the cluster or
//! on any global state. It performs network and file I/O (secrets in `*_file`) at send time.

pub mod capture;
pub mod chat;
pub mod email;
pub mod fields;
pub mod http;
pub mod http1;
pub mod integration;
pub mod jira;
pub mod oncall;
pub mod opsgenie;
pub mod pagerduty;
pub mod retry;
pub mod route_labels;
pub mod sender;
pub mod slack;
pub mod sns;
pub mod webhook;
pub mod wechat;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tocsin_core::alert::Alert;
use tocsin_core::config::Receiver;
use tocsin_core::labels::LabelSet;
use tocsin_core::nflog::{NotifyReason, ReceiverData};

pub use retry::{Event, Sent, send_with_retry};

/// A boxed future, as returned by [`Notifier::notify`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything an integration needs to build one notification.
#[derive(Clone, Debug)]
pub struct NotifyData {
    /// Receiver name (raw; integrations escape it where Alertmanager does).
    pub receiver: String,
    /// Group key string.
    pub group_key: String,
    /// Group labels.
    pub group_labels: LabelSet,
    /// Why this notification is sent.
    pub reason: NotifyReason,
    /// `--web.external-url` without trailing slash.
    pub external_url: String,
    /// Alerts to send: firing ones with zero `endsAt`, in group order.
    pub alerts: Vec<Alert>,
    /// The route's `labels` (0.34), rendered for this notification.
    pub route_labels: LabelSet,
    /// What the integration kept at the group's last notification (its log entry's receiver
    /// data; empty when there is none). Written by a peer: integrations check what they read.
    pub receiver_data: ReceiverData,
}

/// What a delivered notification leaves for the group's next one (its log entry's receiver
/// data); `None` keeps what the entry had.
pub type Kept = Option<ReceiverData>;

/// Why a notification failed, as the `reason` label of `alertmanager_notifications_failed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// Anything else (transport errors, bad responses).
    Other,
    /// 4xx.
    ClientError,
    /// 5xx.
    ServerError,
    /// The flush was cancelled (reload, shutdown).
    ContextCanceled,
    /// The flush deadline passed.
    ContextDeadlineExceeded,
    /// 401 or 403 (Alertmanager 0.34+).
    AuthError,
    /// 429 (Alertmanager 0.34+).
    RateLimited,
}

impl FailureReason {
    /// Returns Alertmanager's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Other => "other",
            FailureReason::ClientError => "clientError",
            FailureReason::ServerError => "serverError",
            FailureReason::ContextCanceled => "contextCanceled",
            FailureReason::ContextDeadlineExceeded => "contextDeadlineExceeded",
            FailureReason::AuthError => "authError",
            FailureReason::RateLimited => "rateLimited",
        }
    }

    /// Every reason, in the order Alertmanager creates their series.
    pub const ALL: [FailureReason; 7] = [
        FailureReason::Other,
        FailureReason::ClientError,
        FailureReason::ServerError,
        FailureReason::ContextCanceled,
        FailureReason::ContextDeadlineExceeded,
        FailureReason::AuthError,
        FailureReason::RateLimited,
    ];

    /// The reason of a failed HTTP status, as Alertmanager 0.34 labels it: 401/403 authError,
    /// 429 rateLimited, other 4xx clientError, 5xx serverError, else other.
    pub fn of_status(status: u16) -> FailureReason {
        match status {
            401 | 403 => FailureReason::AuthError,
            429 => FailureReason::RateLimited,
            400..=499 => FailureReason::ClientError,
            500..=599 => FailureReason::ServerError,
            _ => FailureReason::Other,
        }
    }
}

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// Classification for metrics.
    pub reason: FailureReason,
    /// Human-readable cause.
    pub message: String,
    /// How long the receiver asked to be left alone (`Retry-After`): the next attempt waits
    /// at least that long, within the flush deadline.
    pub retry_after: Option<std::time::Duration>,
}

impl NotifyError {
    /// A retryable error.
    pub fn retryable(reason: FailureReason, message: impl Into<String>) -> Self {
        NotifyError {
            retryable: true,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A final error.
    pub fn fatal(reason: FailureReason, message: impl Into<String>) -> Self {
        NotifyError {
            retryable: false,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// One configured integration instance (one item of a `*_configs` list).
pub trait Notifier: Send + Sync {
    /// Sends one notification attempt.
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>>;
}

/// A receiver's integration with its identity in the notification log.
#[derive(Clone)]
pub struct Integration {
    /// Integration type (`webhook`).
    pub kind: &'static str,
    /// Index within that type's list.
    pub idx: u32,
    /// Whether resolved alerts are sent.
    pub send_resolved: bool,
    /// Per-attempt timeout (webhook `timeout`); an attempt over it fails and is retried.
    pub timeout: Option<std::time::Duration>,
    /// The sender.
    pub notifier: Arc<dyn Notifier>,
    /// Bounds the attempts under way at once ([`MAX_IN_FLIGHT`]).
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// Attempts one integration runs at once. When thousands of groups fall due together, an
/// unbounded burst opened one connection per notification (and contended on the allocator);
/// with a bound, connections are reused and the burst goes out faster (docs/performance.md).
pub const MAX_IN_FLIGHT: usize = 128;

/// A receiver's webhook integrations around the given senders, one per `webhook_configs` item
/// (`make` gets its index): tests and simulations inject in-memory receivers this way.
pub fn webhooks_with(receiver: &Receiver, mut make: impl FnMut(u32) -> Arc<dyn Notifier>) -> Vec<Integration> {
    (0u32..)
        .zip(&receiver.webhooks)
        .map(|(idx, w)| Integration {
            kind: "webhook",
            idx,
            send_resolved: w.send_resolved,
            timeout: w.timeout,
            notifier: make(idx),
            in_flight: in_flight_limit(),
        })
        .collect()
}

/// A fresh [`Integration::in_flight`] bound.
pub fn in_flight_limit() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT))
}

impl std::fmt::Debug for Integration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.kind, self.idx)
    }
}

/// What every integration of one configuration shares.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    /// The default templates plus the config's `templates:` files.
    pub templates: Arc<tocsin_template::Template>,
    /// Counts notifications sent with a fallback body because a template failed.
    pub template_errors: prometheus_client::metrics::counter::Counter,
    /// Set for a dry run: requests are recorded here instead of sent.
    pub capture: Option<capture::Capture>,
}

/// Builds the integrations of a receiver, in Alertmanager's registration order.
///
/// # Errors
/// Returns a message when an HTTP client cannot be built (unreadable CA file, bad certificate)
/// or a template field does not parse.
pub fn build_integrations(receiver: &Receiver, user_agent: &str, shared: &Shared) -> Result<Vec<Integration>, String> {
    let mut out = Vec::new();
    let named = |e: String| format!("receiver {:?} {e}", receiver.name);
    // One integration: its identity in the log, its send_resolved and per-attempt timeout.
    let mut add = |kind: &'static str, idx: usize, (send_resolved, timeout), notifier: Arc<dyn Notifier>| {
        out.push(Integration {
            kind,
            idx: idx as u32,
            send_resolved,
            timeout,
            notifier,
            in_flight: in_flight_limit(),
        });
    };
    fn http<E: integration::Encoder>(enc: E, ua: &str, shared: &Shared) -> Result<Arc<dyn Notifier>, String> {
        Ok(Arc::new(integration::HttpIntegration::new(enc, ua, shared)?))
    }
    // In Alertmanager's registration order.
    for (i, w) in receiver.webhooks.iter().enumerate() {
        let n = webhook::Webhook::with_templates(w.clone(), user_agent, shared)
            .map_err(|e| format!("receiver {:?} webhook_configs[{i}]: {e}", receiver.name))?;
        add("webhook", i, (w.send_resolved, w.timeout), Arc::new(n));
    }
    for (i, c) in receiver.emails.iter().enumerate() {
        let n = email::Email::new(c.clone(), shared).map_err(named)?;
        add("email", i, (c.send_resolved, None), Arc::new(n));
    }
    for (i, c) in receiver.pagerduties.iter().enumerate() {
        let n = http(pagerduty::Pagerduty(c.clone()), user_agent, shared).map_err(named)?;
        add("pagerduty", i, (c.send_resolved, c.timeout), n);
    }
    for (i, c) in receiver.opsgenies.iter().enumerate() {
        let n = http(opsgenie::Opsgenie(c.clone()), user_agent, shared).map_err(named)?;
        add("opsgenie", i, (c.send_resolved, None), n);
    }
    for (i, c) in receiver.wechats.iter().enumerate() {
        let n = wechat::Wechat::new(c.clone(), user_agent, shared).map_err(named)?;
        add("wechat", i, (c.send_resolved, None), Arc::new(n));
    }
    for (i, c) in receiver.slacks.iter().enumerate() {
        let n = http(slack::Slack(c.clone()), user_agent, shared).map_err(named)?;
        add("slack", i, (c.send_resolved, c.timeout), n);
    }
    for (i, c) in receiver.victorops.iter().enumerate() {
        let n = http(oncall::Victorops(c.clone()), user_agent, shared).map_err(named)?;
        add("victorops", i, (c.send_resolved, None), n);
    }
    for (i, c) in receiver.pushovers.iter().enumerate() {
        let n = http(oncall::Pushover(c.clone()), user_agent, shared).map_err(named)?;
        add("pushover", i, (c.send_resolved, None), n);
    }
    for (i, c) in receiver.sns.iter().enumerate() {
        let n = http(sns::Sns(c.clone()), user_agent, shared).map_err(named)?;
        add("sns", i, (c.send_resolved, None), n);
    }
    for (i, c) in receiver.telegrams.iter().enumerate() {
        let n = http(chat::Telegram(c.clone()), user_agent, shared).map_err(named)?;
        add("telegram", i, (c.send_resolved, None), n);
    }
    for (i, c) in receiver.discords.iter().enumerate() {
        let n = http(chat::Discord(c.clone()), user_agent, shared).map_err(named)?;
        add("discord", i, (c.send_resolved, None), n);
    }
    for (i, c) in receiver.webexes.iter().enumerate() {
        let n = http(chat::Webex(c.clone()), user_agent, shared).map_err(named)?;
        add("webex", i, (c.send_resolved, None), n);
    }
    // Each Teams list numbered on its own, as the log's receiver keys name them.
    for v2 in [false, true] {
        let kind = if v2 { "msteamsv2" } else { "msteams" };
        for (i, c) in receiver.msteams.iter().filter(|c| c.v2 == v2).enumerate() {
            let n = http(chat::Msteams(c.clone()), user_agent, shared).map_err(named)?;
            add(kind, i, (c.send_resolved, None), n);
        }
    }
    for (i, c) in receiver.jiras.iter().enumerate() {
        let n = jira::Jira::new(c.clone(), user_agent, shared).map_err(named)?;
        add("jira", i, (c.send_resolved, None), Arc::new(n));
    }
    for (i, c) in receiver.rocketchats.iter().enumerate() {
        let n = http(chat::Rocketchat(c.clone()), user_agent, shared).map_err(named)?;
        add("rocketchat", i, (c.send_resolved, None), n);
    }
    for (i, c) in receiver.incidentios.iter().enumerate() {
        let n = http(oncall::Incidentio(c.clone()), user_agent, shared).map_err(named)?;
        add("incidentio", i, (c.send_resolved, c.timeout), n);
    }
    for (i, c) in receiver.mattermosts.iter().enumerate() {
        let n = http(chat::Mattermost(c.clone()), user_agent, shared).map_err(named)?;
        add("mattermost", i, (c.send_resolved, None), n);
    }
    Ok(out)
}

/// Reads a secret, inline or from its file (trimmed), at use time.
///
/// # Errors
/// Returns the file error with its path.
pub fn read_secret(s: &tocsin_core::config::SecretSource) -> Result<String, String> {
    match s {
        tocsin_core::config::SecretSource::Inline(v) => Ok(v.clone()),
        tocsin_core::config::SecretSource::File(p) => std::fs::read_to_string(p)
            .map(|v| v.trim().to_string())
            .map_err(|e| format!("unable to read {}: {e}", p.display())),
    }
}
