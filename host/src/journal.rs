//! The local-fallback journal: `<data_dir>/local-fallback-pins.jsonl`, one JSON object per line,
//! in exactly the format of the encoder it replaces, because operators already process it with
//! `jq`, `wc -l` and shell loops:
//!
//! ```json
//! {"hash":"QmXYZ...","job_id":"job-123","size_mb":25.5,"type":"directory","failed_lazy_attempts":3,"local_pin_timestamp":"2025-10-28T10:30:00.000Z","source":"failed_lazy_pin_fallback","node_id":"encoder-node-1"}
//! ```
//!
//! Durability: every line is written whole, with one `write` on a file opened with `O_APPEND`,
//! then `fsync`ed (`sync_data`) before [`Journal::append`] returns. Writers inside one process are
//! serialized by a mutex, so lines never interleave; a crash can at worst leave a torn last line,
//! which [`read`] reports and tolerates, and which the next append closes with a `\n` first so
//! the new entry starts on its own line.
//!
//! The journal is never rewritten. Migration to a permanent node is recorded beside it, in
//! `local-fallback-migrated.jsonl` (same discipline, one [`Migration`] per CID); what is still
//! to migrate is the journal's CIDs without a migration record ([`backlog`], [`pending`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// The journal's file name inside the data directory.
pub const JOURNAL_FILE: &str = "local-fallback-pins.jsonl";
/// The migration records' file name, beside the journal.
pub const MIGRATED_FILE: &str = "local-fallback-migrated.jsonl";
/// The `source` of every entry pinwarden writes.
pub const SOURCE: &str = "failed_lazy_pin_fallback";

/// `<data_dir>/local-fallback-pins.jsonl`.
pub fn journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join(JOURNAL_FILE)
}

/// The migration records beside `journal`: `local-fallback-migrated.jsonl` in the same directory.
pub fn migrated_path(journal: &Path) -> PathBuf {
    journal.with_file_name(MIGRATED_FILE)
}

/// What was pinned: the seed's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentKind {
    File,
    Directory,
}

/// One journal line. The fields, their names and their order are the seed's: serializing an
/// entry gives the line the encoder wrote, byte for byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The CID, as the job reported it.
    pub hash: String,
    pub job_id: String,
    /// Size in MiB (bytes / 1048576), rounded to one decimal: see [`size_mb`].
    pub size_mb: f64,
    #[serde(rename = "type")]
    pub kind: ContentKind,
    /// How many lazy pin attempts failed before the fallback.
    pub failed_lazy_attempts: u32,
    /// When the content was pinned locally: RFC 3339, UTC, milliseconds, `Z` (see [`timestamp`]).
    pub local_pin_timestamp: String,
    /// Always [`SOURCE`] for entries pinwarden writes.
    pub source: String,
    /// The node (encoder) that wrote the entry: the config's `node_name` (NODE_NAME).
    pub node_id: String,
}

impl Entry {
    /// An entry for content pinned locally at `at`, with the seed's `source`.
    pub fn new(
        hash: impl Into<String>,
        job_id: impl Into<String>,
        size_bytes: u64,
        kind: ContentKind,
        failed_lazy_attempts: u32,
        node_id: impl Into<String>,
        at: SystemTime,
    ) -> Entry {
        Entry {
            hash: hash.into(),
            job_id: job_id.into(),
            size_mb: size_mb(size_bytes),
            kind,
            failed_lazy_attempts,
            local_pin_timestamp: timestamp(at),
            source: SOURCE.into(),
            node_id: node_id.into(),
        }
    }

    /// The entry's line, without the trailing newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an Entry always serializes")
    }
}

/// One line of `local-fallback-migrated.jsonl`: this CID is pinned, verified and retrievable on
/// `migrated_to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    pub hash: String,
    /// The permanent node (its URL, without credentials).
    pub migrated_to: String,
    /// RFC 3339, UTC, milliseconds, `Z`.
    pub migrated_at: String,
    /// `pin ls` listed it and every block was present on `migrated_to`. Records are only written
    /// after that check, so this is always `true` for records pinwarden writes.
    pub verified: bool,
    /// The local pin was removed by the migration (`--unpin-local`, and `pin rm` succeeded).
    pub unpinned_local: bool,
}

