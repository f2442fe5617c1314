//! Log files inside a container, read through its mounts on the host.
//!
//! Some applications log to a file, not to stdout: Nginx Proxy Manager its proxy hosts
//! under `/data/logs/`, Nextcloud `/var/www/html/data/nextcloud.log`, linuxserver's sshd
//! an s6 log (`/config/logs/openssh/current`). Such a file is read where it lies on the
//! host: the container path is resolved through the container's mounts (a bind mount's
//! source, a named volume's mountpoint), taking the mount with the longest destination
//! that holds the path. A path on no mount is in the container's own layer, which is not
//! read; it is reported once with what to do.
//!
//! What lies under a mount is the container's to change, and it may plant a symbolic
//! link to the host's `/etc/shadow`, or a device node. So a file is opened without
//! following a link at its last component and without blocking (a FIFO cannot hang the
//! reader); it must be a regular file; and the path the opened file really has (read
//! back from `/proc/self/fd`) must lie under the mount's source. A linked directory that
//! leads out is thereby refused after the open, which no swap of links can race.
//!
//! Each file is followed like `tail -F`, by polling every [`POLL_EVERY`]: a `stat` per
//! file and a directory listing per pattern with `*`, per poll and container (6 µs for
//! an idle file, 47 µs for a pattern over five, in a debug build): simpler than keeping
//! inotify watches in step with rotation, for a cost of well under 0.1% of a core. A rotated file (another inode under the name) is read to its end, then its
//! successor from the start; a truncated one (shorter than what was read) from the start;
//! a file that appears later from the start; the first time a container is seen its files
//! are read from their end. [`Follower`] does this on plain files, with no Docker;
//! [`FileFollow`] runs followers for a container and sends their lines on.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::MountPoint;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::cursor::{FileCursor, Mark};
use super::status::{lock, FileTrack, Tracker};
use super::stream::{admit_rate, StreamSettings};
use super::{LogLine, Stream};
use crate::lines::{LineSplitter, Piece};

/// The label that names a container's log files: `PATH[,PATH]`, container paths, with
/// `*` allowed in the file name (`/data/logs/proxy-host-*_access.log`).
pub const LOGFILE_LABEL: &str = "security-monitor.logfile";

/// How often each container's files are looked at.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// At most this much of one file is read per poll; more waiting is read at once after.
const READ_BUDGET: usize = 256 * 1024;
const CHUNK: usize = 64 * 1024;

/// The files the profile of a container names, from its name, image reference and
/// labels (the config's choice of profile included: see `select::container_profile`).
#[derive(Clone)]
pub struct ProfileFiles(std::sync::Arc<FilesOf>);

/// (name, image, labels) to the files of the container's profile.
type FilesOf = dyn Fn(&str, &str, &HashMap<String, String>) -> Vec<String> + Send + Sync;

impl ProfileFiles {
    pub fn new(
        f: impl Fn(&str, &str, &HashMap<String, String>) -> Vec<String> + Send + Sync + 'static,
    ) -> ProfileFiles {
        ProfileFiles(std::sync::Arc::new(f))
    }

    /// No profile: no files.
    pub fn none() -> ProfileFiles {
        ProfileFiles::new(|_, _, _| Vec::new())
    }

    /// The files of container `name` running `image` with `labels`.
    pub fn of(&self, name: &str, image: &str, labels: &HashMap<String, String>) -> Vec<String> {
        (self.0)(name, image, labels)
    }
}

impl std::fmt::Debug for ProfileFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProfileFiles(..)")
    }
}

/// The files to read for a container: its profile's, then its label's, each once.
pub fn wanted(profile: Vec<String>, labels: &HashMap<String, String>) -> Vec<String> {
    let mut out = profile;
    let from_label = labels.get(LOGFILE_LABEL).map(String::as_str).unwrap_or("");
    for p in from_label
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !out.iter().any(|o| o == p) {
            out.push(p.to_string());
        }
    }
    out
}

/// One mount of a container whose source is on the host: a bind mount or a named volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Where it is inside the container.
    pub destination: String,
    /// Where it is on the host (a volume's mountpoint, for a named volume).
    pub source: PathBuf,
    /// `bind` or `volume`.
    pub kind: String,
}

/// The mounts of an inspected container that can be read from the host.
pub fn mounts_from(points: &[MountPoint]) -> Vec<Mount> {
    points
        .iter()
        .filter_map(|m| {
            let kind = m.typ.clone().unwrap_or_default();
            let source = m.source.as_deref().filter(|s| !s.is_empty())?;
            let destination = m.destination.as_deref().filter(|d| d.starts_with('/'))?;
            (kind == "bind" || kind == "volume").then(|| Mount {
                destination: destination.to_string(),
                source: PathBuf::from(source),
                kind,
            })
        })
        .collect()
}

