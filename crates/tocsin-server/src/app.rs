//! The running replica: the alert store and ingest, the dispatcher's scheduler, and the seams
//! the other stages hang on: `pipeline.rs` (one flush, inhibit → mute → silence → the
//! delivery machine), [`crate::replicated`] (nflog, silences, claims) and [`crate::reload`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::{Mutex, RwLock};
use tocsin_core::alert::{Alert, PostedAlert, prepare};
use tocsin_core::config::{Config, LoadOptions, Receiver};
use tocsin_core::inhibit::Inhibitor;
use tocsin_core::silence::Limits;
use tocsin_notify::{Integration, Shared};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::clock::Clock;
use crate::dispatch::Dispatcher;
use crate::peer::Peer;
use crate::reload::build_active;
use crate::replicated::ReplicatedState;
use crate::store::AlertStore;

/// Counts a running flush; its drop wakes [`App::drain`] when it was the last.
pub(crate) struct InFlight<'a>(pub(crate) &'a App);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Builds a receiver's integrations; tests inject in-memory notifiers here.
pub type NotifierFactory = Arc<dyn Fn(&Receiver, &Shared) -> Result<Vec<Integration>, String> + Send + Sync>;

/// The longest a peer's claim may block from its receipt: the longest first attempt a route of
/// `config` gives a send (its flush budget, `group_interval` and at least the minimum send
/// budget), and a second for the claim's settle.
pub fn claim_cap(config: &Config) -> Duration {
    config
        .route
        .nodes
        .iter()
        .map(|r| r.group_interval.max(tocsin_core::delivery::MIN_SEND_BUDGET))
        .max()
        .unwrap_or(tocsin_core::delivery::MIN_SEND_BUDGET)
        + Duration::from_secs(1)
}

/// Settings from flags that do not change on reload.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `--config.file`.
    pub config_path: PathBuf,
    /// External URL without trailing slash.
    pub external_url: String,
    /// `--data.retention`.
    pub retention: Duration,
    /// `--alerts.gc-interval`.
    pub alerts_gc_interval: Duration,
    /// Config loader options (matcher mode, local zone).
    pub load: LoadOptions,
    /// `--storage.path`; `None` keeps state in memory only (tests).
    pub storage_path: Option<PathBuf>,
    /// `--data.maintenance-interval`.
    pub maintenance_interval: Duration,
    /// `--data.journal-sync-interval`: the nflog journal's fsync period.
    pub journal_sync_interval: Duration,
    /// `--silences.max-silences` and `--silences.max-silence-size-bytes`.
    pub silence_limits: Limits,
    /// `--cluster.peer-timeout`: the wait per position before deciding to notify.
    pub peer_timeout: Duration,
    /// `--cluster.max-clock-skew`: how far past our clock a peer's record may be dated.
    pub max_clock_skew: Duration,
    /// `--web.timeout`: API requests taking longer are answered 503 (zero: no timeout).
    pub web_timeout: Duration,
    /// `--web.get-concurrency`: API GETs served at once (0: the CPUs, at least 8).
    pub get_concurrency: usize,
    /// `--alerts.per-alertname-limit` (0: no limit).
    pub per_alertname_limit: usize,
    /// `--alerts.drop-label`: labels removed from every posted alert before it is stored.
    pub drop_labels: Vec<String>,
    /// `--alerts.max-alerts`, `--alerts.max-labels`, `--alerts.max-label-bytes` (0: none).
    pub alert_bounds: AlertBounds,
    /// The snapshots' file mode: 0o600, or 0o640 with `--storage.group-readable`.
    pub snapshot_mode: u32,
    /// `--web.body-read-timeout`: a request body must arrive within it.
    pub body_read_timeout: Duration,
    /// `--web.request-memory`: bytes of request bodies read or handled at once.
    pub request_memory: u64,
    /// `--events.max-size-bytes` and `--events.retention`.
    pub events: crate::events::Limits,
    /// `--cluster.peer-name`: names this replica in its events when it runs alone (the host
    /// name when empty).
    pub peer_name: String,
    /// `--enable-feature=event-recorder`: the config's `event_recorder` outputs export events.
    pub event_recorder: bool,
}

/// Tocsin's bounds on what one alert and the store may hold.
#[derive(Clone, Copy, Debug)]
pub struct AlertBounds {
    /// Alerts stored.
    pub max_alerts: usize,
    /// Labels of one alert.
    pub max_labels: usize,
    /// Bytes of one alert's label names and values together.
    pub max_label_bytes: usize,
}