impl Migration {
    pub fn new(
        hash: impl Into<String>,
        migrated_to: impl Into<String>,
        unpinned_local: bool,
        at: SystemTime,
    ) -> Migration {
        Migration {
            hash: hash.into(),
            migrated_to: migrated_to.into(),
            migrated_at: timestamp(at),
            verified: true,
            unpinned_local,
        }
    }
}

/// Bytes → MiB rounded to one decimal, as the seed's `size_mb` (26738688 → 25.5).
pub fn size_mb(size_bytes: u64) -> f64 {
    (size_bytes as f64 / 1_048_576.0 * 10.0).round() / 10.0
}

/// RFC 3339 in UTC with milliseconds and `Z`, like JavaScript's `toISOString()`:
/// `2025-10-28T10:30:00.000Z`.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

/// Parses a journal timestamp (RFC 3339 in UTC, fractional seconds optional).
pub fn parse_timestamp(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.trim()).ok()
}

/// A line that could not be used, and why. Reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// What [`read`] found in the journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalRead {
    /// The entries, in file order (a CID journaled twice appears twice).
    pub entries: Vec<Entry>,
    /// Lines that did not parse (a torn last line after a crash, a hand edit gone wrong).
    pub problems: Vec<Problem>,
}

/// What [`read_migrations`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MigrationsRead {
    pub records: Vec<Migration>,
    pub problems: Vec<Problem>,
}

/// Reads the journal. A missing file is an empty journal; a line that does not parse is a
/// [`Problem`], not an error (a torn last line is expected after a crash). Only I/O errors fail.
pub fn read(path: &Path) -> io::Result<JournalRead> {
    let (entries, problems) = read_jsonl(path)?;
    Ok(JournalRead { entries, problems })
}

/// Reads the migration records, with the same tolerance as [`read`].
pub fn read_migrations(path: &Path) -> io::Result<MigrationsRead> {
    let (records, problems) = read_jsonl(path)?;
    Ok(MigrationsRead { records, problems })
}

fn read_jsonl<T: DeserializeOwned>(path: &Path) -> io::Result<(Vec<T>, Vec<Problem>)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut problems = Vec::new();
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        number += 1;
        let complete = buf.last() == Some(&b'\n');
        let mut line = buf.as_slice();
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<T>(line) {
            Ok(record) => {
                records.push(record);
                if !complete {
                    problems.push(Problem {
                        line: number,
                        reason: "last line has no trailing newline (an interrupted write?); \
                                 it parsed and is used"
                            .into(),
                    });
                }
            }
            // Without its newline, the line is the last one and its write was cut short.
            Err(e) if !complete => problems.push(Problem {
                line: number,
                reason: format!("torn last line (an interrupted write), ignored: {e}"),
            }),
            Err(e) => problems.push(Problem {
                line: number,
                reason: format!("not a valid record, ignored: {e}"),
            }),
        }
    }
    Ok((records, problems))
}

/// The journal's CIDs, each once (first journal entry wins), split by whether a verified
/// migration record exists for it.
#[derive(Debug, Clone, Default)]
pub struct Backlog<'a> {
    /// Still only on the local node: to migrate.
    pub pending: Vec<&'a Entry>,
    /// Recorded as migrated.
    pub migrated: Vec<&'a Entry>,
}

impl Backlog<'_> {
    /// Distinct CIDs in the journal.
    pub fn distinct(&self) -> usize {
        self.pending.len() + self.migrated.len()
    }
}

/// Splits the journal's distinct CIDs into pending and migrated. CIDs are compared by content
/// (a CIDv0 and its CIDv1 form are the same CID); a hash that is not a CID compares as text.
pub fn backlog<'a>(entries: &'a [Entry], migrations: &[Migration]) -> Backlog<'a> {
    let migrated: HashSet<String> = migrations
        .iter()
        .filter(|m| m.verified)
        .map(|m| crate::cid_identity::key(&m.hash))
        .collect();
    let mut seen = HashSet::new();
    let mut backlog = Backlog::default();
    for entry in entries {
        let key = crate::cid_identity::key(&entry.hash);
        if !seen.insert(key.clone()) {
            continue;
        }
        if migrated.contains(&key) {
            backlog.migrated.push(entry);
        } else {
            backlog.pending.push(entry);
        }
    }
    backlog
}

