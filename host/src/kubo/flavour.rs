//! Which implementation answers: Kubo or js-ipfs. Only the presence walk depends on it (see
//! `presence`); pinning, stall detection, verification and uploads are the same on both.
//!
//! `id`'s `AgentVersion` tells, at the cost of a round trip (~7 ms on js-ipfs) in every process
//! that checks retrievability, and the encoder runs one `pinwarden pin` process per video. So the
//! client asks only when the walk needs the answer, and remembers it per node API URL in
//! `<data_dir>/node-flavours.json` (when it has a data dir) for [`MAX_AGE`]: after the first
//! process, the happy path makes no `id` call at all.
//!
//! A node's implementation seldom changes behind the same URL, but it can (a node replaced or
//! migrated). The costly mistake is a js-ipfs node taken for Kubo: `block/stat?offline=true`,
//! which js-ipfs ignores, could then fetch a missing block instead of reporting it. `MAX_AGE`
//! bounds how long such a mistake can last, at the price of one `id` per node per hour. A
//! missing, unreadable, corrupt or stale file only means asking `id` again; failing to write it
//! only means asking next time.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The cache file, in the data directory.
const FILE: &str = "node-flavours.json";
/// How long a remembered flavour is trusted.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// Kubo or js-ipfs, as far as this client cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// Honours `offline=true` (Kubo, and anything that is not js-ipfs).
    Kubo,
    /// Ignores `offline`: presence comes from `refs/local`.
    JsIpfs,
}

impl Flavour {
    /// The implementation `id`'s `AgentVersion` names (`kubo/0.x.y/...`, `go-ipfs/...`,
    /// `js-ipfs/0.x.y`), or `None` for one pinwarden does not know (doctor warns about it).
    pub fn recognise(agent_version: &str) -> Option<Flavour> {
        if agent_version.starts_with("kubo") || agent_version.starts_with("go-ipfs") {
            Some(Flavour::Kubo)
        } else if agent_version.starts_with("js-ipfs") {
            Some(Flavour::JsIpfs)
        } else {
            None
        }
    }

    /// The dialect to speak to a node: an implementation pinwarden does not know gets Kubo's,
    /// the RPC API's reference.
    pub(super) fn from_agent(agent_version: &str) -> Flavour {
        Flavour::recognise(agent_version).unwrap_or(Flavour::Kubo)
    }

    /// The implementation's name, as doctor prints it.
    pub fn name(self) -> &'static str {
        match self {
            Flavour::Kubo => "Kubo",
            Flavour::JsIpfs => "js-ipfs",
        }
    }
}

/// One node's remembered flavour.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    flavour: Flavour,
    /// When `id` said so, in seconds since the Unix epoch.
    learned: u64,
}

/// One node's entry in `<data_dir>/node-flavours.json`.
#[derive(Debug, Clone)]
pub(super) struct FlavourCache {
    path: PathBuf,
    /// The node's API URL, without credentials (the file is not a secret).
    key: String,
}

impl FlavourCache {
    pub(super) fn new(data_dir: &Path, api: &Url) -> Self {
        let mut key = api.clone();
        // Both only fail on URLs that cannot carry credentials anyway.
        let _ = key.set_username("");
        let _ = key.set_password(None);
        FlavourCache {
            path: data_dir.join(FILE),
            key: key.into(),
        }
    }

    /// The remembered flavour, if fresh. Off the runtime's threads: it reads a file.
    pub(super) async fn load(&self) -> Option<Flavour> {
        let cache = self.clone();
        tokio::task::spawn_blocking(move || cache.get(SystemTime::now()))
            .await
            .ok()
            .flatten()
    }

    /// Remembers `flavour`; a failure is logged and otherwise ignored.
    pub(super) async fn store(&self, flavour: Flavour) {
        let cache = self.clone();
        let written = tokio::task::spawn_blocking(move || cache.put(flavour, SystemTime::now()))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r);
        if let Err(e) = written {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot remember the node's flavour");
        }
    }

    fn get(&self, now: SystemTime) -> Option<Flavour> {
        read(&self.path)
            .remove(&self.key)
            .filter(|e| fresh(e, now))
            .map(|e| e.flavour)
    }

    /// Read, merge, write through a temporary file and a rename: a reader never sees half a
    /// file. Two processes writing at once may lose one entry, which only costs an `id` later.
    fn put(&self, flavour: Flavour, now: SystemTime) -> io::Result<()> {
        let mut entries = read(&self.path);
        entries.retain(|_, e| fresh(e, now));
        entries.insert(
            self.key.clone(),
            Entry {
                flavour,
                learned: unix_secs(now),
            },
        );
        let mut bytes = serde_json::to_vec_pretty(&entries)?;
        bytes.push(b'\n');
        crate::atomic_file::write(&self.path, &bytes)
    }
}