/// Why a container's log file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: not an absolute path; give the path inside the container, from /")]
    NotAbsolute { path: String },
    #[error("{path}: `..` is not allowed; give the path without it")]
    DotDot { path: String },
    #[error("{path}: `*` is allowed only in the file name, not in a directory")]
    GlobInDirectory { path: String },
    #[error(
        "{path}: names a directory; name the log file in it (a `*` in the name matches several)"
    )]
    NotAFile { path: String },
    #[error("{path} is on no mount of the container, so it cannot be read from the host; mount its directory as a volume or bind mount (docker run -v NAME:{dir})")]
    NotMounted { path: String, dir: String },
    #[error("{path}: the mount's source {} cannot be opened here ({error}); security-monitor must run on the Docker host, with access to Docker's volumes", mount_source.display())]
    Source {
        path: String,
        mount_source: PathBuf,
        error: io::Error,
    },
    #[error("{path}: a symbolic link, which is not followed (a container could point it at any file of the host); have the application log to a regular file")]
    Symlink { path: String },
    #[error("{path}: leads out of its mount (to {}) through a symbolic link; refused", real.display())]
    Escapes { path: String, real: PathBuf },
    #[error("{path}: not a regular file; refused")]
    NotRegular { path: String },
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
}

/// A container path (or pattern) resolved to where it lies on the host.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The path as given inside the container; a pattern if its name has `*`.
    pub path: String,
    /// The container directory that holds it, without a trailing `/`.
    container_dir: String,
    /// The file name on the host, `*`s and all.
    name: String,
    /// The host directory that holds it.
    pub dir: PathBuf,
    /// The mount's source, with every link resolved: what is read must lie under it.
    pub root: PathBuf,
    /// The mount is the file itself (`-v /host/app.log:/var/log/app.log`).
    file_mount: bool,
}

impl Resolved {
    /// The container path of file `name` in [`Resolved::dir`].
    fn container_path(&self, name: &str) -> String {
        if self.file_mount {
            self.path.clone()
        } else {
            format!("{}/{name}", self.container_dir)
        }
    }
}

/// The parts of an absolute container path, `.` left out; `..` refused.
fn components(path: &str) -> Result<Vec<&str>, FileError> {
    if !path.starts_with('/') {
        return Err(FileError::NotAbsolute { path: path.into() });
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(FileError::DotDot { path: path.into() });
    }
    Ok(parts)
}

/// Resolves container path `path` through `mounts`: the mount with the longest
/// destination holding it (compared by whole path components), its source joined with
/// the rest of the path. The source must exist here (it is resolved to its real path,
/// the bound every file read must stay within).
pub fn resolve(mounts: &[Mount], path: &str) -> Result<Resolved, FileError> {
    let parts = components(path)?;
    let Some((name, dirs)) = parts.split_last().filter(|_| !path.ends_with('/')) else {
        return Err(FileError::NotAFile { path: path.into() });
    };
    if dirs.iter().any(|d| d.contains('*')) {
        return Err(FileError::GlobInDirectory { path: path.into() });
    }
    let container_dir = format!("/{}", dirs.join("/"));
    let best = mounts
        .iter()
        .filter_map(|m| {
            let dest = components(&m.destination).ok()?;
            parts.starts_with(&dest).then_some((dest.len(), m))
        })
        .max_by_key(|(len, _)| *len);
    let Some((len, mount)) = best else {
        return Err(FileError::NotMounted {
            path: path.into(),
            dir: container_dir,
        });
    };
    let root = fs::canonicalize(&mount.source).map_err(|error| FileError::Source {
        path: path.into(),
        mount_source: mount.source.clone(),
        error,
    })?;
    if len == parts.len() {
        // The mount is the file: read its source, which the operator chose.
        let name = root
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into();
        return Ok(Resolved {
            path: path.into(),
            container_dir,
            name,
            dir: root.parent().unwrap_or(Path::new("/")).to_path_buf(),
            root,
            file_mount: true,
        });
    }
    let mut dir = mount.source.clone();
    dir.extend(&parts[len..parts.len() - 1]);
    Ok(Resolved {
        path: path.into(),
        container_dir: container_dir.trim_end_matches('/').to_string(),
        name: (*name).to_string(),
        dir,
        root,
        file_mount: false,
    })
}

