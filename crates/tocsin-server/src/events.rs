//! The replica's event history: a bounded on-disk log of [`Event`]s, written by one thread so
//! that recording never waits on the disk, and read newest first by queries.
//!
//! Layout: `<storage.path>/events/events-<first id, 20 digits>.jsonl`, one JSON object per line.
//! A segment is closed at an eighth of `--events.max-size-bytes`; the oldest segments are deleted
//! while the total is over that size, and once their last write is older than
//! `--events.retention`. A line cut short by a crash is skipped when read.
//!
//! Recording is `try_send` into a queue of [`QUEUE`] events: when the writer falls behind,
//! events are dropped and counted (`tocsin_events_dropped_total`), never waited for.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tocsin_core::events::{Event, Query};
use tracing::warn;

/// Events waiting for the writer at most.
pub const QUEUE: usize = 65_536;
/// Events kept when there is no storage (tests, simulations).
const MEMORY_EVENTS: usize = 100_000;
/// Smallest segment, whatever the size limit.
const MIN_SEGMENT: u64 = 64 * 1024;
/// How often the writer deletes segments past the retention.
const AGE_CHECK: Duration = Duration::from_secs(10);

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

enum Sink {
    /// Recording is off (`--events.max-size-bytes=0`).
    Off,
    /// The writer thread's queue (`None` once closed).
    Disk(RwLock<Option<SyncSender<Box<Event>>>>),
    /// No storage: the newest events in memory.
    Memory(Mutex<VecDeque<Event>>),
}

/// The event history of one replica.
pub struct EventLog {
    sink: Sink,
    dir: Option<PathBuf>,
    next_id: AtomicU64,
    host: String,
    metrics: EventMetrics,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EventLog {
    /// A log in memory (no storage): the newest [`MEMORY_EVENTS`] events.
    pub fn memory(metrics: EventMetrics) -> EventLog {
        EventLog {
            sink: Sink::Memory(Mutex::new(VecDeque::new())),
            dir: None,
            next_id: AtomicU64::new(1),
            host: hostname(),
            metrics,
            writer: Mutex::new(None),
        }
    }

    /// Opens the log under `dir` (created), its ids going on from the last event written.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &Path, limits: Limits, mode: u32, metrics: EventMetrics) -> std::io::Result<EventLog> {
        if limits.max_bytes == 0 {
            return Ok(EventLog {
                sink: Sink::Off,
                dir: None,
                next_id: AtomicU64::new(1),
                host: hostname(),
                metrics,
                writer: Mutex::new(None),
            });
        }
        std::fs::create_dir_all(dir)?;
        let last = segments(dir)
            .last()
            .and_then(|(_, p)| read_lines_rev(p).into_iter().next().map(|e| e.id));
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let w = Writer {
            dir: dir.to_path_buf(),
            limits,
            mode,
            metrics: metrics.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("tocsin-events".into())
            .spawn(move || w.run(rx))?;
        Ok(EventLog {
            sink: Sink::Disk(RwLock::new(Some(tx))),
            dir: Some(dir.to_path_buf()),
            next_id: AtomicU64::new(last.map_or(1, |id| id + 1)),
            host: hostname(),
            metrics,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Records `e` as done by `replica` (the host name when empty) at `now`; never waits.
    pub fn record(&self, mut e: Event, replica: &str, now: jiff::Timestamp) {
        if matches!(self.sink, Sink::Off) {
            return;
        }
        e.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        e.time = now;
        e.replica = if replica.is_empty() {
            self.host.clone()
        } else {
            replica.to_string()
        };
        match &self.sink {
            Sink::Off => {}
            Sink::Memory(m) => {
                let mut m = m.lock();
                if m.len() >= MEMORY_EVENTS {
                    m.pop_front();
                }
                m.push_back(e);
                self.metrics.recorded.inc();
            }
            Sink::Disk(tx) => {
                let sent = match tx.read().as_ref() {
                    Some(tx) => !matches!(
                        tx.try_send(Box::new(e)),
                        Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
                    ),
                    None => false,
                };
                if sent {
                    self.metrics.recorded.inc();
                } else {
                    self.metrics.dropped.inc();
                }
            }
        }
    }

    /// The newest events selected by `q`, at most `limit`, newest first (blocking: run it off
    /// the runtime).
    pub fn query(&self, q: &Query, limit: usize) -> Vec<Event> {
        let mut out = Vec::new();
        match &self.sink {
            Sink::Off => {}
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
                    out.extend(
                        read_lines_rev(&path)
                            .into_iter()
                            .filter(|e| q.matches(e))
                            .take(limit - out.len()),
                    );
                    if out.len() >= limit || stale {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Stops the writer after it wrote every event queued (bounded by the queue's size).
    pub fn close(&self) {
        if let Sink::Disk(tx) = &self.sink {
            tx.write().take();
        }
        if let Some(h) = self.writer.lock().take() {
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

/// A segment's events, newest first; lines that do not parse (one cut short by a crash) are
/// skipped.
fn read_lines_rev(path: &Path) -> Vec<Event> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut v: Vec<Event> = std::io::BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_slice(&l).ok())
        .collect();
    v.reverse();
    v
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

    fn run(self, rx: Receiver<Box<Event>>) {
        let mut open: Option<Open> = None;
        let mut last_age_check = std::time::Instant::now();
        self.enforce(true);
        while let Ok(first) = rx.recv() {
            let mut line = Vec::with_capacity(512);
            for e in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok()).take(4096)) {
                line.clear();
                if serde_json::to_writer(&mut line, &e).is_err() {
                    self.metrics.write_errors.inc();
                    continue;
                }
                line.push(b'\n');
                if open.is_none() {
                    open = self.open_segment(e.id);
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
                    self.enforce(false);
                }
            }
            if let Some(o) = open.as_mut()
                && o.file.flush().is_err()
            {
                self.metrics.write_errors.inc();
                open = None;
            }
            let age = last_age_check.elapsed() >= AGE_CHECK;
            if age {
                last_age_check = std::time::Instant::now();
            }
            self.enforce(age);
        }
        if let Some(mut o) = open {
            let _ = o.file.flush();
        }
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
