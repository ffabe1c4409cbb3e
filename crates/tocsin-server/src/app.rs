//! The running replica: alert store, dispatcher, notification pipeline, configuration reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use tocsin_core::alert::{Alert, PostedAlert, prepare};
use tocsin_core::claim::{Claim, Claims};
use tocsin_core::config::{Config, LoadOptions, Receiver, load};
use tocsin_core::delivery::{Delivery, Logged, Look, NodeId, Params, Step, View};
use tocsin_core::inhibit::Inhibitor;
use tocsin_core::labels::hash_alert;
use tocsin_core::nflog::{Entry, Nflog, ReceiverKey};
use tocsin_core::route::Route;
use tocsin_core::silence::{Limits, MeshSilence, Silence, SilenceError, Silences};
use tocsin_core::timeinterval::any_contains;
use tocsin_notify::{Event, Integration, NotifyData, Sent, Shared, send_with_retry};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::clock::Clock;
use crate::dispatch::{Dispatcher, FlushJob};
use crate::peer::{Peer, SingleNode};
use crate::store::AlertStore;

/// Counts a running flush; its drop wakes [`App::drain`] when it was the last.
struct InFlight<'a>(&'a App);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.inflight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Builds a receiver's integrations; tests inject in-memory notifiers here.
pub type NotifierFactory = Arc<dyn Fn(&Receiver, &Shared) -> Result<Vec<Integration>, String> + Send + Sync>;

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
    /// `--silences.max-silences` and `--silences.max-silence-size-bytes`.
    pub silence_limits: Limits,
    /// `--cluster.peer-timeout`: the wait per position before deciding to notify.
    pub peer_timeout: Duration,
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
            silence_limits: Limits::default(),
            peer_timeout: Duration::from_secs(15),
        }
    }
}

/// The configuration-dependent part, swapped whole on reload.
pub struct Active {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Integrations of every receiver used by a route.
    pub integrations: HashMap<String, Vec<Integration>>,
    /// Cancels in-flight notifications of this configuration.
    cancel: watch::Sender<bool>,
}

/// A replica.
pub struct App {
    /// Wall clock derived from tokio time.
    pub clock: Clock,
    /// Flag settings.
    pub settings: Settings,
    /// Alerts.
    pub store: AlertStore,
    /// The notification log.
    pub nflog: Mutex<Nflog>,
    /// Silences.
    pub silences: RwLock<Silences>,
    /// In-flight sends of every replica.
    pub claims: Mutex<Claims>,
    /// Bumped when a peer's log entry or claim arrives, to wake replicas waiting on a claim.
    replicated: watch::Sender<u64>,
    /// Flushes running now, and a wake-up when the count reaches zero (shutdown drains them).
    inflight: std::sync::atomic::AtomicUsize,
    idle: Notify,
    /// Exported metrics.
    pub metrics: crate::metrics::Metrics,
    active: RwLock<Arc<Active>>,
    peer: RwLock<Arc<dyn Peer>>,
    cluster: RwLock<Option<Arc<crate::cluster::ClusterPeer>>>,
    inhibitor: RwLock<Inhibitor>,
    dispatcher: Mutex<Dispatcher>,
    wake: Notify,
    factory: NotifierFactory,
    reload_lock: tokio::sync::Mutex<()>,
    /// When the replica started.
    pub started: Timestamp,
}

/// Why an alert of a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Position in the batch.
    pub index: usize,
    /// Message.
    pub message: String,
}

/// Parses the default templates and then every file matched by the config's `templates:` globs,
/// in name order per glob (later definitions win, as in Alertmanager).
///
/// # Errors
/// A bad glob, an unreadable file or a template that does not parse.
pub fn load_templates(globs: &[PathBuf]) -> Result<tocsin_template::Template, String> {
    let mut t = tocsin_template::Template::with_defaults();
    for g in globs {
        let pattern = g.to_string_lossy();
        let mut files: Vec<PathBuf> = glob::glob(&pattern)
            .map_err(|e| format!("invalid template glob {pattern:?}: {e}"))?
            .filter_map(Result::ok)
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("read template {}: {e}", f.display()))?;
            let name = f
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            t.parse(&name, &text)
                .map_err(|e| format!("failed to parse template {}: {e}", f.display()))?;
        }
    }
    Ok(t)
}

