//! The state directory's lock: one process at a time changes the bans.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Why the state directory's lock cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot create the state directory {}: {error}", dir.display())]
    CreateDir { dir: PathBuf, error: io::Error },
    #[error("cannot open the lock: {0}")]
    Open(io::Error),
    #[error("{} is locked by another security-monitor process (is the daemon running? then use its control socket, or stop it first)", path.display())]
    Held { path: PathBuf },
}

/// An exclusive lock on the state directory: one process at a time changes the bans.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|error| LockError::CreateDir {
            dir: dir.into(),
            error,
        })?;
        let path = dir.join("lock");
        let file = crate::fsutil::open_lock(&path).map_err(LockError::Open)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(LockError::Held { path });
        }
        Ok(StateLock { _file: file })
    }
}
