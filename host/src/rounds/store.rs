//! Round records on disk: `data/rounds/rounds-<unix ms>-<pid>.jsonl`, one JSON line per round.
//!
//! * Written by a thread of its own, fed through a bounded channel: a round hands its record
//!   over and moves on. Should the disk fall so far behind that the channel fills, records are
//!   dropped and counted, never waited for: a slow disk must not slow a round.
//! * Each process writes its own segment files (a daemon and a `pinwarden pin` on one data
//!   directory never share a file), one `write` per line. A kill -9 loses at most the records
//!   still in the channel, and at worst leaves a torn last line, which readers skip and count.
//! * Bounded: a segment is closed at `segment_mb`; when one is opened, segments older than
//!   `max_age_days` are deleted, then the least recently written ones while all of them
//!   together exceed `max_mb`.

use super::RoundRecord;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

/// The records' directory in a data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("rounds")
}

/// `[rounds]`: whether rounds are recorded, and how much of them is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoundsConfig {
    /// Record every round the daemon and the CLI run.
    pub enabled: bool,
    /// All segments together, at most (MiB).
    pub max_mb: u64,
    /// Segments last written longer ago than this are deleted.
    pub max_age_days: u64,
    /// A segment is closed at this size (MiB); the bound is kept one segment at a time.
    pub segment_mb: u64,
}

impl Default for RoundsConfig {
    fn default() -> Self {
        RoundsConfig {
            enabled: true,
            max_mb: 256,
            max_age_days: 30,
            segment_mb: 8,
        }
    }
}

impl RoundsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_mb == 0 || self.max_mb < self.segment_mb {
            return Err(
                "rounds.segment_mb: must be at least 1 and not exceed rounds.max_mb".into(),
            );
        }
        if self.max_age_days == 0 {
            return Err("rounds.max_age_days: must be at least 1".into());
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            segment_bytes: self.segment_mb.saturating_mul(1 << 20),
            max_bytes: self.max_mb.saturating_mul(1 << 20),
            max_age: Duration::from_secs(self.max_age_days.saturating_mul(86_400)),
        }
    }
}

/// The bounds in bytes and time (tests use small ones).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
}

/// Records waiting for the writer, at most: a burst of rounds fits, a stuck disk does not
/// hold them all in memory.
const BACKLOG: usize = 4096;

/// Hands records to the writer thread.
pub struct Recorder {
    sender: Mutex<Option<SyncSender<RoundRecord>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dropped: AtomicU64,
    written: std::sync::Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder that keeps nothing (`rounds.enabled = false`).
    pub fn off() -> Recorder {
        Recorder {
            sender: Mutex::new(None),
            writer: Mutex::new(None),
            dropped: AtomicU64::new(0),
            written: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }

    /// Records into `data_dir/rounds`, as `config` bounds them.
    pub fn open(data_dir: &Path, config: &RoundsConfig) -> Recorder {
        if !config.enabled {
            return Recorder::off();
        }
        Recorder::with_limits(&dir(data_dir), config.limits())
    }

    pub fn with_limits(dir: &Path, limits: Limits) -> Recorder {
        let (sender, receiver) = sync_channel(BACKLOG);
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            limits,
            current: None,
            written: std::sync::Arc::clone(&written),
        };
        let spawned = std::thread::Builder::new()
            .name("pinwarden-rounds".into())
            .spawn(move || writer.run(receiver));
        match spawned {
            Ok(handle) => Recorder {
                sender: Mutex::new(Some(sender)),
                writer: Mutex::new(Some(handle)),
                dropped: AtomicU64::new(0),
                written,
            },
            Err(e) => {
                tracing::error!("round records: cannot start the writer ({e}); none are kept");
                Recorder::off()
            }
        }
    }

    /// Hands `record` to the writer without waiting; a full backlog drops it (counted).
    pub fn record(&self, record: RoundRecord) {
        let Ok(guard) = self.sender.lock() else {
            return;
        };
        let Some(sender) = guard.as_ref() else {
            return;
        };
        match sender.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        "round records: the disk is behind; {n} records dropped so far (rounds are not slowed)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped because the writer was behind (or gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Writes what is waiting and stops the writer (at exit; later records are dropped).
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.close();
    }
}

/// The open segment: its file, path and size so far.
struct Segment {
    file: File,
    path: PathBuf,
    bytes: u64,
}

