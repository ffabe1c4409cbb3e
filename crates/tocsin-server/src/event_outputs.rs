//! Alertmanager 0.33's `event_recorder` outputs, fed by the event log's writer thread with each
//! event's JSON line (Tocsin's event JSON, see `api/tocsin-v1.yaml`): files (appended, reopened
//! when rotated away), stdout, and webhooks (a queue of [`WEBHOOK_QUEUE`] events per output,
//! `workers` requests at once, `max_retries` attempts with a doubling backoff, batches as JSON
//! arrays). Nothing here waits on an output: a full queue drops the event and counts it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tocsin_core::config::{EventRecorder, EventWebhook, SecretSource};
use tracing::warn;

/// Events waiting for one webhook output at most.
pub const WEBHOOK_QUEUE: usize = 1024;
/// How often a file output checks that its path still names the file it writes.
const REOPEN_CHECK: Duration = Duration::from_secs(1);
/// The longest backoff between two attempts of a webhook request.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The waits between the attempts of one webhook request: `retry_backoff`, doubled per attempt
/// up to 30 s; `max_retries` attempts in all (at least one).
pub fn backoffs(cfg: &EventWebhook) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut backoff = cfg.retry_backoff;
    for _ in 1..cfg.max_retries.max(1) {
        out.push(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    out
}

/// The longest one webhook request is tried before it is given up and counted as an error:
/// every attempt's `timeout` and the waits between them.
pub fn given_up_within(cfg: &EventWebhook) -> Duration {
    cfg.timeout * cfg.max_retries.max(1) + backoffs(cfg).into_iter().sum::<Duration>()
}

/// The outputs' metrics.
#[derive(Clone, Debug, Default)]
pub struct OutputMetrics {
    /// `tocsin_event_output_errors_total`: writes and requests that failed for good.
    pub errors: Counter,
    /// `tocsin_event_output_drops_total`: events dropped because an output's queue was full.
    pub drops: Counter,
}

struct FileOut {
    path: PathBuf,
    file: Option<std::fs::File>,
    ino: u64,
    checked: Instant,
}

impl FileOut {
    fn open(&mut self) {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(&self.path)
            .ok();
        self.ino = std::fs::metadata(&self.path).map_or(0, |m| m.ino());
        self.checked = Instant::now();
    }

    fn write(&mut self, line: &[u8], metrics: &OutputMetrics) {
        use std::os::unix::fs::MetadataExt;
        // Rotated (renamed or removed): the path is written again, as logrotate expects.
        if self.checked.elapsed() >= REOPEN_CHECK {
            self.checked = Instant::now();
            if std::fs::metadata(&self.path).map_or(0, |m| m.ino()) != self.ino {
                self.open();
            }
        }
        if self.file.is_none() {
            self.open();
        }
        let ok = self.file.as_mut().is_some_and(|f| f.write_all(line).is_ok());
        if !ok {
            metrics.errors.inc();
            self.file = None;
        }
    }
}

/// The outputs of one configuration, owned by the writer thread.
pub struct Outputs {
    files: Vec<FileOut>,
    stdout: bool,
    webhooks: Vec<tokio::sync::mpsc::Sender<Vec<u8>>>,
    metrics: OutputMetrics,
}

impl Outputs {
    /// Starts the outputs of `config` (webhook tasks on the current runtime).
    ///
    /// # Errors
    /// A webhook's HTTP client cannot be built.
    pub fn start(config: &EventRecorder, user_agent: &str, metrics: &OutputMetrics) -> Result<Outputs, String> {
        let mut webhooks = Vec::new();
        for w in &config.webhooks {
            let sender = tocsin_notify::sender::HttpSender::new("event_recorder", &w.http, user_agent)?;
            let (tx, rx) = tokio::sync::mpsc::channel(WEBHOOK_QUEUE);
            tokio::spawn(webhook(w.clone(), sender, rx, metrics.clone()));
            webhooks.push(tx);
        }
        Ok(Outputs {
            files: config
                .files
                .iter()
                .map(|p| FileOut {
                    path: p.clone(),
                    file: None,
                    ino: 0,
                    checked: Instant::now(),
                })
                .collect(),
            stdout: config.stdout > 0,
            webhooks,
            metrics: metrics.clone(),
        })
    }

    /// Sends one event's JSON line (newline included) to every output.
    pub fn send(&mut self, line: &[u8]) {
        for f in &mut self.files {
            f.write(line, &self.metrics);
        }
        if self.stdout && std::io::stdout().lock().write_all(line).is_err() {
            self.metrics.errors.inc();
        }
        for w in &self.webhooks {
            let event = line.strip_suffix(b"\n").unwrap_or(line).to_vec();
            if w.try_send(event).is_err() {
                self.metrics.drops.inc();
            }
        }
    }

    /// Whether no output is configured.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && !self.stdout && self.webhooks.is_empty()
    }
}

