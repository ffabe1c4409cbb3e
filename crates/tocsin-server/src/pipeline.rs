//! One flush of one aggregation group (§3.3): the tick's look at its alerts (inhibited,
//! time-muted and silenced ones dropped), then for each integration of the receiver its
//! [`Delivery`] machine, whose steps this executes: waits, claims, the send with retries, the
//! release and the log entry. Decisions are the machine's; this file only performs them.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tocsin_core::alert::Alert;
use tocsin_core::delivery::{Delivery, Logged, Look, NodeId, Params, Step, WaitReason};
use tocsin_core::events::{Event as History, EventAlert, Kind, Status};
use tocsin_core::labels::hash_alert;
use tocsin_core::nflog::ReceiverKey;
use tocsin_core::route::Route;
use tocsin_core::timeinterval::any_contains;
use tocsin_notify::{Event, Integration, NotifyData, Sent, send_with_retry};
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, warn};

use crate::app::{Active, App, InFlight};
use crate::dispatch::FlushJob;

impl App {
    pub(crate) fn spawn_flush(self: &Arc<Self>, active: Arc<Active>, job: FlushJob) {
        let app = self.clone();
        let receiver = active
            .config
            .route
            .nodes
            .get(job.id.0)
            .map_or("", |r| r.receiver.as_str());
        // A debug span: at info level, creating and formatting it for every flush was a tenth of
        // the CPU per notification. Warnings name their group and receiver themselves.
        let span = debug_span!("flush", group_key = %job.id.1, receiver = %receiver);
        self.inflight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(
            async move {
                let _done = InFlight(&app);
                let mut job = job;
                loop {
                    let ok = app.pipeline(&active, &job).await;
                    let next = app
                        .dispatcher
                        .lock()
                        .flush_done(&job, ok, Instant::now(), app.clock.now());
                    match next {
                        Some(j) => job = j,
                        None => break,
                    }
                }
            }
            .instrument(span),
        );
    }

    /// The notification pipeline of one flush (§3.3); returns whether every integration succeeded.
    /// What to send, when, and whether at all is each integration's [`Delivery`] machine; this
    /// executes its steps.
    async fn pipeline(self: &Arc<Self>, active: &Arc<Active>, job: &FlushJob) -> bool {
        let Some(route) = active.config.route.nodes.get(job.id.0) else {
            return true;
        };
        let peer = self.peer();
        peer.wait_ready().await;
        let position = peer.position();
        self.note_position(position);
        let alerts = self.look_at(active, route, &job.sent, job.now, true);
        if alerts.is_empty() {
            return true;
        }
        let Some(integrations) = active.integrations.get(&route.receiver) else {
            return true;
        };
        if let [integ] = integrations.as_slice() {
            // The usual receiver: one integration, sent from this task without spawning another.
            return self.deliver(active, route, integ, job, &alerts, position).await;
        }
        let alerts = Arc::new(alerts);
        let mut set = tokio::task::JoinSet::new();
        for integ in integrations.clone() {
            let (app, active, alerts, job) = (self.clone(), active.clone(), alerts.clone(), job.clone());
            let span = tracing::Span::current();
            set.spawn(
                async move {
                    let route = &active.config.route.nodes[job.id.0];
                    app.deliver(&active, route, &integ, &job, &alerts, position).await
                }
                .instrument(span),
            );
        }
        let mut ok = true;
        while let Some(r) = set.join_next().await {
            ok &= r.unwrap_or(false);
        }
        ok
    }