/// The file's entries; empty when it is missing, unreadable or not what this version wrote.
fn read(path: &Path) -> BTreeMap<String, Entry> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Learned less than [`MAX_AGE`] ago (and not in the future: the clock may have been reset).
fn fresh(entry: &Entry, now: SystemTime) -> bool {
    unix_secs(now)
        .checked_sub(entry.learned)
        .is_some_and(|age| age < MAX_AGE.as_secs())
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, url: &str) -> FlavourCache {
        FlavourCache::new(dir, &Url::parse(url).unwrap())
    }

    const T0: Duration = Duration::from_secs(1_700_000_000);

    fn at(offset: Duration) -> SystemTime {
        UNIX_EPOCH + T0 + offset
    }

    #[test]
    fn agent_versions() {
        assert_eq!(Flavour::from_agent("js-ipfs/0.66.1"), Flavour::JsIpfs);
        assert_eq!(Flavour::from_agent("kubo/0.29.0/"), Flavour::Kubo);
        assert_eq!(Flavour::from_agent(""), Flavour::Kubo);
        assert_eq!(Flavour::recognise("go-ipfs/0.4.23/"), Some(Flavour::Kubo));
        assert_eq!(Flavour::recognise("iroh/0.1"), None);
    }

    #[test]
    fn fresh_entries_are_remembered_per_node() {
        let dir = tempfile::tempdir().unwrap();
        let a = cache(dir.path(), "http://127.0.0.1:5001/api/v0/");
        let b = cache(dir.path(), "https://node.example/api/v0/");
        assert_eq!(a.get(at(Duration::ZERO)), None);
        a.put(Flavour::JsIpfs, at(Duration::ZERO)).unwrap();
        b.put(Flavour::Kubo, at(Duration::ZERO)).unwrap();
        let later = at(MAX_AGE - Duration::from_secs(1));
        assert_eq!(a.get(later), Some(Flavour::JsIpfs));
        assert_eq!(b.get(later), Some(Flavour::Kubo));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![FILE]);
    }

    #[test]
    fn stale_entries_mean_asking_again() {
        let dir = tempfile::tempdir().unwrap();
        let a = cache(dir.path(), "http://127.0.0.1:5001/api/v0/");
        a.put(Flavour::Kubo, at(Duration::from_secs(60))).unwrap();
        assert_eq!(a.get(at(Duration::from_secs(60) + MAX_AGE)), None);
        // Learned "in the future": the clock went back; not trusted either.
        assert_eq!(a.get(at(Duration::ZERO)), None);
        // A later write drops the other stale entries.
        let b = cache(dir.path(), "http://127.0.0.1:5002/api/v0/");
        b.put(Flavour::Kubo, at(MAX_AGE * 2)).unwrap();
        assert_eq!(read(&a.path).len(), 1);
    }

    #[test]
    fn corrupt_or_unreadable_files_mean_asking_again() {
        let dir = tempfile::tempdir().unwrap();
        let a = cache(dir.path(), "http://127.0.0.1:5001/api/v0/");
        std::fs::write(&a.path, b"{\"http://127.0.0.1:5001/api/v0/\": {\"flav").unwrap();
        assert_eq!(a.get(at(Duration::ZERO)), None);
        // The next answer replaces the corrupt file.
        a.put(Flavour::JsIpfs, at(Duration::ZERO)).unwrap();
        assert_eq!(a.get(at(Duration::ZERO)), Some(Flavour::JsIpfs));

        std::fs::write(&a.path, br#"{"http://127.0.0.1:5001/api/v0/": {"flavour": "ipfs-lite", "learned": 1700000000}}"#).unwrap();
        assert_eq!(a.get(at(Duration::ZERO)), None);

        // The path is a directory: unreadable, and unwritable.
        let odd = cache(&dir.path().join("sub"), "http://h/api/v0/");
        std::fs::create_dir_all(&odd.path).unwrap();
        assert_eq!(odd.get(at(Duration::ZERO)), None);
        assert!(odd.put(Flavour::Kubo, at(Duration::ZERO)).is_err());
    }

    #[test]
    fn credentials_stay_out_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = cache(dir.path(), "https://user:secret@node.example/api/v0/");
        a.put(Flavour::Kubo, at(Duration::ZERO)).unwrap();
        let text = std::fs::read_to_string(&a.path).unwrap();
        assert!(text.contains("https://node.example/api/v0/"), "{text}");
        assert!(!text.contains("secret") && !text.contains("user"), "{text}");
    }
}
