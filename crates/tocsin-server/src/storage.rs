//! State on disk (§4.7): `<storage.path>/silences` and `<storage.path>/nflog` in Alertmanager's
//! format, written atomically every maintenance interval and at shutdown, loaded at start.
//!
//! A silence changed through the API is also appended to `<storage.path>/silences.journal`
//! (the snapshot's own record format) and fsync'd before the API answers, so an acknowledged
//! silence survives a crash; the snapshot that follows empties the journal. Silences learned
//! from peers are not journaled: the peers hold them. Each send this replica logs is appended
//! to `<storage.path>/nflog.journal` as it is logged (a process crash loses none) and fsync'd
//! within `--data.journal-sync-interval` (1 s; a power loss loses at most that); its snapshot
//! empties it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tocsin_core::snapshot::{Decoded, decode_nflog, decode_silences, encode_nflog, encode_silences};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::app::App;

/// File name of the silences snapshot.
pub const SILENCES: &str = "silences";
/// File name of the silence journal: records appended since the last silences snapshot.
pub const SILENCE_JOURNAL: &str = "silences.journal";
/// File name of the notification log journal: this replica's sends since the last snapshot.
pub const NFLOG_JOURNAL: &str = "nflog.journal";
/// How long a send's log entry may wait for its fsync by default (`--data.journal-sync-interval`):
/// a machine that loses power loses at most this much of the log (a crash of the process alone
/// loses nothing written).
pub const NFLOG_SYNC: std::time::Duration = std::time::Duration::from_secs(1);
/// File name of the notification log snapshot.
pub const NFLOG: &str = "nflog";

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename, fsync
/// of the directory.
///
/// # Errors
/// Any I/O error, with the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_atomic`] with the file's mode (`0o600`, or `0o640` with `--storage.group-readable`).
///
/// # Errors
/// The write, sync or rename failed; the previous file is untouched.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("snapshot");
    // Unique per write: two replicas sharing a volume may both be PID 1 in their containers.
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // Silences and the log are nobody else's business: owner-only, as the file is created.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Reads and decodes one snapshot. A missing file is an empty state. A damaged one is reported
/// with its path and what was recovered, and moved aside (`<file>.corrupt-<unix seconds>`) so that
/// the next snapshot does not overwrite the records that could not be read.
fn read<T>(path: &Path, decode: impl Fn(&[u8]) -> Decoded<T>, now_unix: i64) -> Vec<T> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            error!(path = %path.display(), err = %e, "unable to read snapshot; starting without it");
            return Vec::new();
        }
    };
    let decoded = decode(&bytes);
    if !decoded.errors.is_empty() {
        let aside = PathBuf::from(format!("{}.corrupt-{now_unix}", path.display()));
        let moved = std::fs::copy(path, &aside).is_ok();
        error!(
            path = %path.display(),
            recovered = decoded.records.len(),
            problems = %decoded.errors.join("; "),
            kept_copy = %if moved { aside.display().to_string() } else { "none (copy failed)".into() },
            "snapshot is damaged; loaded the records before the damage"
        );
    }
    decoded.records
}

/// Temp files older than this are left by a crash (a write takes milliseconds) and removed at
/// start; younger ones may be another replica's write on a shared volume.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes the temp files of snapshot writes that a crash left behind; returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = [SILENCES, NFLOG, ".write-check"]
            .iter()
            .any(|s| name.starts_with(&format!(".{s}.")))
            && name.ends_with(".tmp");
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMP);
        if ours && old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(removed, dir = %dir.display(), "removed temp files left by an interrupted snapshot write");
    }
    removed
}

/// Loads both snapshots into the replica.
pub fn load(app: &App, dir: &Path) {
    remove_stale_temps(dir);
    let now = app.clock.now();
    let mut silences = read(&dir.join(SILENCES), decode_silences, now.as_second());
    // Later records replace earlier ones with the same id: the journal's are the newest.
    let journaled = read(&dir.join(SILENCE_JOURNAL), decode_silences, now.as_second());
    if !journaled.is_empty() {
        info!(records = journaled.len(), "replayed the silence journal");
    }
    silences.extend(journaled);
    let mut entries = read(&dir.join(NFLOG), decode_nflog, now.as_second());
    let sent = read(&dir.join(NFLOG_JOURNAL), decode_nflog, now.as_second());
    if !sent.is_empty() {
        info!(entries = sent.len(), "replayed the notification log journal");
    }
    entries.extend(sent);
    info!(
        silences = silences.len(),
        nflog_entries = entries.len(),
        "loaded state from disk"
    );
    app.state.restore(silences, entries);
}