/// Whether file name `name` matches `pattern`, where `*` stands for any run of bytes.
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    };
    for p in parts {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Opens host file `host` for reading, refusing what a container could use to make the
/// daemon read something else: a symbolic link as the file (`O_NOFOLLOW`), a FIFO or a
/// device (opened without blocking, then refused), and a file whose real path is not
/// under `root` (reached through a linked directory).
pub fn open_within(host: &Path, root: &Path, shown: &str) -> Result<File, FileError> {
    let io_error = |error: io::Error| FileError::Io {
        path: shown.into(),
        error,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(host)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => FileError::Symlink { path: shown.into() },
            _ => io_error(e),
        })?;
    if !file.metadata().map_err(io_error)?.is_file() {
        return Err(FileError::NotRegular { path: shown.into() });
    }
    let real = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io_error)?;
    if !real.starts_with(root) {
        return Err(FileError::Escapes {
            path: shown.into(),
            real,
        });
    }
    Ok(file)
}

/// One line read from a log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLine {
    /// The file's path inside the container.
    pub path: Arc<str>,
    pub bytes: Vec<u8>,
    pub truncated: bool,
    /// The file and the offset just after this line.
    pub at: FileCursor,
}

/// What one [`Follower::poll`] found.
#[derive(Debug, Default)]
pub struct Polled {
    /// Files opened, and where reading starts (before their lines).
    pub opened: Vec<(Arc<str>, FileCursor)>,
    pub lines: Vec<FileLine>,
    /// Files gone from their directory and read to their end (after their lines).
    pub gone: Vec<Arc<str>>,
    /// Problems, by path: new ones (`Some`), and ones that went away (`None`).
    pub problems: Vec<(String, Option<String>)>,
    /// More is waiting than one poll reads: poll again at once.
    pub more: bool,
}

/// An open log file.
struct Open {
    path: Arc<str>,
    file: File,
    inode: u64,
    /// Where the next read starts.
    offset: u64,
    splitter: LineSplitter,
}

/// Follows one container path (or pattern) on the host, like `tail -F`, with no Docker.
pub struct Follower {
    spec: Resolved,
    open: BTreeMap<String, Open>,
    /// Files that were rotated away or vanished, read to their end before anything
    /// newer under their name.
    draining: BTreeMap<String, Open>,
    /// Where to start in files not yet open, by container path (the cursors).
    start: BTreeMap<String, FileCursor>,
    /// Whether files found at the first poll (with no cursor) start at their end.
    from_end: bool,
    max_line_bytes: usize,
    /// The problems last reported, by path.
    problems: BTreeMap<String, String>,
    buf: Vec<u8>,
}

impl Follower {
    /// `start`: cursors by container path; `from_end`: whether files found at the first
    /// poll with no cursor are read from their end (the first time a container is seen).
    pub fn new(
        spec: Resolved,
        start: BTreeMap<String, FileCursor>,
        from_end: bool,
        max_line_bytes: usize,
    ) -> Follower {
        Follower {
            spec,
            open: BTreeMap::new(),
            draining: BTreeMap::new(),
            start,
            from_end,
            max_line_bytes,
            problems: BTreeMap::new(),
            buf: Vec::new(),
        }
    }

    pub fn spec(&self) -> &Resolved {
        &self.spec
    }

    /// Looks at the files once and reads what was appended.
    pub fn poll(&mut self) -> Polled {
        let mut p = Polled::default();
        let names = match self.names() {
            Ok(n) => {
                self.set_problem(&self.spec.path.clone(), None, &mut p);
                n
            }
            Err(e) => {
                self.set_problem(&self.spec.path.clone(), Some(e.to_string()), &mut p);
                Vec::new()
            }
        };
        let vanished: Vec<String> = self
            .open
            .keys()
            .filter(|n| !names.contains(n))
            .cloned()
            .collect();
        for n in vanished {
            if let Some(o) = self.open.remove(&n) {
                self.draining.insert(n, o);
            }
        }
        let draining: Vec<String> = self.draining.keys().cloned().collect();
        for n in draining {
            if self.drain(&n, &mut p) && !names.contains(&n) {
                self.gone(&n, &mut p);
            }
        }
        for name in &names {
            self.look(name, &mut p);
        }
        self.from_end = false;
        p
    }

