//! The replica's event history: a bounded on-disk log of [`Event`]s, written by one thread so
//! that recording never waits on the disk, and read newest first by queries.
//!
//! Layout: `<storage.path>/events/events-<first id, 20 digits>.jsonl`, one JSON object per line.
//! A segment is closed at an eighth of `--events.max-size-bytes`; the oldest segments are deleted
//! while the total is over that size, and once their last write is older than
//! `--events.retention`. A line cut short by a crash is skipped when read.
//!
//! Recording appends to a queue of at most [`QUEUE`] events that the writer takes every
//! [`FLUSH_IDLE`]: no system call and no wake-up on the caller's path. The writer runs under
//! `SCHED_IDLE`: during a burst of new alerts it yields the cores to ingest and delivery and
//! catches up afterwards (writing a burst as it came cost a fifth of ingest throughput on two
//! cores). When it falls a whole queue behind, events are dropped and counted
//! (`tocsin_events_dropped_total`), never waited for.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tocsin_core::alert::Alert;
use tocsin_core::events::{Event, EventAlert, Kind, Query, Status};
use tracing::warn;

/// Events waiting for the writer at most: a burst of this many new alerts is recorded whole
/// while the writer yields to ingest (about 64 bytes each, the alerts themselves shared).
pub const QUEUE: usize = 262_144;
/// Events kept when there is no storage (tests, simulations).
pub const MEMORY_EVENTS: usize = 100_000;
/// Smallest segment, whatever the size limit.
const MIN_SEGMENT: u64 = 64 * 1024;
/// How often the writer deletes segments past the retention.
const AGE_CHECK: Duration = Duration::from_secs(10);
/// How often an idle writer updates the size gauge and checks the age.
const SIZE_CHECK: Duration = Duration::from_secs(1);
/// How often the writer takes the queue and writes it out (a query sees an event within
/// about that).
pub const FLUSH_IDLE: Duration = Duration::from_millis(20);

/// `--events.max-size-bytes` and `--events.retention`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes the log keeps at most (0: no event is recorded).
    pub max_bytes: u64,
    /// How long an event is kept.
    pub retention: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 256 * 1024 * 1024,
            retention: Duration::from_secs(120 * 3600),
        }
    }
}

/// The log's metrics.
#[derive(Clone, Debug, Default)]
pub struct EventMetrics {
    /// `tocsin_events_recorded_total`.
    pub recorded: Counter,
    /// `tocsin_events_dropped_total`: events dropped because the writer fell behind.
    pub dropped: Counter,
    /// `tocsin_event_log_write_errors_total`.
    pub write_errors: Counter,
    /// `tocsin_event_log_bytes`: the size of the log on disk.
    pub bytes: Gauge,
}

/// An event waiting for the writer: built by the writer (off the caller's path) when it is an
/// alert's creation, which ingest records for every new alert.
struct Pending {
    id: u64,
    time: jiff::Timestamp,
    replica: Arc<str>,
    what: What,
}

enum What {
    Event(Box<Event>),
    Created { alert: Arc<Alert>, resolved: bool },
    Grouped(crate::dispatch::Grouped),
}