impl Default for AlertBounds {
    fn default() -> Self {
        AlertBounds {
            max_alerts: 2_000_000,
            max_labels: 256,
            max_label_bytes: 65_536,
        }
    }
}

impl AlertBounds {
    /// Why `a` is too large to store, if it is: `(reason label, message)`.
    fn refuse(&self, a: &Alert) -> Option<(&'static str, String)> {
        let n = a.labels.len();
        if self.max_labels > 0 && n > self.max_labels {
            return Some((
                "too_many_labels",
                format!("{n} labels, more than --alerts.max-labels={}", self.max_labels),
            ));
        }
        let bytes: usize = a.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
        if self.max_label_bytes > 0 && bytes > self.max_label_bytes {
            return Some((
                "labels_too_large",
                format!(
                    "labels of {bytes} bytes, more than --alerts.max-label-bytes={}",
                    self.max_label_bytes
                ),
            ));
        }
        None
    }
}

impl Settings {
    /// Alertmanager's defaults for everything but the config path; no storage.
    pub fn new(config_path: impl Into<PathBuf>) -> Self {
        Settings {
            config_path: config_path.into(),
            external_url: "http://localhost:9093".into(),
            retention: Duration::from_secs(120 * 3600),
            alerts_gc_interval: Duration::from_secs(30 * 60),
            load: LoadOptions::default(),
            storage_path: None,
            maintenance_interval: Duration::from_secs(15 * 60),
            journal_sync_interval: crate::storage::NFLOG_SYNC,
            silence_limits: Limits::default(),
            peer_timeout: Duration::from_secs(15),
            max_clock_skew: Duration::from_secs(300),
            web_timeout: Duration::ZERO,
            get_concurrency: 0,
            per_alertname_limit: 0,
            drop_labels: Vec::new(),
            alert_bounds: AlertBounds::default(),
            snapshot_mode: 0o600,
            body_read_timeout: Duration::from_secs(60),
            request_memory: 1 << 30,
            events: crate::events::Limits::default(),
            peer_name: String::new(),
            event_recorder: false,
        }
    }
}

/// The configuration-dependent part, swapped whole on reload.
pub struct Active {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Integrations of every receiver used by a route.
    pub integrations: HashMap<String, Vec<Integration>>,
    /// Each route's `labels` compiled (by route index; `None` for a route without labels).
    pub route_labels: Vec<Option<Arc<tocsin_notify::route_labels::RouteLabels>>>,
    /// Cancels in-flight notifications of this configuration.
    pub(crate) cancel: watch::Sender<bool>,
}

/// A replica.
pub struct App {
    /// Wall clock derived from tokio time.
    pub clock: Clock,
    /// Flag settings.
    pub settings: Settings,
    /// Alerts.
    pub store: AlertStore,
    /// `--alerts.per-alertname-limit`.
    per_alertname: parking_lot::Mutex<tocsin_core::limit::PerAlertname>,
    /// The silence journal (`storage.rs`); its lock orders API changes against the snapshot
    /// that empties it.
    pub(crate) silence_journal: crate::storage::Journal,
    /// The notification log's journal: this replica's sends since the last snapshot.
    pub(crate) nflog_journal: crate::storage::Journal,
    /// Alerts refused by a bound, warned about at most once per period.
    refusal_warned: crate::logging::RateLimited,
    /// The last `/metrics` body and when it was made (scrapes run one at a time and reuse a
    /// body under a second old).
    pub(crate) metrics_body: tokio::sync::Mutex<Option<(std::time::Instant, bytes::Bytes)>>,
    /// How many `/metrics` bodies were made (a scrape that sees it grow while it waited reuses).
    pub(crate) metrics_made: std::sync::atomic::AtomicU64,
    /// `--web.request-memory`, in KiB permits.
    pub(crate) body_memory: Arc<tokio::sync::Semaphore>,
    /// Heavy reads (listings, /metrics) at once: half the cores, at least one.
    pub(crate) heavy_reads: Arc<tokio::sync::Semaphore>,
    /// Notification log, silences and claims: read freely, changed only by merging a peer's
    /// record or by a local change that is broadcast.
    pub state: ReplicatedState,
    /// Flushes running now, and a wake-up when the count reaches zero (shutdown drains them).
    pub(crate) inflight: std::sync::atomic::AtomicUsize,
    pub(crate) idle: Notify,
    /// Exported metrics.
    pub metrics: crate::metrics::Metrics,
    pub(crate) active: RwLock<Arc<Active>>,
    cluster: RwLock<Option<Arc<crate::cluster::ClusterPeer>>>,
    pub(crate) inhibitor: RwLock<Inhibitor>,
    pub(crate) dispatcher: Mutex<Dispatcher>,
    pub(crate) wake: Notify,
    pub(crate) factory: NotifierFactory,
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// When the replica started.
    pub started: Timestamp,
    /// The event history.
    pub events: crate::events::EventLog,
    /// The position this replica last decided at (for `position_changed`).
    last_position: std::sync::atomic::AtomicUsize,
}