/// Garbage-collects and writes both snapshots.
///
/// # Errors
/// The first write error.
pub fn snapshot(app: &App, dir: &Path) -> Result<(usize, usize), String> {
    Ok((write_silences(app, dir)?, write_nflog(app, dir)?))
}

/// The silence journal: appends under a lock, and one fsync at a time that covers every append
/// made before it started (group commit: concurrent API changes share a sync instead of
/// queueing for one each).
#[derive(Default)]
pub struct Journal {
    state: parking_lot::Mutex<JournalState>,
    synced: parking_lot::Condvar,
}

#[derive(Default)]
struct JournalState {
    /// The open file (for appends) and a second handle to it (for syncs outside the lock).
    file: Option<(std::fs::File, Arc<std::fs::File>)>,
    /// Appends made, and appends known to be on disk.
    written: u64,
    on_disk: u64,
    /// A sync is under way (by another caller).
    syncing: bool,
}

impl JournalState {
    /// Appends `bytes` to the journal at `path` (opened on first use); counts the append.
    fn append(&mut self, path: &Path, mode: u32, bytes: &[u8]) -> Result<(), String> {
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(mode)
                .open(path)
                .and_then(|f| Ok((f.try_clone()?, f)))
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            self.file = Some((f.0, Arc::new(f.1)));
        }
        let Some((f, _)) = self.file.as_mut() else {
            return Ok(());
        };
        if let Err(e) = f.write_all(bytes) {
            self.file = None;
            return Err(format!("write {}: {e}", path.display()));
        }
        self.written += 1;
        Ok(())
    }
}

/// GCs the silences and writes their snapshot; returns its size. The journal's lock is held
/// from the read to the journal's emptying, so no API change falls between the two.
fn write_silences(app: &App, dir: &Path) -> Result<usize, String> {
    let mut journal = app.silence_journal.state.lock();
    let bytes = app.state.gc_silences(|s| encode_silences(s.iter()));
    write_atomic_mode(&dir.join(SILENCES), &bytes, app.settings.snapshot_mode)?;
    // What was appended is in the snapshot just written: on disk.
    journal.file = None;
    journal.on_disk = journal.written;
    app.silence_journal.synced.notify_all();
    match std::fs::remove_file(dir.join(SILENCE_JOURNAL)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("empty the silence journal: {e}")),
    }
    Ok(bytes.len())
}

/// Appends the silences `ids` as they now stand to the journal and returns once they are on
/// disk (blocking: run it off the runtime). Nothing to do without storage.
///
/// # Errors
/// The journal cannot be opened, written or synced.
pub fn journal_silences(app: &App, ids: &[&str]) -> Result<(), String> {
    let Some(dir) = &app.settings.storage_path else {
        return Ok(());
    };
    let journal = &app.silence_journal;
    let mut st = journal.state.lock();
    let bytes = {
        let store = app.state.silences();
        encode_silences(ids.iter().filter_map(|id| store.get_mesh(id)))
    };
    if bytes.is_empty() {
        return Ok(());
    }
    st.append(&dir.join(SILENCE_JOURNAL), app.settings.snapshot_mode, &bytes)?;
    let mine = st.written;
    loop {
        if st.on_disk >= mine {
            return Ok(());
        }
        if st.syncing {
            journal.synced.wait(&mut st);
            continue;
        }
        // This caller syncs for every append made so far.
        let Some((_, sync)) = st.file.as_ref().map(|(a, b)| (a, b.clone())) else {
            return Err("the silence journal was closed before it was synced".into());
        };
        let upto = st.written;
        st.syncing = true;
        drop(st);
        let synced = sync.sync_data();
        st = journal.state.lock();
        st.syncing = false;
        journal.synced.notify_all();
        match synced {
            Ok(()) => st.on_disk = st.on_disk.max(upto),
            Err(e) => {
                st.file = None;
                return Err(format!("sync the silence journal: {e}"));
            }
        }
    }
}

