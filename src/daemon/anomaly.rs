//! The endpoint baselines on disk: `anomaly_model.json` in the state directory, loaded
//! when the pipeline starts (or the mode is switched on by a reload), saved every
//! `anomaly.save_interval` while it changes, and at a stop.
//!
//! A file that cannot be used never stops the daemon: it is moved aside as
//! `anomaly_model.json.corrupt`, said once as a warning, and the model starts empty.
//! A save takes a copy of the model on the pipeline thread (1 to 6 ms for a thousand
//! endpoints of six parameters, optimised) and turns it into JSON and writes it (temp
//! file, fsync, rename) on a thread of its own, so the lines do not wait for the disk;
//! the save at a stop is written before the pipeline thread ends.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::detect::anomaly::{Model, ModelFileError, Settings};
use crate::detect::behaviour::Behaviour;

/// The model's file name in `state.dir`.
pub const MODEL_FILE: &str = "anomaly_model.json";

/// The model's path for a config.
pub fn model_path(cfg: &Config) -> PathBuf {
    cfg.state.dir.join(MODEL_FILE)
}

/// What reading the model file gave.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet: a first start, or the baselines were never on.
    Missing,
    Ok(Model),
    /// The file cannot be used, and why: it is moved aside.
    Bad(String),
}

/// What a read of `path` (its bytes, or the error reading it) means, with the config's
/// `settings`. Pure: the caller reads, and moves a bad file aside.
pub fn decode(path: &Path, read: io::Result<Vec<u8>>, settings: Settings) -> Loaded {
    let bytes = match read {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Bad(format!("cannot read {}: {e}", path.display())),
    };
    match Model::from_json(settings, &bytes) {
        Ok(m) => Loaded::Ok(m),
        Err(e @ ModelFileError::Json(_)) | Err(e @ ModelFileError::Invalid(_)) => {
            Loaded::Bad(format!("{} is damaged: {e}", path.display()))
        }
        Err(e) => Loaded::Bad(format!("{} cannot be used: {e}", path.display())),
    }
}

/// Where a bad model file is moved: beside it, `.corrupt` added.
pub fn aside_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".corrupt");
    path.with_file_name(name)
}

/// The model and the client behaviour for `cfg`, from the model file: the populations
/// it holds are taken back, so clients are judged against their source's others from
/// the first request after a restart.
pub fn start(cfg: &Config) -> (Model, Behaviour) {
    let mut model = load(cfg);
    let mut behaviour = Behaviour::new(Default::default());
    let populations = model.take_populations();
    let sources = populations.len();
    let clients = behaviour.restore(populations);
    if clients > 0 {
        tracing::info!(
            "client behaviour: took back the measures of {clients} client(s) of {sources} source(s) from the model file"
        );
    }
    (model, behaviour)
}

/// The model for `cfg` (its settings) from its file; an empty one when there is none
/// or it cannot be used (then moved aside, with a warning).
pub fn load(cfg: &Config) -> Model {
    let settings = cfg.anomaly.model;
    let path = model_path(cfg);
    let started = Instant::now();
    match decode(&path, crate::fsutil::read_nofollow(&path), settings) {
        Loaded::Missing => {
            tracing::info!(
                "endpoint baselines: no {} yet; learning from the traffic (an endpoint is judged once it has {} clean requests)",
                path.display(),
                settings.min_samples
            );
            Model::new(settings)
        }
        Loaded::Ok(m) => {
            let st = m.stats();
            tracing::info!(
                "endpoint baselines: loaded {} endpoint(s), {} request(s) learned, from {} in {} ms",
                st.endpoints,
                st.learned,
                path.display(),
                started.elapsed().as_millis()
            );
            m
        }
        Loaded::Bad(why) => {
            let aside = aside_path(&path);
            match std::fs::rename(&path, &aside) {
                Ok(()) => tracing::warn!(
                    "endpoint baselines: {why}; moved it to {} and starting with an empty model (it learns again from the traffic)",
                    aside.display()
                ),
                Err(e) => tracing::warn!(
                    "endpoint baselines: {why}; it could not be moved to {} either ({e}); starting with an empty model, and the next save replaces it",
                    aside.display()
                ),
            }
            Model::new(settings)
        }
    }
}

