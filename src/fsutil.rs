//! Opening the daemon's own files safely: the state directory may be shared with other
//! software, so no file in it is opened through a symbolic link, temp files are created
//! fresh (never an existing file reused), and every file gets an explicit mode rather
//! than whatever the umask allows.
//!
//! [`write_atomic`] is the one way a whole file is replaced (`blocked_ips.json`,
//! `cursors.json`): a new temp file beside it, written and synced, renamed over the old
//! one, then the directory synced. A crash at any moment leaves either the old file or
//! the new one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the state files: they name attackers, not secrets, but are nobody else's
/// business (the group may read them for monitoring).
pub const STATE_MODE: u32 = 0o640;
/// Mode of the lock file: nothing in it, and only the daemon's user needs it.
pub const LOCK_MODE: u32 = 0o600;

/// Adds the path to an error, and says so plainly when the path is a symbolic link
/// (`ELOOP` from `O_NOFOLLOW`).
pub fn with_path(e: io::Error, path: &Path) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return io::Error::new(
            e.kind(),
            format!(
                "{}: a symbolic link, which is not followed (remove it: the daemon keeps its own file there)",
                path.display()
            ),
        );
    }
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Options that never follow a symbolic link at the last part of the path.
fn nofollow() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.custom_flags(libc::O_NOFOLLOW);
    o
}

/// Reads a whole file without following a symbolic link; `NotFound` as usual.
pub fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_read_nofollow(path)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(|e| with_path(e, path))?;
    Ok(out)
}

/// Opens a file for reading without following a symbolic link.
pub fn open_read_nofollow(path: &Path) -> io::Result<File> {
    match nofollow().read(true).open(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(e) => Err(with_path(e, path)),
    }
}

/// Opens (creating with `mode`) a file to append to, never through a symbolic link.
/// An existing file keeps its contents; its mode is tightened to `mode`, so a file left
/// world-readable by an older version stops being so.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let f = nofollow()
        .create(true)
        .append(true)
        .mode(mode)
        .open(path)
        .map_err(|e| with_path(e, path))?;
    set_mode(&f, path, mode)?;
    Ok(f)
}

/// Opens (creating with mode 0600) the lock file, never through a symbolic link.
pub fn open_lock(path: &Path) -> io::Result<File> {
    let f = nofollow()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(LOCK_MODE)
        .open(path)
        .map_err(|e| with_path(e, path))?;
    set_mode(&f, path, LOCK_MODE)?;
    Ok(f)
}

/// Gives an open file exactly `mode` (the umask may have narrowed it, or the file
/// existed) and checks it is a regular file.
fn set_mode(f: &File, path: &Path, mode: u32) -> io::Result<()> {
    let meta = f.metadata().map_err(|e| with_path(e, path))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file; move it away so the daemon can write its own",
                path.display()
            ),
        ));
    }
    if meta.permissions().mode() & 0o7777 != mode {
        match f.set_permissions(fs::Permissions::from_mode(mode)) {
            // Someone else's file we may write (root's lock, opened by its group): theirs
            // to set.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
            r => r.map_err(|e| with_path(e, path))?,
        }
    }
    Ok(())
}

/// The temp file beside `path`: `NAME.tmp` (one writer per file: the state lock).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` with `bytes` atomically, the file having exactly `mode`.
///
/// The temp file ([`temp_path`]) is created new (`O_CREAT|O_EXCL`, which fails on
/// anything at that path, a symbolic link included); one left by a crash is unlinked
/// first (unlinking a symbolic link removes the link, never its target). The rename
/// replaces whatever is at `path` itself, so a symbolic link there is replaced, not
/// followed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    let tmp = temp_path(path);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_path(e, &tmp)),
    }
    let written = (|| {
        let mut f = nofollow()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        // Not our file when create_new failed (something raced us to the name): leave it.
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = fs::remove_file(&tmp);
        }
        return Err(with_path(e, &tmp));
    }
    fs::rename(&tmp, path).map_err(|e| with_path(e, path))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_atomic_write_has_its_mode_whatever_the_umask_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.json");
        write_atomic(&p, b"one", 0o640).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), 0o640);
        // A world-readable file from before is replaced by one with the mode.
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        write_atomic(&p, b"two", 0o640).unwrap();
        assert_eq!(
            (fs::read(&p).unwrap(), mode_of(&p)),
            (b"two".to_vec(), 0o640)
        );
        assert!(!temp_path(&p).exists());
    }

    #[test]
    fn a_symlink_at_the_temp_path_is_removed_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let p = dir.path().join("f.json");
        symlink(&victim, temp_path(&p)).unwrap();
        write_atomic(&p, b"new", 0o640).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }

    #[test]
    fn a_symlink_is_never_read_or_appended_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("link");
        symlink(&victim, &link).unwrap();
        let e = read_nofollow(&link).unwrap_err();
        assert!(
            e.to_string()
                .contains("a symbolic link, which is not followed"),
            "{e}"
        );
        let e = open_append(&link, 0o640).unwrap_err();
        assert!(
            e.to_string()
                .contains("a symbolic link, which is not followed"),
            "{e}"
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn the_lock_file_is_not_created_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        symlink(&elsewhere, dir.path().join("lock")).unwrap();
        let e = crate::ban::StateLock::acquire(dir.path())
            .err()
            .expect("a symlinked lock must be refused")
            .to_string();
        assert!(e.contains("a symbolic link, which is not followed"), "{e}");
        assert!(!elsewhere.exists(), "the lock was created through the link");
        // A plain lock file gets mode 0600.
        fs::remove_file(dir.path().join("lock")).unwrap();
        let lock = crate::ban::StateLock::acquire(dir.path()).unwrap();
        assert_eq!(mode_of(&dir.path().join("lock")), 0o600);
        drop(lock);
    }
}