/// GCs the notification log and writes its snapshot; returns its size. As with the silences,
/// the journal is emptied under its lock once the snapshot holds what it held.
fn write_nflog(app: &App, dir: &Path) -> Result<usize, String> {
    let mut journal = app.nflog_journal.state.lock();
    let bytes = app.state.gc_nflog(|l| encode_nflog(l.entries()));
    write_atomic_mode(&dir.join(NFLOG), &bytes, app.settings.snapshot_mode)?;
    journal.file = None;
    journal.on_disk = journal.written;
    match std::fs::remove_file(dir.join(NFLOG_JOURNAL)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("empty the notification log journal: {e}")),
    }
    Ok(bytes.len())
}

/// Appends a log entry this replica made to the nflog journal, without waiting for the disk
/// ([`sync_nflog`] syncs it). Nothing to do without storage.
///
/// # Errors
/// The journal cannot be opened or written.
pub fn journal_nflog(app: &App, e: &tocsin_core::nflog::Entry) -> Result<(), String> {
    let Some(dir) = &app.settings.storage_path else {
        return Ok(());
    };
    let mut st = app.nflog_journal.state.lock();
    st.append(
        &dir.join(NFLOG_JOURNAL),
        app.settings.snapshot_mode,
        &encode_nflog(std::iter::once(e)),
    )
}

/// Syncs the nflog journal if anything was appended since the last sync (blocking).
pub fn sync_nflog(app: &App) {
    let (sync, upto) = {
        let st = app.nflog_journal.state.lock();
        match &st.file {
            Some((_, sync)) if st.on_disk < st.written => (sync.clone(), st.written),
            _ => return,
        }
    };
    match sync.sync_data() {
        Ok(()) => {
            let mut st = app.nflog_journal.state.lock();
            st.on_disk = st.on_disk.max(upto);
        }
        Err(e) => warn!(err = %e, "the notification log journal could not be synced"),
    }
}

/// One maintenance run: GC and a snapshot of each state, counted per state in the metrics
/// (each state's own outcome, not guessed from an error message). Returns the sizes written, or
/// the first error.
fn maintain(app: &App, dir: &Path) -> Result<(usize, usize), String> {
    use crate::metrics::{NFLOG as N, SILENCES as S};
    let m = &app.metrics;
    let run = |i: usize, write: fn(&App, &Path) -> Result<usize, String>| {
        m.maintenance[i].inc();
        let r = write(app, dir);
        match &r {
            Ok(n) => {
                m.snapshot_size[i].set(*n as i64);
            }
            Err(_) => {
                m.maintenance_errors[i].inc();
            }
        }
        r
    };
    // Silences first, as `snapshot` does; a failure stops the run.
    let s = run(S, write_silences)?;
    Ok((s, run(N, write_nflog)?))
}

/// How long shutdown waits for notifications under way before the final snapshot.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs maintenance every interval until shutdown; then lets running notifications finish
/// (bounded by [`DRAIN_TIMEOUT`]) and writes the final snapshots, so what they sent is logged.
pub async fn run_maintenance(app: Arc<App>, dir: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let interval = app.settings.maintenance_interval;
    loop {
        let due = tokio::time::Instant::now() + interval;
        // Meanwhile the nflog journal is synced every --data.journal-sync-interval.
        let every = app.settings.journal_sync_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(due.min(tokio::time::Instant::now() + every)) => {}
                _ = shutdown.wait_for(|v| *v) => break,
            }
            if *shutdown.borrow() || tokio::time::Instant::now() >= due {
                break;
            }
            let a = app.clone();
            let _ = tokio::task::spawn_blocking(move || sync_nflog(&a)).await;
        }
        if *shutdown.borrow() {
            break;
        }
        let (a, d) = (app.clone(), dir.clone());
        match tokio::task::spawn_blocking(move || maintain(&a, &d)).await {
            Ok(Ok((s, n))) => info!(silences_bytes = s, nflog_bytes = n, "maintenance done"),
            Ok(Err(e)) => warn!(err = %e, "maintenance failed"),
            Err(e) => warn!(err = %e, "maintenance task failed"),
        }
    }
    let left = app.drain(DRAIN_TIMEOUT).await;
    if left > 0 {
        warn!(flushes = left, "shutting down with notifications still in flight");
    }
    match maintain(&app, &dir) {
        Ok(_) => info!("final snapshots written"),
        Err(e) => error!(err = %e, "final snapshot failed"),
    }
}