    /// One look at a group's alerts at `now`: inhibited, time-muted and silenced alerts are
    /// dropped (and counted, when `count`: the tick's look is counted, later looks are not).
    fn look_at(&self, active: &Active, route: &Route, sent: &[Alert], now: Timestamp, count: bool) -> Vec<Alert> {
        let record = count;
        let count = |reason: &str, n: usize| {
            if count {
                self.count_suppressed(reason, n);
            }
        };
        // The tick's look records what muted each alert (later looks of the same flush do not).
        let muted = |kind: Kind, a: &Alert, why: String, silence: &str| {
            if record {
                let mut e = History::new(kind);
                e.receiver.clone_from(&route.receiver);
                e.labels = a.labels.clone();
                e.alerts = vec![EventAlert {
                    fingerprint: a.fingerprint,
                    status: Status::of(a.resolved_at(now)),
                }];
                e.reason = why;
                e.silence_id = silence.to_string();
                self.record(e);
            }
        };
        let alerts: Vec<Alert> = {
            let ih = self.inhibitor.read();
            sent.iter()
                .filter(|a| match ih.inhibited_by(&a.labels, now) {
                    None => true,
                    Some(source) => {
                        muted(
                            Kind::InhibitionMutedAlert,
                            a,
                            format!("inhibited by alert {source}"),
                            "",
                        );
                        false
                    }
                })
                .cloned()
                .collect()
        };
        count("inhibition", sent.len() - alerts.len());
        if alerts.is_empty() {
            return alerts;
        }
        if let Some(intervals) = self.muted_by_time(active, route, now) {
            let hit = |n: &String| {
                active
                    .config
                    .time_intervals
                    .get(n)
                    .is_some_and(|i| any_contains(i, now))
            };
            let reason = if !route.active_time_intervals.is_empty() && !route.active_time_intervals.iter().any(hit) {
                "active_time_interval"
            } else {
                "mute_time_interval"
            };
            count(reason, alerts.len());
            for a in &alerts {
                muted(
                    Kind::TimeMutedAlert,
                    a,
                    format!("{reason}: {}", intervals.join(", ")),
                    "",
                );
            }
            return Vec::new();
        }
        let before = alerts.len();
        let alerts: Vec<Alert> = {
            let sil = self.state.silences();
            alerts
                .into_iter()
                .filter(|a| {
                    let by = sil.silenced_by(&a.labels, now);
                    for id in &by {
                        muted(Kind::SilenceMutedAlert, a, "silenced".into(), id);
                    }
                    by.is_empty()
                })
                .collect()
        };
        count("silence", before - alerts.len());
        alerts
    }

    fn count_suppressed(&self, reason: &str, n: usize) {
        if n > 0 {
            let l = crate::metrics::ReasonLabel { reason: reason.into() };
            self.metrics.suppressed.get_or_create(&l).inc_by(n as u64);
        }
    }

    /// Returns the names of the time intervals muting a route at `now`, if it is muted.
    pub fn muted_by_time(&self, active: &Active, route: &Route, now: Timestamp) -> Option<Vec<String>> {
        let ti = &active.config.time_intervals;
        let hit = |n: &String| ti.get(n).is_some_and(|i| any_contains(i, now));
        if !route.active_time_intervals.is_empty() && !route.active_time_intervals.iter().any(hit) {
            return Some(route.active_time_intervals.clone());
        }
        let muting: Vec<String> = route.mute_time_intervals.iter().filter(|n| hit(n)).cloned().collect();
        (!muting.is_empty()).then_some(muting)
    }