struct Writer {
    dir: PathBuf,
    limits: Limits,
    current: Option<Segment>,
    written: std::sync::Arc<AtomicU64>,
}

impl Writer {
    fn run(&mut self, receiver: Receiver<RoundRecord>) {
        let mut failing = false;
        while let Ok(record) = receiver.recv() {
            let mut line = match serde_json::to_vec(&record) {
                Ok(line) => line,
                Err(e) => {
                    tracing::error!("round records: cannot encode a record: {e}");
                    continue;
                }
            };
            line.push(b'\n');
            match self.append(&line) {
                Ok(()) => {
                    if failing {
                        tracing::info!("round records: writing again");
                    }
                    failing = false;
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // A full disk, say: the record is lost, the rounds go on.
                    if !failing {
                        tracing::error!(
                            "round records: cannot write to {}: {e}; rounds go on unrecorded",
                            self.dir.display()
                        );
                    }
                    failing = true;
                    self.current = None;
                }
            }
        }
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        let full = self
            .current
            .as_ref()
            .is_none_or(|s| s.bytes > 0 && s.bytes + len > self.limits.segment_bytes);
        if full {
            self.current = Some(self.open_segment()?);
        }
        let Some(segment) = self.current.as_mut() else {
            return Err(io::Error::other("no segment"));
        };
        // One write per line: a kill -9 leaves whole lines, or one torn last line.
        segment.file.write_all(line)?;
        segment.bytes += len;
        Ok(())
    }

    fn open_segment(&mut self) -> io::Result<Segment> {
        fs::create_dir_all(&self.dir)?;
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let mut n = 0;
        loop {
            let path = self
                .dir
                .join(format!("rounds-{ms:013}-{}-{n}.jsonl", std::process::id()));
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    prune(&self.dir, self.limits, Some(&path));
                    return Ok(Segment {
                        file,
                        path,
                        bytes: 0,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(s) = &self.current {
            tracing::debug!(segment = %s.path.display(), "round records closed");
        }
    }
}

/// The segment files in `dir`, oldest name (so oldest first opened) first.
pub fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("rounds-") && name.ends_with(".jsonl") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Deletes segments past the age bound, then the least recently written while the total is
/// over the size bound. `keep`: the segment just opened. Errors only cost a pass.
pub fn prune(dir: &Path, limits: Limits, keep: Option<&Path>) {
    let Ok(paths) = segments(dir) else {
        return;
    };
    let now = SystemTime::now();
    let mut live: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
    for path in paths {
        let Ok(meta) = fs::metadata(&path) else {
            continue;
        };
        let modified = meta.modified().unwrap_or(now);
        let old = now.duration_since(modified).unwrap_or_default() > limits.max_age;
        if old && Some(path.as_path()) != keep {
            let _ = fs::remove_file(&path);
        } else {
            live.push((modified, meta.len(), path));
        }
    }
    live.sort();
    let mut total: u64 = live.iter().map(|(_, len, _)| len).sum();
    for (_, len, path) in live {
        if total <= limits.max_bytes {
            break;
        }
        if Some(path.as_path()) == keep {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            total = total.saturating_sub(len);
        }
    }
}

/// What a read found: the records, and lines that were not records (a torn last line after a
/// kill -9, say).
#[derive(Debug, Default)]
pub struct Read {
    pub records: Vec<RoundRecord>,
    pub skipped: usize,
    pub bytes: u64,
}

/// Every record in `dir` that began at or after `since_ms`, in the order written (segment by
/// segment), optionally only those of `job_id`.
pub fn read(dir: &Path, since_ms: Option<i64>, job_id: Option<&str>) -> io::Result<Read> {
    let mut read = Read::default();
    for path in segments(dir)? {
        let file = match File::open(&path) {
            Ok(f) => f,
            // Pruned by a writer meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        read.bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
        for line in BufReader::new(file).split(b'\n') {
            let line = line?;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<RoundRecord>(&line) {
                Ok(r) if r.v == super::VERSION => {
                    if since_ms.is_some_and(|s| r.at_ms < s)
                        || job_id.is_some_and(|j| r.job.job_id != j)
                    {
                        continue;
                    }
                    read.records.push(r);
                }
                _ => read.skipped += 1,
            }
        }
    }
    Ok(read)
}