    /// The file names in the directory that the spec names.
    fn names(&self) -> Result<Vec<String>, FileError> {
        let io_error = |error| FileError::Io {
            path: self.spec.path.clone(),
            error,
        };
        if !self.spec.name.contains('*') {
            return match fs::symlink_metadata(self.spec.dir.join(&self.spec.name)) {
                Ok(_) => Ok(vec![self.spec.name.clone()]),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(io_error(e)),
            };
        }
        let entries = match fs::read_dir(&self.spec.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| matches(&self.spec.name, n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Reads file `name` of the directory: what was appended, or, if it was rotated or
    /// truncated, the old one to its end and then the new from its start.
    fn look(&mut self, name: &str, p: &mut Polled) {
        if self.draining.contains_key(name) {
            return;
        }
        let cpath = self.spec.container_path(name);
        let host = self.spec.dir.join(name);
        let meta = match fs::symlink_metadata(&host) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(error) => {
                let e = FileError::Io {
                    path: cpath.clone(),
                    error,
                };
                return self.set_problem(&cpath, Some(e.to_string()), p);
            }
        };
        let refused = if meta.file_type().is_symlink() {
            Some(FileError::Symlink {
                path: cpath.clone(),
            })
        } else if !meta.is_file() {
            Some(FileError::NotRegular {
                path: cpath.clone(),
            })
        } else {
            None
        };
        if let Some(e) = refused {
            if let Some(o) = self.open.remove(name) {
                self.draining.insert(name.to_string(), o);
                self.drain(name, p);
            }
            return self.set_problem(&cpath, Some(e.to_string()), p);
        }
        match self.open.get_mut(name) {
            Some(o) if o.inode == meta.ino() => {
                if meta.len() < o.offset {
                    // Truncated (copytruncate): what is there now is new.
                    if o.file.seek(SeekFrom::Start(0)).is_ok() {
                        o.offset = 0;
                        o.splitter = LineSplitter::new(self.max_line_bytes);
                    }
                }
            }
            Some(_) => {
                // Another file under the name: finish the old one first.
                if let Some(o) = self.open.remove(name) {
                    self.draining.insert(name.to_string(), o);
                }
                if !self.drain(name, p) {
                    return;
                }
                self.start.remove(&cpath);
                self.open_file(name, &host, cpath, p);
            }
            None => self.open_file(name, &host, cpath, p),
        }
        let Some(o) = self.open.get_mut(name) else {
            return;
        };
        match read_some(o, &mut self.buf, &mut p.lines) {
            Ok(more) => p.more |= more,
            Err(error) => {
                let path = o.path.to_string();
                let e = FileError::Io {
                    path: path.clone(),
                    error,
                };
                self.open.remove(name);
                self.set_problem(&path, Some(e.to_string()), p);
            }
        }
    }

    /// Opens file `name` and says where reading starts: at the cursor if it is this
    /// file, at the end the first time, else at the start.
    fn open_file(&mut self, name: &str, host: &Path, cpath: String, p: &mut Polled) {
        let file = open_within(host, &self.spec.root, &cpath).and_then(|mut f| {
            let meta = f.metadata().map_err(|error| FileError::Io {
                path: cpath.clone(),
                error,
            })?;
            let offset = match self.start.remove(&cpath) {
                Some(c) if c.inode == meta.ino() && c.offset <= meta.len() => c.offset,
                // Another file, or shorter: rotated or truncated while not read.
                Some(_) => 0,
                None if self.from_end => meta.len(),
                None => 0,
            };
            f.seek(SeekFrom::Start(offset))
                .map_err(|error| FileError::Io {
                    path: cpath.clone(),
                    error,
                })?;
            Ok((f, meta.ino(), offset))
        });
        match file {
            Ok((file, inode, offset)) => {
                self.set_problem(&cpath, None, p);
                let path: Arc<str> = cpath.into();
                p.opened.push((path.clone(), FileCursor { inode, offset }));
                self.open.insert(
                    name.to_string(),
                    Open {
                        path,
                        file,
                        inode,
                        offset,
                        splitter: LineSplitter::new(self.max_line_bytes),
                    },
                );
            }
            Err(e) => self.set_problem(&cpath, Some(e.to_string()), p),
        }
    }

    /// Reads a rotated or vanished file on toward its end; true once it is finished (its
    /// last line handed on even without a newline) and closed.
    fn drain(&mut self, name: &str, p: &mut Polled) -> bool {
        let Some(o) = self.draining.get_mut(name) else {
            return true;
        };
        match read_some(o, &mut self.buf, &mut p.lines) {
            Ok(true) => {
                p.more = true;
                return false;
            }
            Ok(false) => {
                let at = FileCursor {
                    inode: o.inode,
                    offset: o.offset,
                };
                let path = o.path.clone();
                o.splitter
                    .finish(&mut |piece| push_piece(piece, &path, at, &mut p.lines));
            }
            Err(_) => {}
        }
        self.draining.remove(name);
        true
    }

    fn gone(&mut self, name: &str, p: &mut Polled) {
        let cpath = self.spec.container_path(name);
        self.set_problem(&cpath, None, p);
        p.gone.push(cpath.into());
    }

    /// Reports a problem with `path` when it is new, or that it went away (`None`).
    fn set_problem(&mut self, path: &str, problem: Option<String>, p: &mut Polled) {
        match problem {
            Some(text) => {
                if self.problems.get(path) != Some(&text) {
                    self.problems.insert(path.to_string(), text.clone());
                    p.problems.push((path.to_string(), Some(text)));
                }
            }
            None => {
                if self.problems.remove(path).is_some() {
                    p.problems.push((path.to_string(), None));
                }
            }
        }
    }
}

/// Reads up to [`READ_BUDGET`] bytes of `o` and cuts them into lines; true if it stopped
/// before the end of the file.
fn read_some(o: &mut Open, buf: &mut Vec<u8>, out: &mut Vec<FileLine>) -> io::Result<bool> {
    buf.resize(CHUNK, 0);
    let mut total = 0;
    while total < READ_BUDGET {
        let n = match o.file.read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n;
        feed(o, &buf[..n], out);
    }
    Ok(true)
}

/// Cuts `chunk` (read at `o.offset`) into lines, each with the offset just after it: the
/// chunk goes to the splitter one line at a time so every line knows where it ends.
fn feed(o: &mut Open, chunk: &[u8], out: &mut Vec<FileLine>) {
    let mut start = 0;
    let base = o.offset;
    let path = o.path.clone();
    let inode = o.inode;
    for i in memchr::memchr_iter(b'\n', chunk) {
        let at = FileCursor {
            inode,
            offset: base + i as u64 + 1,
        };
        o.splitter.push(&chunk[start..=i], &mut |piece| {
            push_piece(piece, &path, at, out)
        });
        start = i + 1;
    }
    if start < chunk.len() {
        // A line not ended yet: held (or, past the bound, cut and handed on now).
        let at = FileCursor {
            inode,
            offset: base + chunk.len() as u64,
        };
        o.splitter.push(&chunk[start..], &mut |piece| {
            push_piece(piece, &path, at, out)
        });
    }
    o.offset = base + chunk.len() as u64;
}

fn push_piece(piece: Piece<'_>, path: &Arc<str>, at: FileCursor, out: &mut Vec<FileLine>) {
    let (bytes, truncated) = match piece {
        Piece::Line(l) | Piece::Tail(l) => (l, false),
        Piece::Cut(l) => (l, true),
        Piece::CutEnd => return,
    };
    out.push(FileLine {
        path: path.clone(),
        bytes: bytes.to_vec(),
        truncated,
        at,
    });
}

/// Reads one container's log files and sends their lines on, until told to finish (the
/// container stopped: a last look, then it ends) or aborted (no longer followed).
pub(crate) struct FileFollow {
    pub tracker: Arc<Tracker>,
    pub paths: Vec<String>,
    pub settings: Arc<StreamSettings>,
    pub lines: mpsc::Sender<LogLine>,
    pub finish: watch::Receiver<bool>,
    /// Told the container id when this ends by itself.
    pub ended: mpsc::UnboundedSender<String>,
}

/// The receiver of the lines is gone.
struct Closed;

impl FileFollow {
    /// Polls until told to finish (then once more) or until the lines' receiver is gone.
    /// Only a reader that ended on being told to finish says so through `ended` (the
    /// container may have started again meanwhile: the watcher then starts another); one
    /// with no readable path, or whose poll panicked, ends quietly and is made again at
    /// the container's next start, not in a loop.
    pub async fn run(mut self) {
        let mut followers = self.followers();
        if followers.is_empty() {
            return;
        }
        loop {
            let finishing = *self.finish.borrow_and_update();
            let polled = tokio::task::spawn_blocking(move || {
                let polled: Vec<Polled> = followers.iter_mut().map(Follower::poll).collect();
                (followers, polled)
            })
            .await;
            let polled = match polled {
                Ok((back, polled)) => {
                    followers = back;
                    polled
                }
                Err(e) => {
                    let name = self.tracker.name();
                    warn!(container = %name, "reading the log files of container {name} failed: {e}");
                    return;
                }
            };
            let more = polled.iter().any(|p| p.more);
            if self.deliver(polled).await.is_err() {
                return;
            }
            if more {
                continue;
            }
            if finishing {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                changed = self.finish.changed() => if changed.is_err() { return },
            }
        }
        let _ = self.ended.send(self.tracker.id.clone());
    }

    /// A follower per path that resolves through the container's mounts; the others
    /// are reported.
    fn followers(&self) -> Vec<Follower> {
        let mounts = lock(&self.tracker.mounts).clone();
        let start = self.tracker.file_read_cursors();
        // The first time this container is seen: its files are read from their end.
        let from_end = start.is_empty();
        let name = self.tracker.name();
        let mut out = Vec::new();
        for path in &self.paths {
            match resolve(&mounts, path) {
                Ok(spec) => {
                    self.problem(path, None);
                    info!(container = %name, "reading {path} of container {name} from {}", spec.dir.join(&spec.name).display());
                    out.push(Follower::new(
                        spec,
                        start.clone(),
                        from_end,
                        self.settings.max_line_bytes,
                    ));
                }
                Err(e) => self.problem(path, Some(e.to_string())),
            }
        }
        out
    }

    /// Warns about a new problem (once per container and text), or clears one.
    fn problem(&self, path: &str, problem: Option<String>) {
        match problem {
            Some(text) => {
                if self.tracker.file_problem(path, &text) {
                    let name = self.tracker.name();
                    warn!(container = %name, "container {name}: log file {text}");
                }
            }
            None => {
                lock(&self.tracker.file_problems).remove(path);
            }
        }
    }

    async fn deliver(&self, polled: Vec<Polled>) -> Result<(), Closed> {
        let name = self.tracker.name();
        let limit = self.settings.max_lines_per_second;
        for p in polled {
            for (path, problem) in p.problems {
                self.problem(&path, problem);
            }
            for (path, at) in &p.opened {
                let track = self.tracker.file(path);
                *lock(&track.read) = *at;
                let mut judged = lock(&track.judged);
                if judged.inode == 0 {
                    *judged = *at;
                }
            }
            let mut track: Option<(Arc<str>, Arc<FileTrack>)> = None;
            for l in p.lines {
                let t = match &track {
                    Some((path, t)) if Arc::ptr_eq(path, &l.path) => t.clone(),
                    _ => {
                        let t = self.tracker.file(&l.path);
                        track = Some((l.path.clone(), t.clone()));
                        t
                    }
                };
                let now = crate::clock::unix_now_ns();
                if !admit_rate(&self.tracker, &name, limit, now) {
                    *lock(&t.read) = l.at;
                    continue;
                }
                if l.truncated {
                    self.tracker.lines_truncated.fetch_add(1, Ordering::Relaxed);
                }
                let line = LogLine {
                    container_id: self.tracker.id.clone(),
                    container: name.clone(),
                    stream: Stream::File,
                    docker_ts_ns: now,
                    bytes: l.bytes,
                    truncated: l.truncated,
                    file: Some(l.path),
                    mark: Mark::file(l.at, t.judged.clone()),
                };
                self.lines.send(line).await.map_err(|_| Closed)?;
                self.tracker.lines_read.fetch_add(1, Ordering::Relaxed);
                t.lines_read.fetch_add(1, Ordering::Relaxed);
                *lock(&t.read) = l.at;
            }
            for path in &p.gone {
                lock(&self.tracker.files).remove(&**path);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn mount(dest: &str, source: &Path) -> Mount {
        Mount {
            destination: dest.into(),
            source: source.into(),
            kind: "bind".into(),
        }
    }

    #[test]
    fn the_longest_mount_by_whole_components_wins() {
        let d = tempfile::tempdir().unwrap();
        for sub in ["data", "logs", "datalogs"] {
            fs::create_dir(d.path().join(sub)).unwrap();
        }
        let mounts = vec![
            mount("/data", &d.path().join("data")),
            mount("/data/logs/", &d.path().join("logs")),
            mount("/data/log", &d.path().join("datalogs")),
        ];
        let r = resolve(&mounts, "/data/logs/proxy-host-*_access.log").unwrap();
        assert_eq!(r.dir, d.path().join("logs"));
        assert_eq!(
            r.container_path("proxy-host-1_access.log"),
            "/data/logs/proxy-host-1_access.log"
        );
        // `/data/log` is no prefix of `/data/logs/…`; `/data` is.
        let r = resolve(&mounts, "/data/./nginx/error.log").unwrap();
        assert_eq!(r.dir, d.path().join("data").join("nginx"));
        assert_eq!(r.container_path("error.log"), "/data/nginx/error.log");
        let r = resolve(&mounts, "/data/logx/a.log").unwrap();
        assert_eq!(r.dir, d.path().join("data").join("logx"));
    }

    #[test]
    fn bad_paths_and_unmounted_ones_are_refused_with_what_to_do() {
        let d = tempfile::tempdir().unwrap();
        let mounts = vec![mount("/config", d.path())];
        let err = |p: &str| resolve(&mounts, p).unwrap_err().to_string();
        assert!(err("/config/../etc/shadow").contains("`..` is not allowed"));
        assert!(err("/config/logs/../../etc/x").contains("`..`"));
        assert!(err("config/x.log").contains("not an absolute path"));
        assert!(err("/config/*/current").contains("only in the file name"));
        assert!(err("/config/logs/").contains("names a directory"));
        let e = err("/var/log/nginx/access.log");
        assert!(e.contains("on no mount"), "{e}");
        assert!(e.contains("-v NAME:/var/log/nginx"), "{e}");
        let gone = vec![mount("/config", &d.path().join("missing"))];
        let e = resolve(&gone, "/config/x.log").unwrap_err().to_string();
        assert!(e.contains("cannot be opened here"), "{e}");
    }

    #[test]
    fn a_file_mount_reads_its_source() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("host.log");
        fs::write(&f, b"").unwrap();
        let r = resolve(&[mount("/var/log/app.log", &f)], "/var/log/app.log").unwrap();
        assert_eq!(r.dir.join(&r.name), fs::canonicalize(&f).unwrap());
        assert_eq!(r.container_path("host.log"), "/var/log/app.log");
    }

    #[test]
    fn patterns_match_with_stars_only_in_the_name() {
        assert!(matches(
            "proxy-host-*_access.log",
            "proxy-host-12_access.log"
        ));
        assert!(!matches(
            "proxy-host-*_access.log",
            "proxy-host-12_error.log"
        ));
        assert!(!matches(
            "proxy-host-*_access.log",
            "proxy-host-1_access.log.1"
        ));
        assert!(matches("*", "x"));
        assert!(matches("a*b*c", "abbc"));
        assert!(!matches("ab*ba", "aba"));
        assert!(matches("current", "current"));
        assert!(!matches("current", "currentx"));
    }

    #[test]
    fn links_out_of_the_mount_devices_and_fifos_are_refused() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let volume = d.path().join("volume");
        let outside = d.path().join("host-etc");
        fs::create_dir_all(volume.join("logs")).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("shadow"), b"root:secret\n").unwrap();
        // A link as the file, and a linked directory that leads out.
        symlink(outside.join("shadow"), volume.join("logs/access.log")).unwrap();
        symlink(&outside, volume.join("evil")).unwrap();
        // A link inside the mount to a file inside it is fine to pass through.
        fs::create_dir(volume.join("real")).unwrap();
        fs::write(volume.join("real/app.log"), b"").unwrap();
        symlink(volume.join("real"), volume.join("alias")).unwrap();
        let mounts = vec![mount("/data", &volume)];
        let open = |p: &str| {
            let r = resolve(&mounts, p).unwrap();
            open_within(&r.dir.join(&r.name), &r.root, p)
        };
        let e = open("/data/logs/access.log").unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        let e = open("/data/evil/shadow").unwrap_err().to_string();
        assert!(e.contains("leads out of its mount"), "{e}");
        assert!(open("/data/alias/app.log").is_ok());
        let fifo = volume.join("logs/fifo.log");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = open("/data/logs/fifo.log").unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        // And the follower reports the planted link once, reading nothing from it.
        let r = resolve(&mounts, "/data/logs/*.log").unwrap();
        let mut f = Follower::new(r, BTreeMap::new(), false, 1024);
        let p = f.poll();
        assert!(p.lines.is_empty());
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert!(f.poll().problems.is_empty(), "reported once");
    }

    /// A follower on `dir/name`, as a container mounting `dir` at `/logs` would have.
    fn follower(dir: &Path, name: &str, from_end: bool) -> Follower {
        let r = resolve(&[mount("/logs", dir)], &format!("/logs/{name}")).unwrap();
        Follower::new(r, BTreeMap::new(), from_end, 16)
    }

    fn texts(p: &Polled) -> Vec<String> {
        p.lines
            .iter()
            .map(|l| String::from_utf8_lossy(&l.bytes).into_owned())
            .collect()
    }

    fn append(path: &Path, text: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn the_first_look_starts_at_the_end_then_appended_lines_come() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        append(&log, "old 1\nold 2\n");
        let mut f = follower(d.path(), "app.log", true);
        let p = f.poll();
        assert!(p.lines.is_empty());
        assert_eq!(p.opened.len(), 1);
        assert_eq!(p.opened[0].1.offset, 12);
        append(&log, "new 1\nnew ");
        assert_eq!(texts(&f.poll()), vec!["new 1"]);
        append(&log, "2\n");
        let p = f.poll();
        assert_eq!(texts(&p), vec!["new 2"]);
        assert_eq!(p.lines[0].at.offset, 24);
        assert_eq!(p.lines[0].at.inode, fs::metadata(&log).unwrap().ino());
        // A line over the bound is cut and counted as such; the next is whole.
        append(&log, &format!("{}\nafter\n", "x".repeat(40)));
        let p = f.poll();
        assert_eq!(texts(&p), vec!["x".repeat(16), "after".into()]);
        assert!(p.lines[0].truncated && !p.lines[1].truncated);
    }

    #[test]
    fn rotation_finishes_the_old_file_then_reads_the_new_from_its_start() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("current");
        append(&log, "");
        let mut f = follower(d.path(), "current", true);
        f.poll();
        append(&log, "before 1\n");
        // Written to the old file after it was moved (the writer has not reopened yet),
        // and its last line has no newline.
        let mut old = OpenOptions::new().append(true).open(&log).unwrap();
        fs::rename(&log, d.path().join("@4000.s")).unwrap();
        old.write_all(b"before 2\nlast words").unwrap();
        append(&log, "after 1\n");
        let p = f.poll();
        assert_eq!(
            texts(&p),
            vec!["before 1", "before 2", "last words", "after 1"]
        );
        assert!(p.gone.is_empty());
        assert_eq!(p.lines[3].at.inode, fs::metadata(&log).unwrap().ino());
        append(&log, "after 2\n");
        assert_eq!(texts(&f.poll()), vec!["after 2"]);
    }

    #[test]
    fn truncation_reads_from_the_start_and_a_vanished_file_is_finished() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        append(&log, "");
        let mut f = follower(d.path(), "app.log", true);
        f.poll();
        append(&log, "one long line\n");
        assert_eq!(texts(&f.poll()), vec!["one long line"]);
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        append(&log, "fresh\n");
        assert_eq!(texts(&f.poll()), vec!["fresh"]);
        let mut w = OpenOptions::new().append(true).open(&log).unwrap();
        fs::remove_file(&log).unwrap();
        w.write_all(b"final\n").unwrap();
        let p = f.poll();
        assert_eq!(texts(&p), vec!["final"]);
        assert_eq!(&*p.gone[0], "/logs/app.log");
        // Back again: a new file, read from its start.
        append(&log, "reborn\n");
        assert_eq!(texts(&f.poll()), vec!["reborn"]);
    }