    /// Runs one integration's delivery machine (§3.3 stage 6): waits, dedup, claim, send with
    /// retry, release, log. `alerts` is the tick's look.
    async fn deliver(
        &self,
        active: &Active,
        route: &Route,
        integ: &Integration,
        job: &FlushJob,
        alerts: &[Alert],
        position: usize,
    ) -> bool {
        let look_of = |alerts: &[Alert], now| {
            Look::from_alerts(alerts.iter().map(|a| (hash_alert(&a.labels), a.resolved_at(now))))
        };
        let peer = self.peer();
        let rk = ReceiverKey {
            group_name: route.receiver.clone(),
            integration: integ.kind.to_string(),
            idx: integ.idx,
        };
        let group_key = &job.id.1;
        // The tick's look is the machine's; a fresh one is taken after each wait.
        let mut look: Option<Look> = None;
        let mut machine = Delivery::new(
            Params {
                me: (!peer.name().is_empty()).then(|| NodeId {
                    name: peer.name().to_string(),
                    generation: peer.generation(),
                }),
                group_key: group_key.clone(),
                receiver: rk.clone(),
                send_resolved: integ.send_resolved,
                repeat_interval: route.repeat_interval,
                peer_wait: self.settings.peer_timeout.saturating_mul(position as u32),
                tick: job.now,
                budget: route.group_interval.max(Duration::from_secs(10)),
                attempt_timeout: integ.timeout,
            },
            look_of(alerts, job.now),
        );
        let (mut alerts, mut look_now) = (std::borrow::Cow::Borrowed(alerts), job.now);
        let mut replicated = self.state.subscribe();
        let mut cancel = active.cancel.subscribe();
        // Ends the flush without a send: a claim still held is released.
        let abandon = |machine: &mut Delivery, ok: bool| {
            if let Some(release) = machine.abandon(self.clock.now()) {
                self.state.claim(&release);
            }
            ok
        };
        let event = |kind: Kind, alerts: &[Alert], now: Timestamp| {
            let mut e = History::new(kind);
            e.group_key.clone_from(group_key);
            e.receiver.clone_from(&route.receiver);
            e.integration = format!("{}[{}]", integ.kind, integ.idx);
            e.labels = job.labels.clone();
            e.position = Some(u32::try_from(position).unwrap_or(u32::MAX));
            e.alerts = alerts
                .iter()
                .map(|a| EventAlert {
                    fingerprint: a.fingerprint,
                    status: Status::of(a.resolved_at(now)),
                })
                .collect();
            e
        };
        let mut waited_on: Option<String> = None;
        let (reason, within) = loop {
            replicated.borrow_and_update();
            let (sleep, on_change) = match self.state.view(group_key, &rk, |v| machine.decide(v, look.as_ref())) {
                Step::Quiet => {
                    self.metrics.integration(integ.kind).deduplicated.inc();
                    debug!(integration = integ.kind, "notification deduplicated");
                    // Recorded when a peer logged this round's notification while this replica
                    // waited its turn: a quiet tick of an unchanged group is not an event.
                    let fresh_after = job
                        .now
                        .checked_sub(
                            SignedDuration::try_from(self.settings.peer_timeout.min(route.group_interval / 2))
                                .unwrap_or(SignedDuration::ZERO),
                        )
                        .unwrap_or(job.now);
                    let by_peer = self.state.view(group_key, &rk, |v| {
                        let entry = v.entry.filter(|e| e.timestamp > fresh_after)?;
                        let claimant = v
                            .claims
                            .of(group_key, &rk)
                            .filter(|c| c.sender != peer.name())
                            .max_by_key(|c| c.created)
                            .map(|c| c.sender.clone());
                        Some((entry.timestamp, claimant))
                    });
                    if let Some((at, claimant)) = by_peer {
                        let mut e = event(Kind::NotificationDeduplicated, &alerts, look_now);
                        e.reason = format!("the log shows it notified at {at}");
                        e.peer = claimant.unwrap_or_default();
                        self.record(e);
                    }
                    return abandon(&mut machine, true);
                }
                Step::Send {
                    reason,
                    within,
                    claim_expired,
                } => {
                    if claim_expired {
                        debug!(
                            integration = integ.kind,
                            "sending after a peer's claim ended without a log entry"
                        );
                        let mut e = event(Kind::ClaimExpiredSend, &alerts, look_now);
                        e.reason = "a peer's claim ended without a log entry".into();
                        e.peer = waited_on.clone().unwrap_or_default();
                        self.record(e);
                    }
                    break (reason, within);
                }
                Step::Claim { claim, settle } => {
                    self.state.claim(&claim);
                    (settle, false)
                }
                Step::Wait {
                    duration,
                    on_change,
                    why,
                } => {
                    debug!(integration = integ.kind, ?why, ?duration, "waiting before deciding");
                    if let WaitReason::PeerClaim { claimant } = &why
                        && waited_on.as_ref() != Some(claimant)
                    {
                        let mut e = event(Kind::ClaimWaited, &alerts, look_now);
                        e.reason = format!("a live peer is sending it; waiting up to {duration:?}");
                        e.peer.clone_from(claimant);
                        self.record(e);
                        waited_on = Some(claimant.clone());
                    }
                    (duration, on_change)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = replicated.changed(), if on_change => {}
                _ = cancel.wait_for(|c| *c) => return abandon(&mut machine, false),
            }
            // A fresh look at the group after every wait.
            let now = self.clock.now();
            let Some((_, sent)) = self.dispatcher.lock().snapshot(&job.id, job.generation, now) else {
                return abandon(&mut machine, true);
            };
            let fresh = self.look_at(active, route, &sent, now, false);
            if fresh.is_empty() {
                return abandon(&mut machine, true);
            }
            look = Some(look_of(&fresh, now));
            (alerts, look_now) = (std::borrow::Cow::Owned(fresh), now);
        };
        let series = self.metrics.integration(integ.kind);
        series.notifications.inc();
        let to_send: Vec<Alert> = if integ.send_resolved {
            alerts.into_owned()
        } else {
            alerts.iter().filter(|a| !a.resolved_at(look_now)).cloned().collect()
        };
        // What the integration kept at the group's last notification (Slack's message id),
        // carried to the next entry.
        let mut kept = self
            .state
            .view(group_key, &rk, |v| v.entry.map(|e| e.receiver_data.clone()))
            .unwrap_or_default();
        if !to_send.is_empty() {
            let mut data = NotifyData {
                receiver: route.receiver.clone(),
                group_key: group_key.clone(),
                group_labels: job.labels.clone(),
                reason,
                external_url: self.settings.external_url.clone(),
                route_labels: Default::default(),
                alerts: to_send,
                receiver_data: std::mem::take(&mut kept),
            };
            // Route labels are templates from the configuration: rendered off the runtime.
            if let Some(labels) = active.route_labels.get(route.index).cloned().flatten() {
                let (d, now) = (data.clone(), self.clock.now());
                if let Ok((rendered, errors)) = tokio::task::spawn_blocking(move || labels.render(&d, now)).await {
                    if !errors.is_empty() {
                        warn!(route = %route.key, ?errors, "route labels whose template failed were left out");
                    }
                    data.route_labels = rendered;
                }
            }
            let deadline = Instant::now() + within;
            let result = send_with_retry(integ, &data, deadline, &cancel, |e| match e {
                Event::Attempt(a) => {
                    series.requests.inc();
                    series.latency.observe(a.duration.as_secs_f64());
                    if let Some(e) = &a.error {
                        series.requests_failed.inc();
                        debug!(err = %e, "notify attempt failed");
                        // Peers waiting on this send may go ahead at once (fail-open).
                        if let Some(release) = machine.attempt_failed(self.clock.now()) {
                            self.state.claim(&release);
                        }
                    }
                    true
                }
                Event::Retry => self.state.view(group_key, &rk, |v| machine.keep_trying(v)),
            })
            .await;
            match result {
                Ok(Sent::Stopped) => {
                    debug!(integration = integ.kind, "a peer delivered while this replica retried");
                    return true;
                }
                Ok(Sent::Delivered { kept: k, attempts }) => {
                    debug!(
                        integration = integ.kind,
                        alerts = data.alerts.len(),
                        reason = reason.as_str(),
                        "notify success"
                    );
                    let now = self.clock.now();
                    let mut e = event(Kind::Notification, &data.alerts, look_now);
                    e.reason = if attempts > 1 {
                        format!("{} (attempt {attempts})", reason.as_str())
                    } else {
                        reason.as_str().to_string()
                    };
                    if waited_on.is_some() {
                        e.peer = waited_on.clone().unwrap_or_default();
                    }
                    self.record(e);
                    for a in data.alerts.iter().filter(|a| a.resolved_at(look_now)) {
                        let mut e = event(Kind::AlertResolved, std::slice::from_ref(a), look_now);
                        e.labels = a.labels.clone();
                        e.position = None;
                        self.events.record(e, self.replica_name(&*peer), now);
                    }
                    kept = k.unwrap_or(data.receiver_data);
                }
                Err(e) => {
                    if let Some(release) = machine.failed(self.clock.now()) {
                        self.state.claim(&release);
                    }
                    let fl = crate::metrics::FailedLabels {
                        integration: integ.kind.into(),
                        reason: e.reason.as_str().into(),
                    };
                    self.metrics.notifications_failed.get_or_create(&fl).inc();
                    let mut ev = event(Kind::NotificationFailed, &data.alerts, look_now);
                    ev.reason = format!("{}: {e}", e.reason.as_str());
                    self.record(ev);
                    warn!(
                        group_key = %group_key,
                        receiver = %route.receiver,
                        integration = integ.kind,
                        reason = e.reason.as_str(),
                        err = %e,
                        "notify failed"
                    );
                    return false;
                }
            }
        }
        let Logged { firing, resolved, at } = machine.succeeded(self.clock.now());
        let logged = self.state.log(
            group_key,
            &rk,
            firing,
            resolved,
            kept,
            at,
            route.repeat_interval * 2,
            self.settings.retention,
        );
        // Written at once (a process crash keeps it), synced within --data.journal-sync-interval.
        if let Some(e) = logged
            && let Err(err) = crate::storage::journal_nflog(self, &e)
        {
            warn!(err = %err, "the notification log journal could not be written");
        }
        true
    }
}