/// How long a container may be missing from the watcher's list before its baselines
/// go: a deploy that recreates a container (same name, new id) keeps them.
pub const PRUNE_GRACE: Duration = Duration::from_secs(600);

/// Containers whose baselines should go now: of `sources` (the model's), those not in
/// `followed` since more than `grace` before `now`. `missing` remembers since when each
/// has been missing (a name followed again is forgotten there). Pure: the caller gives
/// the time.
pub fn gone<'a>(
    missing: &mut std::collections::HashMap<String, Instant>,
    sources: impl Iterator<Item = &'a str>,
    followed: &std::collections::HashSet<String>,
    now: Instant,
    grace: Duration,
) -> Vec<String> {
    missing.retain(|name, _| !followed.contains(name));
    let mut out = Vec::new();
    for name in sources.filter(|n| !followed.contains(*n)) {
        let since = *missing.entry(name.to_string()).or_insert(now);
        if now.saturating_duration_since(since) > grace {
            out.push(name.to_string());
        }
    }
    for name in &out {
        missing.remove(name);
    }
    out
}

/// Saves the model now and then, off the pipeline thread.
pub struct Saver {
    path: PathBuf,
    interval: Duration,
    last: Instant,
    /// The model's and the client behaviour's generations when last saved (None: not
    /// saved by this process).
    saved: Option<(u64, u64)>,
    writer: Option<std::thread::JoinHandle<io::Result<usize>>>,
    /// Set after a failed write, so a full disk is said once, not every interval.
    failing: bool,
}

impl Saver {
    pub fn new(cfg: &Config) -> Saver {
        Saver {
            path: model_path(cfg),
            interval: Duration::from_secs(cfg.anomaly.save_interval),
            last: Instant::now(),
            saved: None,
            writer: None,
            failing: false,
        }
    }

    /// A reload's interval (the path cannot move: `state.dir` is refused at reload).
    pub fn set_interval(&mut self, secs: u64) {
        self.interval = Duration::from_secs(secs);
    }

    /// The model loaded from the file (and the populations restored from it) counts as
    /// saved.
    pub fn loaded(&mut self, model: &Model, behaviour: Option<&Behaviour>) {
        self.saved = Some(generations(model, behaviour));
    }

    /// Saves when the interval has passed and the model changed since the last save,
    /// unless the last write is still under way.
    pub fn tick(&mut self, model: &Model, behaviour: Option<&Behaviour>) {
        let now = generations(model, behaviour);
        if self.last.elapsed() < self.interval || self.saved == Some(now) {
            return;
        }
        if self.writer.as_ref().is_some_and(|w| !w.is_finished()) {
            return;
        }
        self.reap();
        self.last = Instant::now();
        self.saved = Some(now);
        let snapshot = snapshot(model, behaviour);
        let took = self.last.elapsed();
        let path = self.path.clone();
        let spawned = std::thread::Builder::new()
            .name("anomaly-save".into())
            .spawn(move || write(&path, &snapshot));
        match spawned {
            Ok(h) => {
                tracing::debug!(
                    "endpoint baselines: copied for saving in {} µs",
                    took.as_micros()
                );
                self.writer = Some(h);
            }
            Err(e) => self.result(Err(e)),
        }
    }

    /// Saves now and waits for the write (at a stop).
    pub fn save_now(&mut self, model: &Model, behaviour: Option<&Behaviour>) {
        self.reap();
        let now = generations(model, behaviour);
        if self.saved == Some(now) {
            return;
        }
        let started = Instant::now();
        let r = write(&self.path, &snapshot(model, behaviour));
        if let Ok(bytes) = &r {
            tracing::info!(
                "endpoint baselines: saved {} endpoint(s) to {} ({bytes} bytes, {} ms)",
                model.stats().endpoints,
                self.path.display(),
                started.elapsed().as_millis()
            );
        }
        self.saved = Some(now);
        self.result(r.map(|_| 0));
    }