/// Why an alert of a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position in the batch.
    pub index: usize,
    /// Message.
    pub message: String,
}

impl App {
    /// Builds a replica from a validated configuration.
    ///
    /// # Errors
    /// Returns a message when an integration cannot be built.
    pub fn new(
        settings: Settings,
        config: Config,
        factory: NotifierFactory,
        clock: Clock,
    ) -> Result<Arc<Self>, String> {
        let inhibitor = Inhibitor::new(config.inhibit_rules.clone());
        let metrics = crate::metrics::Metrics::new();
        let active = build_active(config, &factory, &metrics.template_errors, None)?;
        let state = ReplicatedState::new(
            clock.clone(),
            settings.retention,
            settings.silence_limits,
            settings.load.name_validation(),
        );
        state.set_bounds(settings.max_clock_skew, claim_cap(&active.config));
        metrics.reload_ok.set(1);
        let per_alertname_limit = settings.per_alertname_limit;
        let alert_bounds = settings.alert_bounds;
        // At least one largest body fits, whatever the flag says.
        let body_kib =
            usize::try_from((settings.request_memory / 1024).max((crate::api::MAX_BODY_BYTES / 1024) as u64))
                .unwrap_or(usize::MAX)
                .min(tokio::sync::Semaphore::MAX_PERMITS);
        metrics.per_alert_limit.set(per_alertname_limit as i64);
        metrics.reload_ts.set(clock.now().as_second() as f64);
        metrics
            .config_hash
            .set(crate::metrics::config_hash(&active.config.original));
        let events = match &settings.storage_path {
            Some(dir) => crate::events::EventLog::open(
                &dir.join("events"),
                settings.events,
                settings.snapshot_mode,
                metrics.events.clone(),
            )
            .map_err(|e| format!("cannot open the event log under {}: {e}", dir.display()))?,
            None => crate::events::EventLog::memory(metrics.events.clone()),
        };
        Ok(Arc::new(App {
            events,
            last_position: std::sync::atomic::AtomicUsize::new(0),
            metrics,
            state,
            inflight: std::sync::atomic::AtomicUsize::new(0),
            idle: Notify::new(),
            cluster: RwLock::new(None),
            started: clock.now(),
            clock,
            settings,
            store: AlertStore::with_max(alert_bounds.max_alerts),
            refusal_warned: crate::logging::RateLimited::default(),
            metrics_body: tokio::sync::Mutex::new(None),
            metrics_made: std::sync::atomic::AtomicU64::new(0),
            body_memory: Arc::new(tokio::sync::Semaphore::new(body_kib)),
            heavy_reads: Arc::new(tokio::sync::Semaphore::new(
                (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1),
            )),
            per_alertname: parking_lot::Mutex::new(tocsin_core::limit::PerAlertname::new(per_alertname_limit)),
            silence_journal: crate::storage::Journal::default(),
            nflog_journal: crate::storage::Journal::default(),
            active: RwLock::new(Arc::new(active)),
            inhibitor: RwLock::new(inhibitor),
            dispatcher: Mutex::new(Dispatcher::default()),
            wake: Notify::new(),
            factory,
            reload_lock: tokio::sync::Mutex::new(()),
        }))
        .inspect(|app| app.start_event_outputs(&app.active().config))
    }

    /// Starts the `event_recorder` outputs of `config` (with `--enable-feature=event-recorder`);
    /// when one cannot be built, the outputs running stay, as in Alertmanager.
    pub(crate) fn start_event_outputs(&self, config: &Config) {
        if !self.settings.event_recorder {
            if !config.event_recorder.is_empty() {
                warn!(
                    "event_recorder is configured but --enable-feature=event-recorder is not set: events are not exported"
                );
            }
            return;
        }
        match crate::event_outputs::Outputs::start(
            &config.event_recorder,
            &crate::user_agent(),
            &self.metrics.event_outputs,
        ) {
            Ok(o) => self.events.set_outputs(o),
            Err(e) => warn!(err = %e, "event_recorder outputs could not be built; the previous ones stay"),
        }
    }

