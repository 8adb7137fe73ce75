//! Exclusive locks on a data directory's state, so two processes never work the same queue or
//! migrate the same journal at once. `flock(2)` (std's `File::try_lock`): the kernel drops the
//! lock when the holder exits, even on `kill -9`, so a crashed daemon never leaves a stale lock.
//! The file holds the holder's pid, for the message the next process prints.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// A held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct Held {
    _file: File,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{} is held by pid {}", path.display(), pid.as_deref().unwrap_or("?"))]
    Busy { path: PathBuf, pid: Option<String> },
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Takes the lock at `path` (creating the file and its directory) without waiting.
pub fn try_acquire(path: &Path) -> Result<Held, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .map(|_| text.trim().to_string())
                .filter(|t| !t.is_empty());
            return Err(LockError::Busy {
                path: path.to_path_buf(),
                pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(io)?;
    Ok(Held {
        _file: file,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state").join("x.lock");
        let held = try_acquire(&path).expect("first");
        match try_acquire(&path) {
            Err(LockError::Busy { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id().to_string()));
            }
            other => panic!("expected busy, got {other:?}"),
        }
        drop(held);
        assert!(try_acquire(&path).is_ok(), "released on drop");
    }
}