    /// Collects the result of the last write, if it has ended.
    fn reap(&mut self) {
        if let Some(w) = self.writer.take() {
            let r = w
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked")));
            self.result(r);
        }
    }

    fn result(&mut self, r: io::Result<usize>) {
        match r {
            Ok(_) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!("endpoint baselines: writing {} again", self.path.display());
                }
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!("endpoint baselines: cannot save the model: {e}; it is kept in memory and saved again at the next interval (is the disk full?)");
                }
                self.failing = true;
                // Try again at the next interval.
                self.saved = None;
            }
        }
    }
}

/// What is saved has moved on when either the model or the populations did.
fn generations(model: &Model, behaviour: Option<&Behaviour>) -> (u64, u64) {
    (
        model.generation(),
        behaviour.map_or(0, Behaviour::generation),
    )
}

/// The file's contents: the model and the client behaviour's populations.
fn snapshot(model: &Model, behaviour: Option<&Behaviour>) -> crate::detect::anomaly::Snapshot {
    model
        .snapshot()
        .with_populations(behaviour.map(Behaviour::populations).unwrap_or_default())
}

/// Writes the model's file atomically; its size.
fn write(path: &Path, snapshot: &crate::detect::anomaly::Snapshot) -> io::Result<usize> {
    let bytes = snapshot.to_json().map_err(io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes, crate::fsutil::STATE_MODE)?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::parse::parse_access;

    fn trained() -> Model {
        let mut m = Model::new(Settings::default());
        for i in 0..200u32 {
            let line = format!(
                "10.0.{}.{} - - [21/Nov/2026:00:00:00 +0000] \"GET /search?q=word{} HTTP/1.1\" 200 5 \"-\" \"x\"",
                i / 250,
                i % 250,
                i % 7
            );
            let req = parse_access(line.as_bytes()).unwrap();
            m.observe("web", &req, true);
        }
        m
    }

    #[test]
    fn a_container_missing_past_the_grace_loses_its_baselines_and_one_back_keeps_them() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(600);
        let mut missing = std::collections::HashMap::new();
        let followed: std::collections::HashSet<String> = ["web".to_string()].into();
        let sources = ["web", "api", "old"];
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(gone(&mut missing, sources.into_iter(), &followed, at(0), grace).is_empty());
        assert_eq!(missing.len(), 2);
        // "api" is followed again (a redeploy): forgotten as missing.
        let with_api: std::collections::HashSet<String> =
            ["web".to_string(), "api".to_string()].into();
        assert!(gone(&mut missing, sources.into_iter(), &with_api, at(300), grace).is_empty());
        assert_eq!(missing.len(), 1);
        assert!(gone(&mut missing, sources.into_iter(), &followed, at(600), grace).is_empty());
        // Past the grace: "old" goes; "api", missing again only since 600, stays.
        assert_eq!(
            gone(&mut missing, sources.into_iter(), &followed, at(601), grace),
            vec!["old".to_string()]
        );
        assert_eq!(
            gone(
                &mut missing,
                ["web", "api"].into_iter(),
                &followed,
                at(1201),
                grace
            ),
            vec!["api".to_string()]
        );
        assert!(missing.is_empty());
    }

    #[test]
    fn a_missing_file_is_a_first_start_and_a_bad_one_says_why() {
        let p = Path::new("/state/anomaly_model.json");
        let s = Settings::default();
        assert!(matches!(
            decode(p, Err(io::ErrorKind::NotFound.into()), s),
            Loaded::Missing
        ));
        let Loaded::Bad(why) = decode(p, Err(io::ErrorKind::PermissionDenied.into()), s) else {
            panic!("an unreadable file is bad");
        };
        assert!(
            why.contains("cannot read /state/anomaly_model.json"),
            "{why}"
        );
        let Loaded::Bad(why) = decode(p, Ok(b"{\"version\":1,\"hash".to_vec()), s) else {
            panic!("a cut file is bad");
        };
        assert!(why.contains("is damaged"), "{why}");
        let Loaded::Bad(why) = decode(p, Ok(b"{\"version\":9}".to_vec()), s) else {
            panic!("another version is bad");
        };
        assert!(
            why.contains("cannot be used") && why.contains("version 9"),
            "{why}"
        );
        let good = trained().snapshot().to_json().unwrap();
        let Loaded::Ok(m) = decode(p, Ok(good), s) else {
            panic!("a good file loads");
        };
        assert_eq!(m.stats(), trained().stats());
        assert_eq!(
            aside_path(p),
            Path::new("/state/anomaly_model.json.corrupt")
        );
    }

    /// The defaults with the state directory in `dir`.
    fn config_in(dir: &Path) -> Config {
        Config {
            state: crate::ban::StateSettings {
                dir: dir.to_path_buf(),
            },
            ..Config::default()
        }
    }

    #[test]
    fn a_bad_file_is_moved_aside_and_the_model_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let path = model_path(&cfg);
        std::fs::write(&path, b"not json").unwrap();
        let m = load(&cfg);
        assert_eq!(m.stats().endpoints, 0);
        assert!(!path.exists());
        assert_eq!(
            std::fs::read(aside_path(&path)).unwrap(),
            b"not json".to_vec()
        );
        // Saved at a stop, loaded at the next start.
        let mut saver = Saver::new(&cfg);
        let model = trained();
        saver.save_now(&model, None);
        let back = load(&cfg);
        assert_eq!(back.stats(), model.stats());
        // Nothing changed: nothing written.
        std::fs::remove_file(&path).unwrap();
        saver.save_now(&model, None);
        assert!(!path.exists());
    }

    #[test]
    fn the_client_populations_are_saved_with_the_model_and_taken_back_at_a_start() {
        use crate::detect::parse::parse_access;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        let model = trained();
        let mut behaviour = Behaviour::new(Default::default());
        // 40 visitors of 40 requests each, a few seconds apart.
        for i in 0..40u8 {
            for k in 0..40i64 {
                let raw = format!(
                    "10.0.0.{i} - - [21/Nov/2026:00:00:00 +0000] \"GET /page{} HTTP/1.1\" 200 5 \"-\" \"Mozilla/5.0\"",
                    k % 4
                );
                let req = parse_access(raw.as_bytes()).unwrap();
                behaviour.observe("web", req.ip, &req, k * 3, Default::default());
            }
        }
        let mut saver = Saver::new(&cfg);
        saver.loaded(&model, Some(&Behaviour::new(Default::default())));
        saver.save_now(&model, Some(&behaviour));
        let (back, restored) = start(&cfg);
        assert_eq!(back.stats(), model.stats());
        assert_eq!(restored.populations(), behaviour.populations());
        assert_eq!(restored.populations()[0].clients.len(), 80);
        // The model did not move, the populations did: that is worth a save too.
        std::fs::remove_file(model_path(&cfg)).unwrap();
        saver.save_now(&model, Some(&behaviour));
        assert!(!model_path(&cfg).exists(), "nothing moved since the save");
        let raw = b"10.0.0.99 - - [21/Nov/2026:00:00:00 +0000] \"GET /x HTTP/1.1\" 200 5 \"-\" \"Mozilla/5.0\"";
        let req = parse_access(raw).unwrap();
        for k in 0..20 {
            behaviour.observe("web", req.ip, &req, 200 + k, Default::default());
        }
        saver.save_now(&model, Some(&behaviour));
        assert!(model_path(&cfg).exists());
    }
}