    /// Records an event done by this replica now.
    pub fn record(&self, e: tocsin_core::events::Event) {
        self.events
            .record(e, self.replica_name(&*self.peer()), self.clock.now());
    }

    /// The name this replica acts under: its cluster name, else `--cluster.peer-name` (the
    /// event log falls back to the host name).
    pub(crate) fn replica_name<'a>(&'a self, peer: &'a dyn Peer) -> &'a str {
        match peer.name() {
            "" => &self.settings.peer_name,
            n => n,
        }
    }

    /// Records a `position_changed` event when `position` differs from the last one seen.
    pub(crate) fn note_position(&self, position: usize) {
        let before = self.last_position.swap(position, std::sync::atomic::Ordering::Relaxed);
        if before != position {
            let mut e = tocsin_core::events::Event::new(tocsin_core::events::Kind::PositionChanged);
            e.position = Some(u32::try_from(position).unwrap_or(u32::MAX));
            e.reason = format!("from {before}");
            self.record(e);
        }
    }

    /// Joins a cluster (before the scheduler starts).
    pub fn set_peer(&self, peer: Arc<dyn Peer>) {
        self.state.set_peer(peer);
    }

    /// Joins a real cluster: its peer drives the pipeline and the status API shows its members.
    pub fn set_cluster(&self, peer: Arc<crate::cluster::ClusterPeer>) {
        self.state.set_peer(peer.clone());
        *self.cluster.write() = Some(peer);
    }

    /// Returns the cluster membership, when clustering is enabled.
    pub fn cluster(&self) -> Option<Arc<crate::cluster::ClusterPeer>> {
        self.cluster.read().clone()
    }

    /// Returns the cluster peer.
    pub fn peer(&self) -> Arc<dyn Peer> {
        self.state.peer()
    }

    /// Returns the active configuration.
    pub fn active(&self) -> Arc<Active> {
        self.active.read().clone()
    }