/// One webhook output: batches (or single events) POSTed by at most `workers` requests at once.
async fn webhook(
    cfg: EventWebhook,
    sender: tocsin_notify::sender::HttpSender,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    metrics: OutputMetrics,
) {
    let sender = Arc::new(sender);
    let endpoint = Arc::new(sender.endpoint(SecretSource::Inline(cfg.url.clone())));
    let workers = Arc::new(tokio::sync::Semaphore::new(cfg.workers.max(1)));
    let cfg = Arc::new(cfg);
    while let Some(first) = rx.recv().await {
        let body = if cfg.batch {
            let mut events = vec![first];
            let mut bytes = events[0].len();
            let deadline = tokio::time::Instant::now() + cfg.batch_flush_interval;
            while events.len() < cfg.batch_max_events && bytes < cfg.batch_max_bytes {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(e)) => {
                        bytes += e.len() + 1;
                        events.push(e);
                    }
                    _ => break,
                }
            }
            let mut body = Vec::with_capacity(bytes + 2);
            body.push(b'[');
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(e);
            }
            body.push(b']');
            body
        } else {
            first
        };
        let Ok(permit) = workers.clone().acquire_owned().await else {
            return;
        };
        let (sender, endpoint, cfg, metrics) = (sender.clone(), endpoint.clone(), cfg.clone(), metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut waits = backoffs(&cfg).into_iter();
            for attempt in 1.. {
                let req = tocsin_notify::sender::Request {
                    endpoint: &endpoint,
                    method: "POST",
                    content_type: "application/json",
                    body: body.clone(),
                    authorization: None,
                    headers: Vec::new(),
                };
                let outcome = tokio::time::timeout(cfg.timeout, sender.post(req)).await;
                let error = match outcome {
                    Ok(Ok(r)) if (200..300).contains(&r.status) => return,
                    Ok(Ok(r)) => format!("event recorder webhook returned HTTP {}", r.status),
                    Ok(Err(e)) => format!("event recorder webhook POST failed: {e}"),
                    Err(_) => format!("event recorder webhook POST failed: no answer within {:?}", cfg.timeout),
                };
                let Some(wait) = waits.next() else {
                    metrics.errors.inc();
                    warn!(err = %error, attempts = attempt, "event recorder webhook gave up on a request");
                    return;
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(max_retries: u32, retry_backoff: Duration) -> EventWebhook {
        EventWebhook {
            url: "http://127.0.0.1:1/".into(),
            http: Default::default(),
            timeout: Duration::from_secs(10),
            workers: 1,
            max_retries,
            retry_backoff,
            batch: false,
            batch_max_events: 1,
            batch_max_bytes: 1,
            batch_flush_interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_webhook_request_is_given_up_within_its_attempts_and_backoffs() {
        // Alertmanager's defaults: 3 attempts of 10 s, 500 ms then 1 s between them.
        let d = webhook(3, Duration::from_millis(500));
        assert_eq!(backoffs(&d), [Duration::from_millis(500), Duration::from_secs(1)]);
        assert_eq!(given_up_within(&d), Duration::from_millis(31_500));
        // Doubling stops at 30 s; 0 retries still makes one attempt.
        let long = webhook(10, Duration::from_secs(4));
        assert_eq!(
            backoffs(&long)[2..5],
            [
                Duration::from_secs(16),
                Duration::from_secs(30),
                Duration::from_secs(30)
            ]
        );
        assert_eq!(given_up_within(&long), Duration::from_secs(100 + 4 + 8 + 16 + 30 * 6));
        assert_eq!(
            given_up_within(&webhook(0, Duration::from_secs(1))),
            Duration::from_secs(10)
        );
    }
}