    #[test]
    fn files_matching_a_pattern_later_are_read_from_their_start() {
        let d = tempfile::tempdir().unwrap();
        append(&d.path().join("proxy-host-1_access.log"), "seen before\n");
        append(&d.path().join("proxy-host-1_error.log"), "not matched\n");
        let mut f = follower(d.path(), "proxy-host-*_access.log", true);
        assert!(f.poll().lines.is_empty());
        append(&d.path().join("proxy-host-2_access.log"), "host 2\n");
        append(&d.path().join("proxy-host-1_access.log"), "host 1\n");
        let p = f.poll();
        assert_eq!(texts(&p), vec!["host 1", "host 2"]);
        let paths: Vec<&str> = p.lines.iter().map(|l| &*l.path).collect();
        assert_eq!(
            paths,
            vec![
                "/logs/proxy-host-1_access.log",
                "/logs/proxy-host-2_access.log"
            ]
        );
        // And the directory's absence is no error: the files simply are not there yet.
        let mut none = follower(d.path(), "later/*.log", true);
        let p = none.poll();
        assert!(
            p.lines.is_empty() && p.problems.is_empty(),
            "{:?}",
            p.problems
        );
    }

    #[test]
    fn a_cursor_resumes_its_file_and_a_rotated_one_is_read_whole() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        append(&log, "judged\nnot judged\n");
        let ino = fs::metadata(&log).unwrap().ino();
        let spec = resolve(&[mount("/logs", d.path())], "/logs/app.log").unwrap();
        let at = |offset| {
            BTreeMap::from([(
                "/logs/app.log".to_string(),
                FileCursor { inode: ino, offset },
            )])
        };
        let mut f = Follower::new(spec.clone(), at(7), true, 1024);
        assert_eq!(texts(&f.poll()), vec!["not judged"]);
        // The file was replaced while the daemon was down: the new one is read whole.
        let other = FileCursor {
            inode: ino + 1,
            offset: 7,
        };
        let start = BTreeMap::from([("/logs/app.log".to_string(), other)]);
        let mut f = Follower::new(spec.clone(), start, true, 1024);
        assert_eq!(texts(&f.poll()), vec!["judged", "not judged"]);
        // A cursor past the end: the file was truncated meanwhile.
        let mut f = Follower::new(spec, at(1000), true, 1024);
        assert_eq!(f.poll().lines.len(), 2);
    }

    #[test]
    fn a_big_backlog_is_read_in_bounded_polls() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("app.log");
        append(&log, "");
        let mut f = follower(d.path(), "app.log", true);
        f.poll();
        let line = "0123456789abcde\n";
        append(&log, &line.repeat(READ_BUDGET / line.len() * 3));
        let mut polls = 0;
        let mut lines = 0;
        loop {
            let p = f.poll();
            polls += 1;
            lines += p.lines.len();
            if !p.more {
                break;
            }
        }
        assert_eq!(lines, READ_BUDGET / line.len() * 3);
        assert!(polls >= 3, "{polls}");
    }

    #[test]
    fn the_label_and_the_profile_name_the_files_once_each() {
        let labels = HashMap::from([(
            LOGFILE_LABEL.to_string(),
            " /data/logs/a.log, ,/config/logs/openssh/current,/data/logs/a.log".to_string(),
        )]);
        assert_eq!(
            wanted(vec!["/config/logs/openssh/current".into()], &labels),
            vec!["/config/logs/openssh/current", "/data/logs/a.log"]
        );
        assert!(wanted(
            ProfileFiles::none().of("c", "x", &HashMap::new()),
            &HashMap::new()
        )
        .is_empty());
    }
}