    /// Returns the inhibitor (read-locked).
    pub fn inhibitor(&self) -> parking_lot::RwLockReadGuard<'_, Inhibitor> {
        self.inhibitor.read()
    }

    /// Returns the dispatcher (locked; keep the guard short).
    pub fn dispatcher(&self) -> parking_lot::MutexGuard<'_, Dispatcher> {
        self.dispatcher.lock()
    }

    /// Ingests a batch: valid alerts are stored and dispatched even when others are rejected.
    pub fn post_alerts(&self, batch: Vec<PostedAlert>) -> Vec<Rejected> {
        let now = self.clock.now();
        let active = self.active();
        let resolve_timeout = active.config.resolve_timeout;
        let names = self.settings.load.name_validation();
        let mut rejected = Vec::new();
        let mut stored = Vec::with_capacity(batch.len());
        let mut resolved = 0;
        let (limit, mut limited, mut per_name) = (self.settings.per_alertname_limit, 0u64, 0u64);
        // Alerts of one rule arrive together with the same generator URL: they share one copy
        // (48 of the ~420 bytes a stored alert takes).
        let mut last_url: Option<Arc<str>> = None;
        let mut created = Vec::new();
        let drop = &self.settings.drop_labels;
        for (index, mut p) in batch.into_iter().enumerate() {
            // Before validation and the fingerprint: the alerts of an HA pair become one.
            for name in drop {
                p.labels.remove(name);
            }
            match prepare(p, now, resolve_timeout, names) {
                Ok(mut a) => {
                    if let Some((reason, message)) = self.settings.alert_bounds.refuse(&a) {
                        self.refuse_alert(reason);
                        limited += 1;
                        rejected.push(Rejected { index, message });
                        continue;
                    }
                    if limit > 0 {
                        let name = a.labels.get("alertname").unwrap_or_default();
                        if !self.per_alertname.lock().admit(name, a.fingerprint, a.ends_at, now) {
                            limited += 1;
                            per_name += 1;
                            rejected.push(Rejected {
                                index,
                                message: format!(
                                    "alert limit reached for alertname {name:?}: {limit} alerts stored (--alerts.per-alertname-limit)"
                                ),
                            });
                            continue;
                        }
                    }
                    match &last_url {
                        Some(u) if *u == a.generator_url => a.generator_url = u.clone(),
                        _ => last_url = Some(a.generator_url.clone()),
                    }
                    let is_resolved = a.resolved_at(now);
                    let Some((put, new)) = self.store.put_new(a, now) else {
                        self.refuse_alert("store_full");
                        limited += 1;
                        rejected.push(Rejected {
                            index,
                            message: format!(
                                "the alert store is full: {} alerts stored (--alerts.max-alerts)",
                                self.store.max()
                            ),
                        });
                        continue;
                    };
                    resolved += usize::from(is_resolved);
                    if new {
                        created.push((put.clone(), is_resolved));
                    }
                    stored.push(put);
                }
                Err(message) => rejected.push(Rejected { index, message }),
            }
        }
        // Counted once per batch: a labelled counter lookup per alert showed in ingest profiles.
        for (status, n) in [("firing", stored.len() - resolved), ("resolved", resolved)] {
            if n > 0 {
                let l = crate::metrics::ReceivedLabels {
                    status: status.into(),
                    version: "v2".into(),
                };
                self.metrics.alerts_received.get_or_create(&l).inc_by(n as u64);
            }
        }
        let invalid = rejected.len() as u64 - limited;
        if invalid > 0 {
            self.metrics
                .alerts_invalid
                .get_or_create(&crate::metrics::VersionLabel { version: "v2".into() })
                .inc_by(invalid);
        }
        if per_name > 0 {
            self.metrics.alerts_limited.inc_by(per_name);
            tracing::warn!(
                limited = per_name,
                limit,
                "alerts refused over --alerts.per-alertname-limit"
            );
        }
        let peer = self.peer();
        self.events.created(created, self.replica_name(&*peer), now);
        self.route_alerts(&active, &stored, now);
        rejected
    }

    /// Counts an alert refused by a Tocsin bound; warns at most once every 10 s.
    fn refuse_alert(&self, reason: &'static str) {
        self.metrics
            .alerts_refused
            .get_or_create(&crate::metrics::ReasonLabel { reason: reason.into() })
            .inc();
        if let Some(n) = self.refusal_warned.hit() {
            tracing::warn!(
                reason,
                refused_since_last_report = n,
                "alerts refused over a bound (counted in tocsin_alerts_refused_total)"
            );
        }
    }

    fn route_alerts(&self, active: &Active, alerts: &[Arc<Alert>], now: Timestamp) {
        if alerts.is_empty() {
            return;
        }
        {
            let mut ih = self.inhibitor.write();
            for a in alerts {
                ih.observe(a);
            }
        }
        let mut grouped = Vec::new();
        let created = self.dispatcher.lock().insert(
            &active.config.route,
            alerts,
            Instant::now(),
            now,
            self.events.enabled().then_some(&mut grouped),
        );
        if created {
            self.wake.notify_one();
        }
        let peer = self.peer();
        self.events.grouped(grouped, self.replica_name(&*peer), now);
    }

    /// Runs the group scheduler and the alert GC until `shutdown` fires.
    pub async fn run_scheduler(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut gc_at = Instant::now() + self.settings.alerts_gc_interval;
        loop {
            let active = self.active();
            let (jobs, next) = {
                let mut d = self.dispatcher.lock();
                let clock = &self.clock;
                let jobs = d.due(&active.config.route, Instant::now(), |i| clock.at(i));
                (jobs, d.next_deadline())
            };
            for job in jobs {
                self.spawn_flush(active.clone(), job);
            }
            if Instant::now() >= gc_at {
                let n = self.store.gc(self.clock.now());
                self.per_alertname.lock().gc(self.clock.now());
                self.inhibitor.write().gc(self.clock.now());
                self.state.gc_claims();
                debug!(deleted = n, "garbage-collected resolved alerts");
                gc_at = Instant::now() + self.settings.alerts_gc_interval;
            }
            let wake_at = next.map_or(gc_at, |n| n.min(gc_at));
            tokio::select! {
                _ = tokio::time::sleep_until(wake_at) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Waits, at most `within`, for the running flushes to finish (at shutdown, after the scheduler
    /// stopped: sends under way complete and are logged before the final snapshot). Returns how
    /// many were still running.
    pub async fn drain(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            // Registered before the check: a notify_waiters in between is not missed.
            let idle = self.idle.notified();
            let n = self.inflight.load(std::sync::atomic::Ordering::SeqCst);
            if n == 0 || tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.inflight.load(std::sync::atomic::Ordering::SeqCst);
            }
        }
    }
}
