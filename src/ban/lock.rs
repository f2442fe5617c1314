//! The state directory's lock: one process at a time changes the bans.

use std::fs::File;
use std::path::Path;

/// An exclusive lock on the state directory: one process at a time changes the bans.
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock or says who holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        let path = dir.join("lock");
        let file =
            crate::fsutil::open_lock(&path).map_err(|e| format!("cannot open the lock: {e}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(format!(
                "{} is locked by another security-monitor process (is the daemon running? then use its control socket, or stop it first)",
                path.display()
            ));
        }
        Ok(StateLock { _file: file })
    }
}