fn build_active(config: Config, factory: &NotifierFactory, template_errors: &Counter) -> Result<Active, String> {
    let shared = Shared {
        templates: Arc::new(load_templates(&config.templates)?),
        template_errors: template_errors.clone(),
    };
    let mut integrations = HashMap::new();
    for r in config.active_receivers() {
        integrations.insert(r.name.clone(), factory(r, &shared)?);
    }
    let (cancel, _) = watch::channel(false);
    Ok(Active {
        config: Arc::new(config),
        integrations,
        cancel,
    })
}

/// Reads and validates the config file and the template files it names.
///
/// # Errors
/// Returns the read or validation error, prefixed with nothing (callers add context).
pub fn read_config(path: &Path, opts: &LoadOptions) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let config = load(&text, base, opts).map_err(|e| e.to_string())?;
    load_templates(&config.templates)?;
    Ok(config)
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
        let active = build_active(config, &factory, &metrics.template_errors)?;
        let silences = Silences::new(
            settings.retention,
            settings.silence_limits,
            settings.load.name_validation(),
        );
        metrics.reload_ok.set(1);
        metrics.reload_ts.set(clock.now().as_second() as f64);
        metrics
            .config_hash
            .set(crate::metrics::config_hash(&active.config.original));
        Ok(Arc::new(App {
            metrics,
            silences: RwLock::new(silences),
            claims: Mutex::new(Claims::default()),
            replicated: watch::channel(0).0,
            inflight: std::sync::atomic::AtomicUsize::new(0),
            idle: Notify::new(),
            peer: RwLock::new(Arc::new(SingleNode)),
            cluster: RwLock::new(None),
            started: clock.now(),
            clock,
            settings,
            store: AlertStore::default(),
            nflog: Mutex::new(Nflog::default()),
            active: RwLock::new(Arc::new(active)),
            inhibitor: RwLock::new(inhibitor),
            dispatcher: Mutex::new(Dispatcher::default()),
            wake: Notify::new(),
            factory,
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// Joins a cluster (before the scheduler starts).
    pub fn set_peer(&self, peer: Arc<dyn Peer>) {
        *self.peer.write() = peer;
    }

    /// Joins a real cluster: its peer drives the pipeline and the status API shows its members.
    pub fn set_cluster(&self, peer: Arc<crate::cluster::ClusterPeer>) {
        *self.peer.write() = peer.clone();
        *self.cluster.write() = Some(peer);
    }

    /// Returns the cluster membership, when clustering is enabled.
    pub fn cluster(&self) -> Option<Arc<crate::cluster::ClusterPeer>> {
        self.cluster.read().clone()
    }

    /// Returns the cluster peer.
    pub fn peer(&self) -> Arc<dyn Peer> {
        self.peer.read().clone()
    }

    /// Merges a notification log entry from a peer; returns whether it was new.
    pub fn merge_nflog(&self, e: Entry) -> bool {
        let new = self.nflog.lock().merge(e, self.clock.now());
        if new {
            self.replicated.send_modify(|v| *v += 1);
        }
        new
    }

    /// Merges an in-flight claim from a peer; returns whether it changed local state.
    pub fn merge_claim(&self, c: Claim) -> bool {
        let new = self.claims.lock().merge(c, self.clock.now());
        if new {
            self.replicated.send_modify(|v| *v += 1);
        }
        new
    }

    /// Merges a silence from a peer; returns whether it changed local state.
    pub fn merge_silence(&self, m: MeshSilence) -> bool {
        self.silences.write().merge(m, self.clock.now())
    }

    /// Creates or updates a silence and replicates it.
    ///
    /// # Errors
    /// As [`Silences::set`].
    pub fn set_silence(&self, s: Silence, new_id: impl FnOnce() -> String) -> Result<String, SilenceError> {
        let now = self.clock.now();
        let mut store = self.silences.write();
        let old_id = s.id.clone();
        let id = store.set(s, now, new_id)?;
        // A replaced silence was expired: replicate that too.
        let changed: Vec<MeshSilence> = [old_id, id.clone()]
            .iter()
            .filter_map(|i| store.get_mesh(i).cloned())
            .collect();
        drop(store);
        let peer = self.peer();
        for m in &changed {
            peer.broadcast_silence(m);
        }
        Ok(id)
    }

    /// Expires a silence and replicates it.
    ///
    /// # Errors
    /// [`SilenceError::NotFound`] for an unknown id.
    pub fn expire_silence(&self, id: &str) -> Result<(), SilenceError> {
        let now = self.clock.now();
        let mut store = self.silences.write();
        store.expire(id, now)?;
        let m = store.get_mesh(id).cloned();
        drop(store);
        if let Some(m) = m {
            self.peer().broadcast_silence(&m);
        }
        Ok(())
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
        // Alerts of one rule arrive together with the same generator URL: they share one copy
        // (48 of the ~420 bytes a stored alert takes).
        let mut last_url: Option<Arc<str>> = None;
        for (index, p) in batch.into_iter().enumerate() {
            match prepare(p, now, resolve_timeout, names) {
                Ok(mut a) => {
                    match &last_url {
                        Some(u) if *u == a.generator_url => a.generator_url = u.clone(),
                        _ => last_url = Some(a.generator_url.clone()),
                    }
                    resolved += usize::from(a.resolved_at(now));
                    stored.push(self.store.put(a, now));
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
        if !rejected.is_empty() {
            self.metrics
                .alerts_invalid
                .get_or_create(&crate::metrics::VersionLabel { version: "v2".into() })
                .inc_by(rejected.len() as u64);
        }
        self.route_alerts(&active, &stored, now);
        rejected
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
        let created = self
            .dispatcher
            .lock()
            .insert(&active.config.route, alerts, Instant::now(), now);
        if created {
            self.wake.notify_one();
        }
    }

    /// Reloads the config file; on error the running configuration stays.
    ///
    /// # Errors
    /// Returns why the new file was rejected.
    pub async fn reload(self: &Arc<Self>) -> Result<(), String> {
        let _guard = self.reload_lock.lock().await;
        let config = match read_config(&self.settings.config_path, &self.settings.load) {
            Ok(c) => c,
            Err(e) => {
                self.metrics.reload_ok.set(0);
                return Err(e);
            }
        };
        for w in &config.warnings {
            warn!(warning = %w, "configuration warning");
        }
        let applied = self.apply(config);
        if applied.is_err() {
            self.metrics.reload_ok.set(0);
        }
        applied
    }

    /// Swaps in a validated configuration: in-flight notifications are cancelled, groups are
    /// rebuilt from the stored alerts and their timers restart (§3.2).
    ///
    /// # Errors
    /// Returns a message when an integration cannot be built (the old configuration stays).
    pub fn apply(self: &Arc<Self>, config: Config) -> Result<(), String> {
        let mut inhibitor = Inhibitor::new(config.inhibit_rules.clone());
        let active = Arc::new(build_active(config, &self.factory, &self.metrics.template_errors)?);
        let alerts = self.store.list();
        for a in &alerts {
            inhibitor.observe(a);
        }
        let now = self.clock.now();
        let old = {
            let mut d = self.dispatcher.lock();
            d.reset();
            let old = std::mem::replace(&mut *self.active.write(), active.clone());
            *self.inhibitor.write() = inhibitor;
            d.insert(&active.config.route, &alerts, Instant::now(), now);
            old
        };
        let _ = old.cancel.send(true);
        self.wake.notify_one();
        self.metrics.reload_ok.set(1);
        self.metrics.reload_ts.set(self.clock.now().as_second() as f64);
        self.metrics
            .config_hash
            .set(crate::metrics::config_hash(&active.config.original));
        info!("completed loading of configuration file");
        Ok(())
    }

    /// Runs the group scheduler and the alert GC until `shutdown` fires.
    pub async fn run_scheduler(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut gc_at = Instant::now() + self.settings.alerts_gc_interval;
        loop {
            let active = self.active();
            let (jobs, next) = {
                let mut d = self.dispatcher.lock();
                let clock = self.clock;
                let jobs = d.due(&active.config.route, Instant::now(), |i| clock.at(i));
                (jobs, d.next_deadline())
            };
            for job in jobs {
                self.spawn_flush(active.clone(), job);
            }
            if Instant::now() >= gc_at {
                let n = self.store.gc(self.clock.now());
                self.inhibitor.write().gc(self.clock.now());
                self.claims.lock().gc(self.clock.now());
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

    fn spawn_flush(self: &Arc<Self>, active: Arc<Active>, job: FlushJob) {
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
        let count = |reason: &str, n: usize| {
            if count {
                self.count_suppressed(reason, n);
            }
        };
        let alerts: Vec<Alert> = {
            let ih = self.inhibitor.read();
            sent.iter()
                .filter(|a| ih.inhibited_by(&a.labels, now).is_none())
                .cloned()
                .collect()
        };
        count("inhibition", sent.len() - alerts.len());
        if alerts.is_empty() {
            return alerts;
        }
        if self.muted_by_time(active, route, now).is_some() {
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
            return Vec::new();
        }
        let before = alerts.len();
        let alerts: Vec<Alert> = {
            let sil = self.silences.read();
            alerts
                .into_iter()
                .filter(|a| sil.silenced_by(&a.labels, now).is_empty())
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

    /// Asks the delivery machine with what this replica sees now.
    fn ask<T>(&self, peer: &dyn Peer, group_key: &str, rk: &ReceiverKey, f: impl FnOnce(&View<'_>) -> T) -> T {
        let live = |n: &str, g: u64| peer.is_live(n, g);
        let nflog = self.nflog.lock();
        let claims = self.claims.lock();
        f(&View {
            now: self.clock.now(),
            entry: nflog.query(group_key, rk),
            claims: &claims,
            live: &live,
        })
    }

    /// Records a local claim or release and replicates it.
    fn replicate_claim(&self, peer: &dyn Peer, c: &Claim) {
        self.claims.lock().merge(c.clone(), self.clock.now());
        peer.broadcast_claim(c);
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
        let mut replicated = self.replicated.subscribe();
        let mut cancel = active.cancel.subscribe();
        // Ends the flush without a send: a claim still held is released.
        let abandon = |machine: &mut Delivery, ok: bool| {
            if let Some(release) = machine.abandon(self.clock.now()) {
                self.replicate_claim(&*peer, &release);
            }
            ok
        };
        let (reason, within) = loop {
            replicated.borrow_and_update();
            let (sleep, on_change) = match self.ask(&*peer, group_key, &rk, |v| machine.decide(v, look.as_ref())) {
                Step::Quiet => {
                    debug!(integration = integ.kind, "notification deduplicated");
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
                    }
                    break (reason, within);
                }
                Step::Claim { claim, settle } => {
                    self.replicate_claim(&*peer, &claim);
                    (settle, false)
                }
                Step::Wait {
                    duration,
                    on_change,
                    why,
                } => {
                    debug!(integration = integ.kind, ?why, ?duration, "waiting before deciding");
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
        if !to_send.is_empty() {
            let data = NotifyData {
                receiver: route.receiver.clone(),
                group_key: group_key.clone(),
                group_labels: job.labels.clone(),
                reason,
                external_url: self.settings.external_url.clone(),
                alerts: to_send,
            };
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
                            self.replicate_claim(&*peer, &release);
                        }
                    }
                    true
                }
                Event::Retry => self.ask(&*peer, group_key, &rk, |v| machine.keep_trying(v)),
            })
            .await;
            match result {
                Ok(Sent::Stopped) => {
                    debug!(integration = integ.kind, "a peer delivered while this replica retried");
                    return true;
                }
                Ok(Sent::Delivered { .. }) => debug!(
                    integration = integ.kind,
                    alerts = data.alerts.len(),
                    reason = reason.as_str(),
                    "notify success"
                ),
                Err(e) => {
                    if let Some(release) = machine.failed(self.clock.now()) {
                        self.replicate_claim(&*peer, &release);
                    }
                    let fl = crate::metrics::FailedLabels {
                        integration: integ.kind.into(),
                        reason: e.reason.as_str().into(),
                    };
                    self.metrics.notifications_failed.get_or_create(&fl).inc();
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
        let logged = self
            .nflog
            .lock()
            .log(
                group_key,
                &rk,
                firing,
                resolved,
                at,
                route.repeat_interval * 2,
                self.settings.retention,
            )
            .cloned();
        if let Some(e) = logged {
            peer.broadcast_nflog(&e);
        }
        true
    }
}
