//! Integrations: how a flushed group becomes a request to a receiver, and retry until the deadline.
//!
//! Entry points: [`Notifier`] (one integration instance), [`build_integrations`] (a receiver's
//! integrations from validated config), [`send_with_retry`] (Alertmanager's RetryStage) and
//! [`webhook::payload`] (the version 4 webhook body, a pure function), [`email::Email`] (SMTP
//! with bodies rendered by `tocsin-template`) and [`http1::Origin`] (the lean HTTP/1.1 client
//! that sends webhooks to plain `http://` URLs; reqwest sends the rest).
//!
//! Depends on `tocsin-core` for the domain types; must not depend on the server, the cluster or
//! on any global state. It performs network and file I/O (secrets in `*_file`) at send time.

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
use tocsin_core::nflog::NotifyReason;

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
}

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
    fn notify<'a>(&'a self, data: &'a NotifyData) -> BoxFuture<'a, Result<(), NotifyError>>;
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
}

/// Builds the integrations of a receiver, in Alertmanager's registration order.
///
/// # Errors
/// Returns a message when an HTTP client cannot be built (unreadable CA file, bad certificate)
/// or a template field does not parse.
pub fn build_integrations(receiver: &Receiver, user_agent: &str, shared: &Shared) -> Result<Vec<Integration>, String> {
    let mut out = Vec::new();
    for (i, w) in receiver.webhooks.iter().enumerate() {
        let n = webhook::Webhook::with_templates(w.clone(), user_agent, shared)
            .map_err(|e| format!("receiver {:?} webhook_configs[{i}]: {e}", receiver.name))?;
        out.push(Integration {
            kind: "webhook",
            idx: i as u32,
            send_resolved: w.send_resolved,
            timeout: w.timeout,
            notifier: Arc::new(n),
            in_flight: in_flight_limit(),
        });
    }
    for (i, e) in receiver.emails.iter().enumerate() {
        let n = email::Email::new(e.clone(), shared).map_err(|e| format!("receiver {:?} {e}", receiver.name))?;
        out.push(Integration {
            kind: "email",
            idx: i as u32,
            send_resolved: e.send_resolved,
            timeout: None,
            notifier: Arc::new(n),
            in_flight: in_flight_limit(),
        });
    }
    for (i, c) in receiver.pagerduties.iter().enumerate() {
        let (send_resolved, timeout) = (c.send_resolved, c.timeout);
        let n = integration::HttpIntegration::new(pagerduty::Pagerduty(c.clone()), user_agent, shared)
            .map_err(|e| format!("receiver {:?} {e}", receiver.name))?;
        out.push(Integration {
            kind: "pagerduty",
            idx: i as u32,
            send_resolved,
            timeout,
            notifier: Arc::new(n),
            in_flight: in_flight_limit(),
        });
    }
    fn push<E: integration::Encoder>(
        out: &mut Vec<Integration>,
        (kind, idx): (&'static str, usize),
        enc: E,
        (send_resolved, timeout): (bool, Option<std::time::Duration>),
        user_agent: &str,
        shared: &Shared,
    ) -> Result<(), String> {
        out.push(Integration {
            kind,
            idx: idx as u32,
            send_resolved,
            timeout,
            notifier: Arc::new(integration::HttpIntegration::new(enc, user_agent, shared)?),
            in_flight: in_flight_limit(),
        });
        Ok(())
    }
    let named = |e: String| format!("receiver {:?} {e}", receiver.name);
    for (i, c) in receiver.opsgenies.iter().enumerate() {
        let enc = opsgenie::Opsgenie(c.clone());
        push(
            &mut out,
            ("opsgenie", i),
            enc,
            (c.send_resolved, None),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    for (i, c) in receiver.victorops.iter().enumerate() {
        let enc = oncall::Victorops(c.clone());
        push(
            &mut out,
            ("victorops", i),
            enc,
            (c.send_resolved, None),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    for (i, c) in receiver.pushovers.iter().enumerate() {
        let enc = oncall::Pushover(c.clone());
        push(
            &mut out,
            ("pushover", i),
            enc,
            (c.send_resolved, None),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    for (i, c) in receiver.sns.iter().enumerate() {
        let enc = sns::Sns(c.clone());
        push(&mut out, ("sns", i), enc, (c.send_resolved, None), user_agent, shared).map_err(named)?;
    }
    for (i, c) in receiver.wechats.iter().enumerate() {
        let n = wechat::Wechat::new(c.clone(), user_agent, shared).map_err(named)?;
        out.push(Integration {
            kind: "wechat",
            idx: i as u32,
            send_resolved: c.send_resolved,
            timeout: None,
            notifier: Arc::new(n),
            in_flight: in_flight_limit(),
        });
    }
    for (i, c) in receiver.slacks.iter().enumerate() {
        let (send_resolved, timeout) = (c.send_resolved, c.timeout);
        let n = integration::HttpIntegration::new(slack::Slack(c.clone()), user_agent, shared)
            .map_err(|e| format!("receiver {:?} {e}", receiver.name))?;
        out.push(Integration {
            kind: "slack",
            idx: i as u32,
            send_resolved,
            timeout,
            notifier: Arc::new(n),
            in_flight: in_flight_limit(),
        });
    }
    for (i, c) in receiver.telegrams.iter().enumerate() {
        let enc = chat::Telegram(c.clone());
        push(
            &mut out,
            ("telegram", i),
            enc,
            (c.send_resolved, None),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    for (i, c) in receiver.discords.iter().enumerate() {
        let enc = chat::Discord(c.clone());
        push(
            &mut out,
            ("discord", i),
            enc,
            (c.send_resolved, None),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    for (i, c) in receiver.webexes.iter().enumerate() {
        let enc = chat::Webex(c.clone());
        push(&mut out, ("webex", i), enc, (c.send_resolved, None), user_agent, shared).map_err(named)?;
    }
    for (i, c) in receiver.jiras.iter().enumerate() {
        let n = jira::Jira::new(c.clone(), user_agent, shared).map_err(named)?;
        out.push(Integration {
            kind: "jira",
            idx: i as u32,
            send_resolved: c.send_resolved,
            timeout: None,
            notifier: Arc::new(n),
            in_flight: in_flight_limit(),
        });
    }
    for (i, c) in receiver.rocketchats.iter().enumerate() {
        let enc = chat::Rocketchat(c.clone());
        push(
            &mut out,
            ("rocketchat", i),
            enc,
            (c.send_resolved, None),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    for (i, c) in receiver.incidentios.iter().enumerate() {
        let enc = oncall::Incidentio(c.clone());
        push(
            &mut out,
            ("incidentio", i),
            enc,
            (c.send_resolved, c.timeout),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    for (i, c) in receiver.mattermosts.iter().enumerate() {
        let enc = chat::Mattermost(c.clone());
        push(
            &mut out,
            ("mattermost", i),
            enc,
            (c.send_resolved, None),
            user_agent,
            shared,
        )
        .map_err(named)?;
    }
    // Each Teams list numbered on its own, as the log's receiver keys name them.
    for v2 in [false, true] {
        let kind = if v2 { "msteamsv2" } else { "msteams" };
        for (i, c) in receiver.msteams.iter().filter(|c| c.v2 == v2).enumerate() {
            let enc = chat::Msteams(c.clone());
            push(&mut out, (kind, i), enc, (c.send_resolved, None), user_agent, shared).map_err(named)?;
        }
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