/// The journal entries whose CID has no migration record, each CID once, in journal order.
pub fn pending<'a>(entries: &'a [Entry], migrations: &[Migration]) -> Vec<&'a Entry> {
    backlog(entries, migrations).pending
}

/// The journal, open for appending. Shared (`Arc`) by the workers that fall back.
#[derive(Debug)]
pub struct Journal {
    log: AppendLog,
}

impl Journal {
    /// Opens (creating it and its directory if needed) the journal at `path`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Journal> {
        Ok(Journal {
            log: AppendLog::open(path.as_ref())?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.log.path
    }

    /// Appends `entry` as one line and `fsync`s it: when this returns `Ok`, the line is on disk.
    /// Blocks the thread for the write and the sync; from async code use [`Journal::append_async`].
    pub fn append(&self, entry: &Entry) -> io::Result<()> {
        self.log.append_line(entry.to_line().as_bytes())
    }

    /// [`Journal::append`] on the blocking thread pool.
    pub async fn append_async(self: Arc<Self>, entry: Entry) -> io::Result<()> {
        tokio::task::spawn_blocking(move || self.append(&entry))
            .await
            .map_err(io::Error::other)?
    }
}

/// The migration records, open for appending (same discipline as the [`Journal`]).
#[derive(Debug)]
pub struct MigrationLog {
    log: AppendLog,
}

impl MigrationLog {
    pub fn open(path: impl AsRef<Path>) -> io::Result<MigrationLog> {
        Ok(MigrationLog {
            log: AppendLog::open(path.as_ref())?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.log.path
    }

    /// Appends one record and `fsync`s it.
    pub fn append(&self, record: &Migration) -> io::Result<()> {
        let line = serde_json::to_string(record).map_err(io::Error::other)?;
        self.log.append_line(line.as_bytes())
    }

    /// [`MigrationLog::append`] on the blocking thread pool.
    pub async fn append_async(self: Arc<Self>, record: Migration) -> io::Result<()> {
        tokio::task::spawn_blocking(move || self.append(&record))
            .await
            .map_err(io::Error::other)?
    }
}

/// A JSONL file written only by appending whole, fsynced lines.
#[derive(Debug)]
struct AppendLog {
    path: PathBuf,
    /// Read access too: the last byte is checked before each append.
    file: Mutex<File>,
}

impl AppendLog {
    fn open(path: &Path) -> io::Result<AppendLog> {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(dir) = parent {
            std::fs::create_dir_all(dir)?;
        }
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        if !existed {
            // Make the new file's directory entry durable too.
            let dir = parent.unwrap_or(Path::new("."));
            if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the directory");
            }
        }
        Ok(AppendLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Writes `line` + `\n` with one `write` (O_APPEND), then `sync_data`. If the file does not
    /// end with `\n` (a torn line from a crash), the write starts with one.
    fn append_line(&self, line: &[u8]) -> io::Result<()> {
        debug_assert!(!line.contains(&b'\n'), "a record is one line");
        // A panic elsewhere while holding the lock leaves the file as consistent as a crash.
        let file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let mut buf = Vec::with_capacity(line.len() + 2);
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8];
            file.read_exact_at(&mut last, len - 1)?;
            if last[0] != b'\n' {
                tracing::warn!(
                    file = %self.path.display(),
                    "the last line is torn (no newline; an interrupted write?): \
                     closing it so the new record starts on its own line"
                );
                buf.push(b'\n');
            }
        }
        buf.extend_from_slice(line);
        buf.push(b'\n');
        (&*file).write_all(&buf)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The seed's example lines (docs: local-fallback-for-failed-lazy-pins.md).
    const SEED_1: &str = r#"{"hash":"QmXYZ...","job_id":"job-123","size_mb":25.5,"type":"directory","failed_lazy_attempts":3,"local_pin_timestamp":"2025-10-28T10:30:00.000Z","source":"failed_lazy_pin_fallback","node_id":"encoder-node-1"}"#;
    const SEED_2: &str = r#"{"hash":"QmABC...","job_id":"job-124","size_mb":12.3,"type":"file","failed_lazy_attempts":3,"local_pin_timestamp":"2025-10-28T10:35:00.000Z","source":"failed_lazy_pin_fallback","node_id":"encoder-node-1"}"#;

    const V0: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn entry(hash: &str, job: &str) -> Entry {
        Entry::new(
            hash,
            job,
            1 << 20,
            ContentKind::File,
            3,
            "n",
            at(1_761_647_400),
        )
    }

    #[test]
    fn entries_serialize_exactly_like_the_seed() {
        // 2025-10-28T10:30:00Z and 10:35:00Z.
        let first = Entry::new(
            "QmXYZ...",
            "job-123",
            26_738_688,
            ContentKind::Directory,
            3,
            "encoder-node-1",
            at(1_761_647_400),
        );
        let second = Entry::new(
            "QmABC...",
            "job-124",
            12_897_485,
            ContentKind::File,
            3,
            "encoder-node-1",
            at(1_761_647_700),
        );
        assert_eq!(first.to_line(), SEED_1);
        assert_eq!(second.to_line(), SEED_2);
        // And the seed's lines read back to the same entries.
        let parsed: Entry = serde_json::from_str(SEED_1).unwrap();
        assert_eq!(parsed, first);
        assert_eq!(
            serde_json::from_str::<Entry>(SEED_2).unwrap().to_line(),
            SEED_2
        );
    }

    #[test]
    fn sizes_and_timestamps() {
        assert_eq!(size_mb(0), 0.0);
        assert_eq!(size_mb(26_738_688), 25.5);
        assert_eq!(size_mb(1_048_576 * 12 + 1_048_576 / 4), 12.3); // 12.25 → 12.3
        assert_eq!(size_mb(100_000), 0.1);
        let ms = at(1_761_647_400) + Duration::from_millis(7) + Duration::from_nanos(999);
        assert_eq!(timestamp(ms), "2025-10-28T10:30:00.007Z");
        assert_eq!(
            parse_timestamp("2025-10-28T10:30:00.007Z"),
            Some(at(1_761_647_400) + Duration::from_millis(7))
        );
        assert_eq!(
            parse_timestamp("2025-10-28T10:30:00Z"),
            Some(at(1_761_647_400))
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn migration_records_format() {
        let m = Migration::new(V0, "http://permanent:5001", true, at(1_761_647_400));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            format!(
                r#"{{"hash":"{V0}","migrated_to":"http://permanent:5001","migrated_at":"2025-10-28T10:30:00.000Z","verified":true,"unpinned_local":true}}"#
            )
        );
    }

    #[test]
    fn missing_journal_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let read = read(&dir.path().join("nope.jsonl")).unwrap();
        assert_eq!(read, JournalRead::default());
    }

    #[test]
    fn torn_and_bad_lines_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let torn = &SEED_2[..40];
        std::fs::write(&path, format!("{SEED_1}\n\nnot json\r\n{SEED_2}\n{torn}")).unwrap();
        let read = read(&path).unwrap();
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.entries[1].job_id, "job-124");
        assert_eq!(read.problems.len(), 2, "{:?}", read.problems);
        assert_eq!(read.problems[0].line, 3);
        assert!(
            read.problems[0].reason.starts_with("not a valid record"),
            "{:?}",
            read.problems
        );
        assert_eq!(read.problems[1].line, 5);
        assert!(
            read.problems[1].reason.starts_with("torn last line"),
            "{:?}",
            read.problems
        );

        // A complete last line that only lacks its newline is used, and reported.
        std::fs::write(&path, format!("{SEED_1}\n{SEED_2}")).unwrap();
        let read = super::read(&path).unwrap();
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.problems.len(), 1);
        assert_eq!(read.problems[0].line, 2);
    }

