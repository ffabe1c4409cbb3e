//! Send with exponential backoff until the flush deadline (Alertmanager's RetryStage, §3.5).

use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use crate::{FailureReason, Integration, Kept, NotifyData, NotifyError};

/// Backoff parameters of Alertmanager (cenkalti/backoff defaults).
const INITIAL: Duration = Duration::from_millis(500);
const MULTIPLIER: f64 = 1.5;
const RANDOMIZATION: f64 = 0.5;
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Outcome of one attempt, reported to the caller for metrics.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// 1-based attempt number.
    pub number: u32,
    /// How long the attempt took.
    pub duration: Duration,
    /// Its error, if it failed.
    pub error: Option<NotifyError>,
}

/// What the caller of [`send_with_retry`] is told, and asked.
#[derive(Debug)]
pub enum Event<'a> {
    /// An attempt ended (for metrics and logs); the answer is ignored.
    Attempt(&'a Attempt),
    /// A retry is due: answer `false` to stop (the notification was delivered elsewhere).
    Retry,
}

/// How a send ended well.
#[derive(Clone, Debug, PartialEq)]
pub enum Sent {
    /// The receiver accepted the notification at this attempt (1-based).
    Delivered {
        /// Attempts made.
        attempts: u32,
        /// What the integration keeps for the group's next notification.
        kept: Kept,
    },
    /// The caller stopped the retries after a failed attempt.
    Stopped,
}

/// Sends `data` through the integration, retrying retryable errors with backoff until
/// `deadline`; each attempt is bounded by the integration's timeout. `on_event` sees every
/// attempt (for metrics and logs) and decides before each retry whether to go on.
///
/// # Errors
/// The last error for a non-retryable failure, or a context error when the deadline passed or
/// `cancel` fired (with the last attempt's message).
pub async fn send_with_retry(
    integration: &Integration,
    data: &NotifyData,
    deadline: Instant,
    cancel: &tokio::sync::watch::Receiver<bool>,
    mut on_event: impl FnMut(Event<'_>) -> bool,
) -> Result<Sent, NotifyError> {
    let mut cancel = cancel.clone();
    let mut interval = INITIAL;
    let mut last: Option<NotifyError> = None;
    let mut number = 0;
    let mut next = Instant::now();
    loop {
        if *cancel.borrow() {
            return Err(context_error(FailureReason::ContextCanceled, last));
        }
        if Instant::now() >= deadline {
            return Err(context_error(FailureReason::ContextDeadlineExceeded, last));
        }
        // The first attempt goes at once; waits register timers, which a burst of thousands of
        // notifications paid for every send.
        if number > 0 {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(context_error(FailureReason::ContextDeadlineExceeded, last));
                }
                _ = cancel.changed() => {
                    return Err(context_error(FailureReason::ContextCanceled, last));
                }
            }
            if !on_event(Event::Retry) {
                return Ok(Sent::Stopped);
            }
        }
        // Waiting for a slot is not part of the attempt's time or timeout.
        let _slot = match integration.in_flight.try_acquire() {
            Ok(slot) => Some(slot),
            Err(_) => tokio::select! {
                slot = integration.in_flight.acquire() => slot.ok(),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(context_error(FailureReason::ContextDeadlineExceeded, last));
                }
                _ = cancel.changed() => {
                    return Err(context_error(FailureReason::ContextCanceled, last));
                }
            },
        };
        number += 1;
        let started = Instant::now();
        // The next attempt is scheduled from this attempt's start, like backoff.Ticker.
        next = started + jitter(interval);
        interval = (interval.mul_f64(MULTIPLIER)).min(MAX_INTERVAL);
        let attempt_deadline = match integration.timeout {
            Some(t) => (started + t).min(deadline),
            None => deadline,
        };
        // One span per attempt, inside the caller's flush span (group_key, receiver); debug level,
        // like the flush span, as only debug events are logged inside it.
        let span = tracing::debug_span!("attempt", integration = integration.kind, attempt = number);
        let result = tracing::Instrument::instrument(
            async {
                tokio::select! {
                    r = integration.notifier.notify(data) => r,
                    _ = tokio::time::sleep_until(attempt_deadline), if attempt_deadline < deadline => {
                        Err(NotifyError::retryable(FailureReason::Other, "request timed out"))
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        Err(NotifyError::fatal(FailureReason::ContextDeadlineExceeded, "context deadline exceeded"))
                    }
                }
            },
            span.clone(),
        )
        .await;
        let attempt = Attempt {
            number,
            duration: started.elapsed(),
            error: result.as_ref().err().cloned(),
        };
        span.in_scope(|| on_event(Event::Attempt(&attempt)));
        match result {
            Ok(kept) => return Ok(Sent::Delivered { attempts: number, kept }),
            Err(e) if e.reason == FailureReason::ContextDeadlineExceeded => {
                return Err(context_error(FailureReason::ContextDeadlineExceeded, last.or(Some(e))));
            }
            Err(e) if !e.retryable => return Err(e),
            Err(e) => {
                // A receiver that said when to come back (429, 503 with Retry-After) is not
                // asked again before then; the flush deadline still bounds the wait.
                if let Some(after) = e.retry_after {
                    next = next.max(Instant::now() + after);
                }
                last = Some(e);
            }
        }
    }
}