#[cfg(test)]
mod temp_tests {
    use super::*;

    #[test]
    fn snapshots_are_owner_only_and_stale_temps_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SILENCES);
        write_atomic(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // --storage.group-readable (under the usual umask 022).
        write_atomic_mode(&path, b"y", 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        write_atomic(&path, b"x").unwrap();
        // A crash's leftover (old), a write under way (new), and a file that is not ours.
        let old = dir.path().join(".nflog.1.tmp");
        let fresh = dir.path().join(".nflog.2.tmp");
        let other = dir.path().join(".keep.tmp");
        for f in [&old, &fresh, &other] {
            std::fs::write(f, b"").unwrap();
        }
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        std::fs::File::options()
            .write(true)
            .open(&other)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        assert_eq!(remove_stale_temps(dir.path()), 1);
        assert!(!old.exists() && fresh.exists() && other.exists());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{NotifierFactory, Settings};
    use crate::clock::Clock;
    use tocsin_core::config::{LoadOptions, load as load_config};
    use tocsin_core::silence::Silence;

    fn app() -> Arc<App> {
        let cfg = load_config(
            "route:\n  receiver: r\nreceivers:\n- name: r\n",
            Path::new("."),
            &LoadOptions::default(),
        )
        .unwrap();
        let factory: NotifierFactory = Arc::new(|_, _| Ok(vec![]));
        App::new(
            Settings::new("x.yml"),
            cfg,
            factory,
            Clock::new("2026-11-23T10:00:00Z".parse().unwrap()),
        )
        .unwrap()
    }

    fn add_silence(a: &App, name: &str) {
        let now = a.clock.now();
        let s = Silence {
            matcher_sets: vec![
                tocsin_core::matchers::parse_matchers(&format!("alertname={name}"), Default::default()).unwrap(),
            ],
            starts_at: now,
            ends_at: now.checked_add(jiff::SignedDuration::from_hours(1)).unwrap(),
            ..Silence::default()
        };
        a.state.set_silence(s, || format!("id-{name}")).unwrap();
    }

    #[tokio::test]
    async fn snapshots_round_trip_and_damage_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let a = app();
        add_silence(&a, "one");
        add_silence(&a, "two");
        snapshot(&a, dir.path()).unwrap();
        let b = app();
        load(&b, dir.path());
        assert_eq!(b.state.silences().len(), 2);
        // Damage the tail: the first record survives, the file is copied aside, nothing panics.
        let path = dir.path().join(SILENCES);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes.truncate(n - 3);
        std::fs::write(&path, &bytes).unwrap();
        let c = app();
        load(&c, dir.path());
        assert_eq!(c.state.silences().len(), 1);
        let kept: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("silences.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1);
        assert_eq!(std::fs::read(dir.path().join(&kept[0])).unwrap(), bytes);
    }

    #[tokio::test]
    async fn maintenance_is_counted_and_failures_name_their_state() {
        use crate::metrics::{NFLOG as N, SILENCES as S};
        let dir = tempfile::tempdir().unwrap();
        let a = app();
        add_silence(&a, "one");
        let (s, _) = maintain(&a, dir.path()).unwrap();
        assert!(s > 0);
        let m = &a.metrics;
        assert_eq!((m.maintenance[S].get(), m.maintenance[N].get()), (1, 1));
        assert_eq!(m.snapshot_size[S].get(), s as i64);
        // An unwritable directory: the silences snapshot, written first, fails.
        let gone = dir.path().join("missing/dir");
        assert!(maintain(&a, &gone).is_err());
        assert_eq!((m.maintenance_errors[S].get(), m.maintenance_errors[N].get()), (1, 0));
    }
}