impl Pending {
    /// Appends the event's JSON (no newline) as `serde_json` writes the [`Event`], by hand (serde
    /// cost a quarter of ingest throughput on two cores); an alert's creation, the one kind
    /// ingest records per alert, without building the event. `cache` keeps the last time's and
    /// replica's JSON: a batch of alerts shares them.
    fn write(self, buf: &mut Vec<u8>, cache: &mut LineCache) {
        use crate::json_out::{push_fingerprint, push_labels, push_str};
        use std::io::Write as _;
        if cache.time.0 != self.time || cache.time.1.is_empty() {
            cache.time = (self.time, self.time.to_string());
        }
        if !Arc::ptr_eq(&cache.replica.0, &self.replica) {
            cache.replica.1.clear();
            push_str(&mut cache.replica.1, &self.replica);
            cache.replica.0 = self.replica.clone();
        }
        // No formatting machinery on the per-alert path: `write!` showed in the writer's profile.
        buf.extend_from_slice(b"{\"id\":");
        buf.extend_from_slice(itoa::Buffer::new().format(self.id).as_bytes());
        buf.extend_from_slice(b",\"time\":\"");
        buf.extend_from_slice(cache.time.1.as_bytes());
        buf.extend_from_slice(b"\",\"replica\":");
        buf.extend_from_slice(&cache.replica.1);
        let e = match self.what {
            What::Created { alert, resolved } => {
                buf.extend_from_slice(br#","type":"alert_created""#);
                if !alert.labels.is_empty() {
                    buf.extend_from_slice(br#","labels":"#);
                    push_labels(buf, &alert.labels);
                }
                buf.extend_from_slice(br#","alerts":[{"fingerprint":"#);
                push_fingerprint(buf, alert.fingerprint);
                buf.extend_from_slice(if resolved {
                    br#","status":"resolved"}]}"#
                } else {
                    br#","status":"firing"}]}"#
                });
                return;
            }
            What::Grouped((group, fingerprint, resolved)) => {
                buf.extend_from_slice(br#","type":"alert_grouped""#);
                for (key, value) in [
                    (&br#","groupKey":"#[..], &group.key),
                    (br#","receiver":"#, &group.receiver),
                ] {
                    if !value.is_empty() {
                        buf.extend_from_slice(key);
                        push_str(buf, value);
                    }
                }
                if !group.labels.is_empty() {
                    buf.extend_from_slice(br#","labels":"#);
                    push_labels(buf, &group.labels);
                }
                buf.extend_from_slice(br#","alerts":[{"fingerprint":"#);
                push_fingerprint(buf, fingerprint);
                buf.extend_from_slice(if resolved {
                    br#","status":"resolved"}]}"#
                } else {
                    br#","status":"firing"}]}"#
                });
                return;
            }
            What::Event(e) => e,
        };
        buf.extend_from_slice(br#","type":""#);
        buf.extend_from_slice(e.kind.as_str().as_bytes());
        buf.push(b'"');
        for (key, value) in [
            ("groupKey", &e.group_key),
            ("receiver", &e.receiver),
            ("integration", &e.integration),
        ] {
            if !value.is_empty() {
                let _ = write!(buf, ",\"{key}\":");
                push_str(buf, value);
            }
        }
        if !e.labels.is_empty() {
            buf.extend_from_slice(br#","labels":"#);
            push_labels(buf, &e.labels);
        }
        if !e.alerts.is_empty() {
            buf.extend_from_slice(br#","alerts":["#);
            for (i, a) in e.alerts.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(br#"{"fingerprint":"#);
                push_fingerprint(buf, a.fingerprint);
                let _ = write!(buf, ",\"status\":\"{}\"}}", a.status.as_str());
            }
            buf.push(b']');
        }
        for (key, value) in [("reason", &e.reason), ("silenceId", &e.silence_id), ("peer", &e.peer)] {
            if !value.is_empty() {
                let _ = write!(buf, ",\"{key}\":");
                push_str(buf, value);
            }
        }
        if let Some(p) = e.position {
            let _ = write!(buf, ",\"position\":{p}");
        }
        buf.push(b'}');
    }

    fn into_event(self) -> Event {
        let mut e = match self.what {
            What::Event(e) => *e,
            What::Created { alert, resolved } => {
                let mut e = Event::new(Kind::AlertCreated);
                e.labels = alert.labels.clone();
                e.alerts = vec![EventAlert {
                    fingerprint: alert.fingerprint,
                    status: Status::of(resolved),
                }];
                e
            }
            What::Grouped((group, fingerprint, resolved)) => {
                let mut e = Event::new(Kind::AlertGrouped);
                e.group_key.clone_from(&group.key);
                e.receiver.clone_from(&group.receiver);
                e.labels = group.labels.clone();
                e.alerts = vec![EventAlert {
                    fingerprint,
                    status: Status::of(resolved),
                }];
                e
            }
        };
        e.id = self.id;
        e.time = self.time;
        e.replica = self.replica.to_string();
        e
    }
}

/// The JSON of the last event's time and replica, which the events of a batch share.
struct LineCache {
    time: (jiff::Timestamp, String),
    replica: (Arc<str>, Vec<u8>),
}

impl Default for LineCache {
    fn default() -> Self {
        LineCache {
            time: (jiff::Timestamp::UNIX_EPOCH, String::new()),
            // Never the same allocation as an event's replica: the first event fills it.
            replica: (Arc::from(""), Vec::new()),
        }
    }
}

/// The queue between recorders and the writer thread: recorders append under a lock (no system
/// call, no wake-up); the writer takes the whole queue every [`FLUSH_IDLE`].
#[derive(Default)]
struct Queue {
    pending: Mutex<Vec<Pending>>,
    closed: AtomicBool,
    /// New `event_recorder` outputs for the writer to take (a reload's).
    outputs: Mutex<Option<crate::event_outputs::Outputs>>,
}

enum Sink {
    /// The writer thread's queue.
    Disk(Arc<Queue>),
    /// No storage: the newest events in memory.
    Memory(Mutex<VecDeque<Event>>),
}

/// The event history of one replica.
pub struct EventLog {
    sink: Sink,
    /// Whether events are recorded: the history is kept, or an output exports them.
    enabled: AtomicBool,
    /// The history is kept on disk (`--events.max-size-bytes` > 0).
    keep: bool,
    dir: Option<PathBuf>,
    next_id: AtomicU64,
    host: String,
    /// The replica name of the last event (shared by the events that follow under it).
    replica: RwLock<Arc<str>>,
    metrics: EventMetrics,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EventLog {
    fn with(sink: Sink, dir: Option<PathBuf>, next_id: u64, metrics: EventMetrics) -> EventLog {
        let host = hostname();
        EventLog {
            enabled: AtomicBool::new(true),
            keep: true,
            sink,
            dir,
            next_id: AtomicU64::new(next_id),
            replica: RwLock::new(Arc::from(host.as_str())),
            host,
            metrics,
            writer: Mutex::new(None),
        }
    }

    /// A log in memory (no storage): the newest [`MEMORY_EVENTS`] events.
    pub fn memory(metrics: EventMetrics) -> EventLog {
        Self::with(Sink::Memory(Mutex::new(VecDeque::new())), None, 1, metrics)
    }

    /// Opens the log under `dir` (created), its ids going on from the last event written.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &Path, limits: Limits, mode: u32, metrics: EventMetrics) -> std::io::Result<EventLog> {
        let keep = limits.max_bytes > 0;
        let last = if keep {
            std::fs::create_dir_all(dir)?;
            segments(dir).last().and_then(|(_, p)| last_event(p)).map(|e| e.id)
        } else {
            None
        };
        let queue = Arc::new(Queue::default());
        let w = Writer {
            dir: dir.to_path_buf(),
            keep,
            limits,
            mode,
            metrics: metrics.clone(),
        };
        let q = queue.clone();
        let handle = std::thread::Builder::new()
            .name("tocsin-events".into())
            .spawn(move || w.run(&q))?;
        let mut log = Self::with(
            Sink::Disk(queue),
            keep.then(|| dir.to_path_buf()),
            last.map_or(1, |id| id + 1),
            metrics,
        );
        log.keep = keep;
        log.enabled = AtomicBool::new(keep);
        *log.writer.lock() = Some(handle);
        Ok(log)
    }

    /// Hands the writer the `event_recorder` outputs of a (re)loaded configuration; events are
    /// recorded while the history is kept or an output exports them. Without storage (tests)
    /// there is no writer and outputs are ignored.
    pub fn set_outputs(&self, outputs: crate::event_outputs::Outputs) {
        if let Sink::Disk(q) = &self.sink {
            self.enabled.store(self.keep || !outputs.is_empty(), Ordering::SeqCst);
            *q.outputs.lock() = Some(outputs);
        }
    }

    /// The shared name for `replica` (the host name when empty).
    fn replica(&self, replica: &str) -> Arc<str> {
        let name = if replica.is_empty() {
            self.host.as_str()
        } else {
            replica
        };
        let current = self.replica.read().clone();
        if &*current == name {
            return current;
        }
        let fresh: Arc<str> = Arc::from(name);
        *self.replica.write() = fresh.clone();
        fresh
    }

    fn push(&self, what: What, replica: &str, now: jiff::Timestamp) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        // Ids are taken under the queue's lock: the queue, and so the file, holds them in order.
        let replica = self.replica(replica);
        let pending = |id| Pending {
            id,
            time: now,
            replica,
            what,
        };
        match &self.sink {
            Sink::Memory(m) => {
                let mut m = m.lock();
                if m.len() >= MEMORY_EVENTS {
                    m.pop_front();
                }
                m.push_back(pending(self.next_id.fetch_add(1, Ordering::Relaxed)).into_event());
                self.metrics.recorded.inc();
            }
            Sink::Disk(q) => {
                let mut queue = q.pending.lock();
                if queue.len() >= QUEUE || q.closed.load(Ordering::Relaxed) {
                    drop(queue);
                    self.metrics.dropped.inc();
                } else {
                    queue.push(pending(self.next_id.fetch_add(1, Ordering::Relaxed)));
                    drop(queue);
                    self.metrics.recorded.inc();
                }
            }
        }
    }

    /// Records `e` as done by `replica` (the host name when empty) at `now`; never waits.
    pub fn record(&self, e: Event, replica: &str, now: jiff::Timestamp) {
        self.push(What::Event(Box::new(e)), replica, now);
    }

    /// Records the creation of a batch's new alerts (`resolved` with each): one lock, one id
    /// range and one count for the batch, and the events are built by the writer, off ingest's
    /// path.
    pub fn created(&self, alerts: Vec<(Arc<Alert>, bool)>, replica: &str, now: jiff::Timestamp) {
        self.push_all(
            alerts
                .into_iter()
                .map(|(alert, resolved)| What::Created { alert, resolved }),
            replica,
            now,
        );
    }

    /// Records the alerts of a batch that entered groups (`alert_grouped`), as [`Self::created`].
    pub fn grouped(&self, grouped: Vec<crate::dispatch::Grouped>, replica: &str, now: jiff::Timestamp) {
        self.push_all(grouped.into_iter().map(What::Grouped), replica, now);
    }

    /// Whether events are recorded now (callers skip collecting what would be discarded).
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn push_all(&self, whats: impl ExactSizeIterator<Item = What>, replica: &str, now: jiff::Timestamp) {
        if whats.len() == 0 || !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let Sink::Disk(q) = &self.sink else {
            for what in whats {
                self.push(what, replica, now);
            }
            return;
        };
        let n = whats.len() as u64;
        let replica = self.replica(replica);
        let mut pending = q.pending.lock();
        let first = self.next_id.fetch_add(n, Ordering::Relaxed);
        let room = QUEUE.saturating_sub(pending.len()).min(whats.len());
        let room = if q.closed.load(Ordering::Relaxed) { 0 } else { room };
        pending.extend(whats.take(room).zip(first..).map(|(what, id)| Pending {
            id,
            time: now,
            replica: replica.clone(),
            what,
        }));
        drop(pending);
        self.metrics.recorded.inc_by(room as u64);
        self.metrics.dropped.inc_by(n - room as u64);
    }

    /// The newest events selected by `q`, at most `limit`, newest first (blocking: run it off
    /// the runtime).
    pub fn query(&self, q: &Query, limit: usize) -> Vec<Event> {
        let mut out = Vec::new();
        match &self.sink {
            Sink::Memory(m) => {
                out.extend(m.lock().iter().rev().filter(|e| q.matches(e)).take(limit).cloned());
            }
            Sink::Disk(_) => {
                let Some(dir) = &self.dir else { return out };
                let since = q.since.and_then(|t| SystemTime::try_from(t).ok());
                for (first, path) in segments(dir).into_iter().rev() {
                    if q.before.is_some_and(|b| first >= b) {
                        continue;
                    }
                    // A segment last written before `since` holds nothing later, nor do older ones.
                    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                    let stale = matches!((since, modified), (Some(s), Some(m)) if m < s);
                    // Parsed from the end only as far as the page needs (a segment is up to an
                    // eighth of the log: parsing all of it made every page cost the whole segment).
                    let bytes = std::fs::read(&path).unwrap_or_default();
                    out.extend(events_rev(&bytes).filter(|e| q.matches(e)).take(limit - out.len()));
                    if out.len() >= limit || stale {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Events queued for the writer now.
    #[cfg(test)]
    fn queued(&self) -> usize {
        match &self.sink {
            Sink::Disk(q) => q.pending.lock().len(),
            Sink::Memory(_) => 0,
        }
    }

    /// Stops the writer after it wrote every event queued.
    pub fn close(&self) {
        if let Sink::Disk(q) = &self.sink {
            q.closed.store(true, Ordering::SeqCst);
        }
        if let Some(h) = self.writer.lock().take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// The host name, as Alertmanager's recorder names its instance.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The segments under `dir`, oldest first, by their first id.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| {
            let name = d.file_name().into_string().ok()?;
            let id = name.strip_prefix("events-")?.strip_suffix(".jsonl")?.parse().ok()?;
            Some((id, d.path()))
        })
        .collect();
    v.sort();
    v
}

/// The last whole event of a segment, read from its end (a start-up must not parse a segment
/// of hundreds of MiB to learn the next id).
fn last_event(path: &Path) -> Option<Event> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start)).ok()?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).ok()?;
        // The first line of the window may be cut: only lines after a newline count, unless
        // the window starts the file.
        let whole = match (start, buf.iter().position(|b| *b == b'\n')) {
            (0, _) => &buf[..],
            (_, Some(i)) => &buf[i + 1..],
            (_, None) => &[][..],
        };
        if let Some(e) = events_rev(whole).next() {
            return Some(e);
        }
        if start == 0 {
            return None;
        }
        window *= 4;
    }
}

/// The events of a segment's bytes, newest first, parsed as they are taken; lines that do not
/// parse (one cut short by a crash) are skipped.
fn events_rev(bytes: &[u8]) -> impl Iterator<Item = Event> + '_ {
    bytes
        .rsplit(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<Event>(l).ok())
}

/// Whether a file's last byte is a newline.
fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let mut last = [0u8; 1];
    std::fs::File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::End(-1))?;
            f.read_exact(&mut last)
        })
        .is_ok_and(|()| last[0] == b'\n')
}

struct Writer {
    dir: PathBuf,
    /// Segments are written (else only the outputs get the events).
    keep: bool,
    limits: Limits,
    mode: u32,
    metrics: EventMetrics,
}

/// The segment being written.
struct Open {
    file: std::io::BufWriter<std::fs::File>,
    bytes: u64,
}

impl Writer {
    fn segment_max(&self) -> u64 {
        (self.limits.max_bytes / 8).max(MIN_SEGMENT)
    }

    fn run(self, queue: &Queue) {
        // SCHED_IDLE for this thread alone: it runs only on a core nothing else wants, and any
        // other thread that wakes takes the core at once (nice 19 still cost a fifth of ingest
        // throughput once every new alert made two events). Where it is refused the writer runs
        // at normal priority.
        {
            use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
            if let Err(e) = thread_priority::set_thread_priority_and_policy(
                thread_priority::thread_native_id(),
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
            ) {
                tracing::debug!(err = ?e, "the event writer keeps its priority");
            }
        }
        let mut open: Option<Open> = None;
        let mut last_check = std::time::Instant::now();
        self.enforce(true);
        let mut line = Vec::with_capacity(512);
        let mut batch = Vec::new();
        let mut cache = LineCache::default();
        let mut outputs: Option<crate::event_outputs::Outputs> = None;
        loop {
            let closing = queue.closed.load(Ordering::SeqCst);
            if let Some(o) = queue.outputs.lock().take() {
                outputs = Some(o);
            }
            std::mem::swap(&mut batch, &mut *queue.pending.lock());
            for p in batch.drain(..) {
                let id = p.id;
                line.clear();
                p.write(&mut line, &mut cache);
                line.push(b'\n');
                if let Some(o) = outputs.as_mut() {
                    o.send(&line);
                }
                if !self.keep {
                    continue;
                }
                if open.is_none() {
                    open = self.open_segment(id);
                }
                let Some(o) = open.as_mut() else { continue };
                if o.file.write_all(&line).is_err() {
                    self.metrics.write_errors.inc();
                    open = None;
                    continue;
                }
                o.bytes += line.len() as u64;
                if o.bytes >= self.segment_max() {
                    if o.file.flush().is_err() {
                        self.metrics.write_errors.inc();
                    }
                    open = None;
                    self.enforce(last_check.elapsed() >= AGE_CHECK);
                    last_check = std::time::Instant::now();
                }
            }
            if let Some(o) = open.as_mut()
                && o.file.flush().is_err()
            {
                self.metrics.write_errors.inc();
                open = None;
            }
            if closing {
                break;
            }
            if last_check.elapsed() >= SIZE_CHECK {
                self.enforce(true);
                last_check = std::time::Instant::now();
            }
            std::thread::park_timeout(FLUSH_IDLE);
        }
        self.enforce(false);
    }

    /// Opens the newest segment for appending when it has room, else a new one from `id`.
    fn open_segment(&self, id: u64) -> Option<Open> {
        use std::os::unix::fs::OpenOptionsExt;
        let existing = segments(&self.dir).pop();
        let (path, bytes) = match existing {
            Some((_, p)) => match std::fs::metadata(&p) {
                Ok(m) if m.len() < self.segment_max() => (p, m.len()),
                _ => (self.dir.join(format!("events-{id:020}.jsonl")), 0),
            },
            None => (self.dir.join(format!("events-{id:020}.jsonl")), 0),
        };
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.mode)
            .open(&path)
        {
            Ok(f) => {
                let mut file = std::io::BufWriter::with_capacity(64 * 1024, f);
                // A line cut short by a crash is ended, so the next event starts a line.
                let torn = bytes > 0 && !ends_with_newline(&path);
                if torn && file.write_all(b"\n").is_err() {
                    self.metrics.write_errors.inc();
                    return None;
                }
                Some(Open {
                    file,
                    bytes: bytes + u64::from(torn),
                })
            }
            Err(e) => {
                self.metrics.write_errors.inc();
                warn!(path = %path.display(), err = %e, "cannot write the event log");
                None
            }
        }
    }

    /// Deletes the oldest segments while the log is over its size, and (when `age`) those last
    /// written before the retention; the newest segment stays. Updates the size gauge.
    fn enforce(&self, age: bool) {
        if !self.keep {
            return;
        }
        let segs = segments(&self.dir);
        let mut sized: Vec<(PathBuf, u64, Option<SystemTime>)> = segs
            .into_iter()
            .map(|(_, p)| {
                let m = std::fs::metadata(&p).ok();
                let len = m.as_ref().map_or(0, std::fs::Metadata::len);
                let modified = m.and_then(|m| m.modified().ok());
                (p, len, modified)
            })
            .collect();
        let mut total: u64 = sized.iter().map(|s| s.1).sum();
        let cutoff = SystemTime::now().checked_sub(self.limits.retention);
        while sized.len() > 1 {
            let (p, len, modified) = &sized[0];
            let old = age && matches!((cutoff, modified), (Some(c), Some(m)) if *m < c);
            if total <= self.limits.max_bytes && !old {
                break;
            }
            if std::fs::remove_file(p).is_err() {
                self.metrics.write_errors.inc();
                break;
            }
            total -= len;
            sized.remove(0);
        }
        self.metrics.bytes.set(i64::try_from(total).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_core::events::Kind;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn notification(group: &str) -> Event {
        let mut e = Event::new(Kind::Notification);
        e.group_key = group.into();
        e.receiver = "team".into();
        e
    }

    fn wait_until(log: &EventLog, n: usize) -> Vec<Event> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = log.query(&Query::default(), usize::MAX);
            if got.len() >= n || std::time::Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    proptest::proptest! {
        /// An alert's creation is written as serde writes its event.
        #[test]
        fn a_created_alert_is_written_as_serde_writes_it(
            labels in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,12}", 0..5),
            resolved: bool,
            secs in 0i64..4_000_000_000,
            nanos in 0i32..1_000_000_000,
            replica in "\\PC{0,10}",
        ) {
            let labels: tocsin_core::labels::LabelSet = labels.into_iter().collect();
            let alert = Arc::new(Alert {
                fingerprint: tocsin_core::labels::fingerprint(&labels),
                labels,
                ..Alert::default()
            });
            let pending = || Pending {
                id: 42,
                time: jiff::Timestamp::new(secs, nanos).unwrap(),
                replica: Arc::from(replica.as_str()),
                what: What::Created { alert: alert.clone(), resolved },
            };
            let mut fast = Vec::new();
            pending().write(&mut fast, &mut LineCache::default());
            let slow = serde_json::to_vec(&pending().into_event()).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
        }
    }

    proptest::proptest! {
        /// An alert entering a group is written as serde writes its event.
        #[test]
        fn a_grouped_alert_is_written_as_serde_writes_it(
            labels in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,12}", 0..4),
            key in "\\PC{0,20}",
            receiver in "\\PC{0,10}",
            resolved: bool,
            fp: u64,
        ) {
            let group = Arc::new(crate::dispatch::GroupInfo {
                key,
                labels: labels.into_iter().collect(),
                receiver,
            });
            let pending = || Pending {
                id: 7,
                time: at(3),
                replica: Arc::from("n0"),
                what: What::Grouped((group.clone(), tocsin_core::labels::Fingerprint(fp), resolved)),
            };
            let mut fast = Vec::new();
            pending().write(&mut fast, &mut LineCache::default());
            let slow = serde_json::to_vec(&pending().into_event()).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
        }
    }

    proptest::proptest! {
        /// Every event is written as serde writes it.
        #[test]
        fn an_event_is_written_as_serde_writes_it(
            kind in proptest::sample::select(Kind::ALL.to_vec()),
            texts in proptest::collection::vec("\\PC{0,8}", 6),
            labels in proptest::collection::btree_map("[a-z_]{1,8}", "\\PC{0,12}", 0..4),
            alerts in proptest::collection::vec((proptest::num::u64::ANY, proptest::bool::ANY), 0..3),
            position in proptest::option::of(0u32..10),
        ) {
            let mut e = Event::new(kind);
            e.group_key.clone_from(&texts[0]);
            e.receiver.clone_from(&texts[1]);
            e.integration.clone_from(&texts[2]);
            e.reason.clone_from(&texts[3]);
            e.silence_id.clone_from(&texts[4]);
            e.peer.clone_from(&texts[5]);
            e.labels = labels.into_iter().collect();
            e.alerts = alerts
                .into_iter()
                .map(|(f, r)| EventAlert { fingerprint: tocsin_core::labels::Fingerprint(f), status: Status::of(r) })
                .collect();
            e.position = position;
            let pending = || Pending {
                id: 7,
                time: jiff::Timestamp::new(1_800_000_000, 5).unwrap(),
                replica: Arc::from("n0"),
                what: What::Event(Box::new(e.clone())),
            };
            let mut fast = Vec::new();
            pending().write(&mut fast, &mut LineCache::default());
            let slow = serde_json::to_vec(&pending().into_event()).unwrap();
            proptest::prop_assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(slow).unwrap());
        }
    }

    #[test]
    fn events_are_read_newest_first_by_page_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), Limits::default(), 0o600, EventMetrics::default()).unwrap();
        for i in 0..10 {
            log.record(notification(&format!("g{}", i % 2)), "n0", at(i));
        }
        log.close();
        let log = EventLog::open(dir.path(), Limits::default(), 0o600, EventMetrics::default()).unwrap();
        log.record(notification("g0"), "", at(10));
        let all = wait_until(&log, 11);
        assert_eq!(
            all.iter().map(|e| e.id).collect::<Vec<_>>(),
            (1..=11).rev().collect::<Vec<_>>()
        );
        assert_eq!(all[0].replica, hostname(), "the host name when alone");
        assert_eq!(all[1].replica, "n0");
        let q = |group: &str, before: Option<u64>| Query {
            group_key: Some(group.into()),
            before,
            ..Query::default()
        };
        let page: Vec<u64> = log.query(&q("g0", None), 3).iter().map(|e| e.id).collect();
        assert_eq!(page, vec![11, 9, 7]);
        let next: Vec<u64> = log.query(&q("g0", Some(7)), 3).iter().map(|e| e.id).collect();
        assert_eq!(next, vec![5, 3, 1]);
        let since = Query {
            since: Some(at(8)),
            ..Query::default()
        };
        assert_eq!(log.query(&since, 100).len(), 3);
        log.close();
    }

    #[test]
    fn a_million_events_stay_within_the_size_limit_and_every_one_is_accounted_for() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 16 * 1024 * 1024,
            ..Limits::default()
        };
        let metrics = EventMetrics::default();
        let log = EventLog::open(dir.path(), limits, 0o600, metrics.clone()).unwrap();
        let alert = |i: u64| {
            let labels: tocsin_core::labels::LabelSet = [
                ("alertname".to_string(), "Down".to_string()),
                ("instance".to_string(), format!("host-{i}:9100")),
            ]
            .into();
            Arc::new(Alert {
                fingerprint: tocsin_core::labels::fingerprint(&labels),
                labels,
                ..Alert::default()
            })
        };
        let mut max_seen = 0;
        for batch in 0..1000u64 {
            let alerts = (0..1000).map(|i| (alert(batch * 1000 + i), false)).collect();
            log.created(alerts, "n0", at(batch as i64));
            // As ingest would, give the writer its turn now and then (bursts past the queue
            // are dropped and counted, which the last assertion accounts for).
            if batch % 50 == 0 {
                while log.queued() > 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                let total: u64 = segments(dir.path())
                    .iter()
                    .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
                    .sum();
                max_seen = max_seen.max(total);
            }
        }
        log.close();
        let total: u64 = segments(dir.path())
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        let segment = limits.max_bytes / 8;
        assert!(max_seen <= limits.max_bytes + segment, "{max_seen} bytes seen on disk");
        assert!(total <= limits.max_bytes + segment, "{total} bytes on disk");
        assert_eq!(metrics.recorded.get() + metrics.dropped.get(), 1_000_000);
        assert!(metrics.recorded.get() > 900_000, "{} recorded", metrics.recorded.get());
        // The newest event is the last one recorded, readable after the old ones were deleted.
        let newest = log.query(&Query::default(), 1);
        assert_eq!(newest[0].labels.get("instance"), Some("host-999999:9100"));
    }

    #[test]
    fn the_log_stays_within_its_size_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 8 * MIN_SEGMENT,
            ..Limits::default()
        };
        let metrics = EventMetrics::default();
        let log = EventLog::open(dir.path(), limits, 0o600, metrics.clone()).unwrap();
        let mut recorded = 0;
        for i in 0..20_000 {
            log.record(notification(&format!("group-{i}")), "n0", at(i));
            recorded += 1;
            if i % 1000 == 0 {
                // Let the writer keep up: this test is about the size, not the queue.
                while log.query(&Query::default(), 1).first().map(|e| e.id) != Some(recorded) {
                    std::thread::yield_now();
                }
            }
        }
        log.close();
        let total: u64 = segments(dir.path())
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(total <= limits.max_bytes + MIN_SEGMENT, "{total} bytes on disk");
        assert!(segments(dir.path()).len() > 1);
        assert_eq!(metrics.bytes.get() as u64, total);
        // A crash mid-line: the line is skipped, the ids go on after the last whole event.
        let (_, newest) = segments(dir.path()).pop().unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&newest).unwrap();
        f.write_all(br#"{"id":99999999,"time":"20"#).unwrap();
        drop(f);
        let log = EventLog::open(dir.path(), limits, 0o600, EventMetrics::default()).unwrap();
        let newest = log.query(&Query::default(), 1);
        assert_eq!(newest[0].id, 20_000);
        log.record(notification("after"), "n0", at(0));
        log.close();
        let log = EventLog::open(dir.path(), limits, 0o600, EventMetrics::default()).unwrap();
        let newest = log.query(&Query::default(), 2);
        assert_eq!((newest[0].id, newest[0].group_key.as_str()), (20_001, "after"));
        assert_eq!(newest[1].id, 20_000);
    }
}