fn context_error(reason: FailureReason, last: Option<NotifyError>) -> NotifyError {
    let what = if reason == FailureReason::ContextCanceled {
        "context canceled"
    } else {
        "context deadline exceeded"
    };
    let message = match last {
        Some(e) => format!("{what}: last error: {}", e.message),
        None => what.to_string(),
    };
    NotifyError::fatal(reason, message)
}

fn jitter(d: Duration) -> Duration {
    let f = 1.0 + RANDOMIZATION * (2.0 * rand::rng().random::<f64>() - 1.0);
    d.mul_f64(f)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::{BoxFuture, Kept, Notifier};
    use std::sync::Arc;
    use tocsin_core::nflog::NotifyReason;

    struct Flaky {
        fail_first: u32,
        calls: AtomicU32,
        times: Mutex<Vec<Instant>>,
        retryable: bool,
        retry_after: Option<Duration>,
    }

    impl Notifier for Flaky {
        fn notify<'a>(&'a self, _: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
            Box::pin(async move {
                self.times.lock().unwrap().push(Instant::now());
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.fail_first {
                    Err(NotifyError {
                        retryable: self.retryable,
                        reason: FailureReason::ServerError,
                        message: "boom".into(),
                        retry_after: self.retry_after,
                    })
                } else {
                    Ok(None)
                }
            })
        }
    }

    fn data() -> NotifyData {
        NotifyData {
            receiver: "r".into(),
            group_key: "{}:{}".into(),
            group_labels: Default::default(),
            reason: NotifyReason::FirstNotification,
            external_url: String::new(),
            route_labels: Default::default(),
            alerts: vec![],
            receiver_data: Default::default(),
        }
    }

    fn flaky(fail_first: u32, retryable: bool) -> Arc<Flaky> {
        Arc::new(Flaky {
            fail_first,
            calls: AtomicU32::new(0),
            times: Mutex::new(vec![]),
            retryable,
            retry_after: None,
        })
    }

    fn integ(n: &Arc<Flaky>, timeout: Option<Duration>) -> Integration {
        Integration {
            kind: "webhook",
            idx: 0,
            send_resolved: true,
            timeout,
            notifier: n.clone(),
            in_flight: crate::in_flight_limit(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_with_growing_backoff_until_success() {
        let n = flaky(3, true);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let start = Instant::now();
        let attempts = send_with_retry(&integ(&n, None), &data(), start + Duration::from_secs(60), &rx, |_| {
            true
        })
        .await
        .unwrap();
        assert_eq!(
            attempts,
            Sent::Delivered {
                attempts: 4,
                kept: None
            }
        );
        let times = n.times.lock().unwrap().clone();
        assert_eq!(times[0], start);
        // 500ms ±50%, then 750ms ±50%.
        let gap1 = times[1] - times[0];
        let gap2 = times[2] - times[1];
        assert!(
            gap1 >= Duration::from_millis(250) && gap1 <= Duration::from_millis(750),
            "{gap1:?}"
        );
        assert!(
            gap2 >= Duration::from_millis(375) && gap2 <= Duration::from_millis(1125),
            "{gap2:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_waited_out_within_the_deadline() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let mut f = Arc::into_inner(flaky(2, true)).unwrap();
        f.retry_after = Some(Duration::from_secs(7));
        let n = Arc::new(f);
        let start = Instant::now();
        let sent = send_with_retry(&integ(&n, None), &data(), start + Duration::from_secs(60), &rx, |_| {
            true
        })
        .await
        .unwrap();
        assert_eq!(
            sent,
            Sent::Delivered {
                attempts: 3,
                kept: None
            }
        );
        let times = n.times.lock().unwrap().clone();
        // Not the 0.5 s backoff: the receiver's 7 s, each time.
        assert_eq!(times[1] - times[0], Duration::from_secs(7));
        assert_eq!(times[2] - times[1], Duration::from_secs(7));
        // A wait past the deadline ends at the deadline, with the receiver's error.
        let mut f = Arc::into_inner(flaky(u32::MAX, true)).unwrap();
        f.retry_after = Some(Duration::from_secs(3600));
        let n = Arc::new(f);
        let start = Instant::now();
        let err = send_with_retry(&integ(&n, None), &data(), start + Duration::from_secs(30), &rx, |_| {
            true
        })
        .await
        .unwrap_err();
        assert_eq!(err.reason, FailureReason::ContextDeadlineExceeded);
        assert_eq!(n.calls.load(Ordering::SeqCst), 1);
        assert_eq!(Instant::now(), start + Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_deadline_and_on_fatal_errors() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let n = flaky(u32::MAX, true);
        let start = Instant::now();
        let err = send_with_retry(&integ(&n, None), &data(), start + Duration::from_secs(10), &rx, |_| {
            true
        })
        .await
        .unwrap_err();
        assert_eq!(err.reason, FailureReason::ContextDeadlineExceeded);
        assert_eq!(err.message, "context deadline exceeded: last error: boom");
        assert_eq!(Instant::now(), start + Duration::from_secs(10));
        let n = flaky(u32::MAX, false);
        let err = send_with_retry(&integ(&n, None), &data(), start + Duration::from_secs(100), &rx, |_| {
            true
        })
        .await
        .unwrap_err();
        assert_eq!(err.reason, FailureReason::ServerError);
        assert_eq!(n.calls.load(Ordering::SeqCst), 1);
    }

    struct Slow;

    impl Notifier for Slow {
        fn notify<'a>(&'a self, _: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(None)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_over_the_timeout_fail_and_are_retried() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let i = Integration {
            kind: "webhook",
            idx: 0,
            send_resolved: true,
            timeout: Some(Duration::from_millis(500)),
            notifier: Arc::new(Slow),
            in_flight: crate::in_flight_limit(),
        };
        let start = Instant::now();
        let mut seen = Vec::new();
        let err = send_with_retry(&i, &data(), start + Duration::from_secs(3), &rx, |e| {
            if let Event::Attempt(a) = e {
                seen.push(a.clone());
            }
            true
        })
        .await
        .unwrap_err();
        assert_eq!(err.reason, FailureReason::ContextDeadlineExceeded);
        assert!(seen.len() >= 3, "{} attempts", seen.len());
        // The last attempt may be cut short by the flush deadline.
        assert!(
            seen[..seen.len() - 1]
                .iter()
                .all(|a| a.duration == Duration::from_millis(500))
        );
        assert_eq!(err.message, "context deadline exceeded: last error: request timed out");
    }

    /// Counts attempts under way and the most seen at once; each takes one second.
    #[derive(Default)]
    struct Gauge {
        now: AtomicU32,
        max: AtomicU32,
    }

    impl Notifier for Gauge {
        fn notify<'a>(&'a self, _: &'a NotifyData) -> BoxFuture<'a, Result<Kept, NotifyError>> {
            Box::pin(async {
                let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                Ok(None)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_runs_at_most_max_in_flight_attempts_at_once() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let gauge = Arc::new(Gauge::default());
        let i = Arc::new(Integration {
            kind: "webhook",
            idx: 0,
            send_resolved: true,
            timeout: Some(Duration::from_millis(1500)),
            notifier: gauge.clone(),
            in_flight: crate::in_flight_limit(),
        });
        let start = Instant::now();
        let total = 2 * crate::MAX_IN_FLIGHT + 1;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..total {
            let (i, rx) = (i.clone(), rx.clone());
            set.spawn(async move {
                send_with_retry(&i, &data(), start + Duration::from_secs(60), &rx, |e| {
                    // The wait for a slot is not counted in the attempt.
                    if let Event::Attempt(a) = e {
                        assert_eq!(a.duration, Duration::from_secs(1));
                    }
                    true
                })
                .await
                .map(|_| Instant::now())
            });
        }
        let mut done = Vec::new();
        while let Some(r) = set.join_next().await {
            done.push(r.unwrap().unwrap());
        }
        assert_eq!(gauge.max.load(Ordering::SeqCst) as usize, crate::MAX_IN_FLIGHT);
        // Three waves of one second each; none timed out waiting for its slot.
        assert_eq!(done.iter().max(), Some(&(start + Duration::from_secs(3))));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_for_a_slot_ends_at_the_deadline() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let i = integ(&flaky(0, true), None);
        let _all = i.in_flight.acquire_many(crate::MAX_IN_FLIGHT as u32).await.unwrap();
        let start = Instant::now();
        let err = send_with_retry(&i, &data(), start + Duration::from_secs(5), &rx, |_| true)
            .await
            .unwrap_err();
        assert_eq!(err.reason, FailureReason::ContextDeadlineExceeded);
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_caller_can_stop_the_retries() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let n = flaky(u32::MAX, true);
        let start = Instant::now();
        let mut retries = 0;
        let sent = send_with_retry(&integ(&n, None), &data(), start + Duration::from_secs(60), &rx, |e| {
            retries += u32::from(matches!(e, Event::Retry));
            retries < 2
        })
        .await
        .unwrap();
        assert_eq!(sent, Sent::Stopped);
        assert_eq!(n.calls.load(Ordering::SeqCst), 2, "asked before the third attempt");
    }
}