    #[test]
    fn append_closes_a_torn_last_line_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er").join(JOURNAL_FILE);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let torn = &SEED_2[..40];
        std::fs::write(&path, format!("{SEED_1}\n{torn}")).unwrap();

        let journal = Journal::open(&path).unwrap();
        let new = entry(V0, "job-new");
        journal.append(&new).unwrap();
        journal.append(&new).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line = new.to_line();
        assert_eq!(text, format!("{SEED_1}\n{torn}\n{line}\n{line}\n"));
        let read = read(&path).unwrap();
        assert_eq!(read.entries.len(), 3);
        assert_eq!(read.problems.len(), 1);
        assert_eq!(read.problems[0].line, 2);
        assert!(read.problems[0].reason.starts_with("not a valid record"));
    }

    #[test]
    fn open_creates_the_directory_and_appends_to_existing_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join(JOURNAL_FILE);
        Journal::open(&path)
            .unwrap()
            .append(&entry(V0, "a"))
            .unwrap();
        Journal::open(&path)
            .unwrap()
            .append(&entry(V0, "b"))
            .unwrap();
        let jobs: Vec<String> = read(&path)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.job_id)
            .collect();
        assert_eq!(jobs, ["a", "b"]);
        assert_eq!(
            migrated_path(&path),
            dir.path().join("data").join(MIGRATED_FILE)
        );
        assert_eq!(
            journal_path(Path::new("data")),
            Path::new("data/local-fallback-pins.jsonl")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_produce_only_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let journal = Arc::new(Journal::open(&path).unwrap());
        // Long lines, so that a write split or interleaved anywhere would show.
        let node = "n".repeat(3000);
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let journal = Arc::clone(&journal);
                let node = node.clone();
                tokio::spawn(async move {
                    for i in 0..25 {
                        let e = Entry::new(
                            V0,
                            format!("job-{t}-{i}"),
                            1,
                            ContentKind::Directory,
                            3,
                            &node,
                            SystemTime::now(),
                        );
                        Arc::clone(&journal).append_async(e).await.unwrap();
                    }
                })
            })
            .collect();
        // Plain threads on the blocking API at the same time.
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let journal = Arc::clone(&journal);
                let node = node.clone();
                std::thread::spawn(move || {
                    for i in 0..25 {
                        let e = Entry::new(
                            V0,
                            format!("thread-{t}-{i}"),
                            1,
                            ContentKind::File,
                            3,
                            &node,
                            SystemTime::now(),
                        );
                        journal.append(&e).unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        for thread in threads {
            thread.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 500);
        let read = read(&path).unwrap();
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        let jobs: HashSet<&str> = read.entries.iter().map(|e| e.job_id.as_str()).collect();
        assert_eq!(jobs.len(), 500);
        assert!(read.entries.iter().all(|e| e.node_id == node));
    }

    #[test]
    fn pending_is_the_unmigrated_cids_each_once() {
        let v1 = cid::Cid::try_from(V0)
            .unwrap()
            .into_v1()
            .unwrap()
            .to_string();
        let other = "bafkreiauizm3jdzufublskmja6vtf7hqi6nmtsm2buuty7box6g7ge65ci";
        let entries = vec![
            entry("QmNotACid...", "a"),
            entry(V0, "b"),
            entry("QmNotACid...", "a-again"),
            entry(other, "c"),
            entry(&v1, "b-as-v1"),
        ];
        assert_eq!(
            pending(&entries, &[])
                .iter()
                .map(|e| e.job_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        // Migrated under its CIDv1 name: the CIDv0 entries are migrated too.
        let migrations = vec![
            Migration::new(&v1, "p", false, SystemTime::now()),
            Migration {
                verified: false,
                ..Migration::new(other, "p", false, SystemTime::now())
            },
        ];
        let b = backlog(&entries, &migrations);
        assert_eq!(
            b.pending
                .iter()
                .map(|e| e.job_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert_eq!(
            b.migrated
                .iter()
                .map(|e| e.job_id.as_str())
                .collect::<Vec<_>>(),
            ["b"]
        );
        assert_eq!(b.distinct(), 3);
    }

    #[test]
    fn migration_log_appends_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = migrated_path(&dir.path().join(JOURNAL_FILE));
        let log = MigrationLog::open(&path).unwrap();
        log.append(&Migration::new(
            V0,
            "http://p:5001",
            false,
            SystemTime::now(),
        ))
        .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"hash\":")
            .unwrap();
        log.append(&Migration::new(
            "QmOther",
            "http://p:5001",
            true,
            SystemTime::now(),
        ))
        .unwrap();
        let read = read_migrations(&path).unwrap();
        assert_eq!(read.records.len(), 2);
        assert_eq!(read.problems.len(), 1);
        assert!(read.records.iter().all(|m| m.verified));
    }
}
