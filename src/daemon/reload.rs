//! `reload` (SIGHUP, `security-monitor reload`): the new config is read and everything it
//! needs is prepared — rules compiled, Docker settings checked, a new metrics listener
//! bound — before anything is swapped. Either all of it applies or none of it does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;

use super::pipeline::Command;
use super::{systemd, Daemon};
use crate::api::server;
use crate::clock::unix_now;
use crate::config::{self, Config, ConfigErrors};
use crate::detect::rules::RuleError;
use crate::detect::Detector;
use crate::docker::{DockerError, WatchSettings, Watcher};
use crate::events::Event;
use crate::metrics::http::BindError;

/// What a refused move asks the operator to do instead.
const RESTART: &str = "restart the service to use it (systemctl restart security-monitor); the daemon carries on with the old value";

/// Why a new config was not taken; the daemon carries on with the old one. Said in the
/// journal line by line, in `status` and to `security-monitor reload`.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file's errors, every one with its line and column.
    #[error("{}", .0.to_string().trim_end())]
    Config(ConfigErrors),
    #[error("state.dir changed from {} to {}: the bans, cursors and alerts of the running daemon live in the old directory, so a reload cannot move it; {RESTART}", from.display(), to.display())]
    StateDir { from: PathBuf, to: PathBuf },
    #[error("firewall changed (backend {from_backend} → {to_backend}, table {from_table} → {to_table}): the running daemon's bans are in the old firewall objects, so a reload cannot switch them; {RESTART}")]
    Firewall {
        from_backend: &'static str,
        to_backend: &'static str,
        from_table: String,
        to_table: String,
    },
    #[error("control changed (socket {} → {}): the control socket is bound at start; {RESTART}", from.display(), to.display())]
    Control { from: PathBuf, to: PathBuf },
    #[error("the rules cannot be compiled: {0}")]
    Rules(RuleError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Metrics(#[from] BindError),
}

/// What the metrics listener must become: a new listener already bound, none, or the
/// running one kept.
pub(super) enum MetricsChange {
    Keep,
    Stop,
    Start(SocketAddr, TcpListener),
}

/// Binds the listener `want` asks for, unless the running one (`current`) is already on it.
pub(super) async fn prepare_metrics(
    current: Option<&(SocketAddr, tokio::task::JoinHandle<()>)>,
    want: Option<SocketAddr>,
) -> Result<MetricsChange, BindError> {
    if current.map(|(a, _)| *a) == want {
        return Ok(MetricsChange::Keep);
    }
    Ok(match want {
        Some(addr) => MetricsChange::Start(addr, crate::metrics::http::bind(addr).await?),
        None => MetricsChange::Stop,
    })
}

/// A reload cannot move what the running daemon holds open: say which setting changed
/// and what to do instead.
fn refuse_moves(old: &Config, new: &Config) -> Result<(), ReloadError> {
    if old.state.dir != new.state.dir {
        return Err(ReloadError::StateDir {
            from: old.state.dir.clone(),
            to: new.state.dir.clone(),
        });
    }
    if old.firewall != new.firewall {
        return Err(ReloadError::Firewall {
            from_backend: old.firewall.backend.as_str(),
            to_backend: new.firewall.backend.as_str(),
            from_table: old.firewall.table.clone(),
            to_table: new.firewall.table.clone(),
        });
    }
    if old.control != new.control {
        return Err(ReloadError::Control {
            from: old.control.socket.clone(),
            to: new.control.socket.clone(),
        });
    }
    Ok(())
}

/// Everything a new config needs, made before anything is swapped.
struct Prepared {
    cfg: Config,
    detector: Detector,
    watch: WatchSettings,
    metrics: MetricsChange,
}

impl Daemon {
    /// Reloads the config; says what happened in the journal, in `status` and as an alert.
    pub(super) async fn reload(&mut self) -> Result<String, ReloadError> {
        systemd::reloading();
        let path = self.opts.config.clone();
        let result = match self.prepare(&path).await {
            Ok(p) => {
                let n = p.detector.rules().rules().len();
                // The fleet's connection is made at start; a changed section waits for it.
                let fleet_note = if p.cfg.fleet != self.cfg.fleet {
                    tracing::warn!(ACTION = "reload", "the fleet section changed: it takes effect when the daemon restarts (systemctl restart security-monitor)");
                    "; the fleet section changed and takes effect at the next restart"
                } else {
                    ""
                };
                self.commit(p).await;
                Ok(format!(
                    "reloaded {}: {n} rules{fleet_note}",
                    path.display()
                ))
            }
            Err(e) => Err(e),
        };
        match &result {
            Ok(msg) => {
                self.reload_error = None;
                tracing::info!(ACTION = "reload", "{msg}");
            }
            Err(e) => {
                let e = e.to_string();
                for line in e.lines() {
                    tracing::error!(ACTION = "reload", "{line}");
                }
                // The errors without the "N errors in the config:" heading, on one line.
                let lines: Vec<&str> = e
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.ends_with("in the config:"))
                    .collect();
                self.reload_error = Some(if lines.is_empty() {
                    e.trim().to_string()
                } else {
                    lines.join("; ")
                });
                tracing::error!(
                    ACTION = "reload",
                    "the new config was rejected; carrying on with the old one"
                );
            }
        }
        self.on_event(Event::Reload {
            at: unix_now(),
            error: self.reload_error.clone(),
        });
        systemd::ready(&self.status_line(&self.enforce.summary()));
        result
    }

    async fn prepare(&self, path: &Path) -> Result<Prepared, ReloadError> {
        let cfg = config::load(path).map_err(ReloadError::Config)?;
        refuse_moves(&self.cfg, &cfg)?;
        let detector = Detector::new(&cfg.detect_settings()).map_err(ReloadError::Rules)?;
        let watch = WatchSettings::from_config(&cfg)?;
        let metrics = prepare_metrics(self.metrics_server.as_ref(), cfg.metrics.listen).await?;
        Ok(Prepared {
            cfg,
            detector,
            watch,
            metrics,
        })
    }

    /// Swaps the prepared config in. Active bans are untouched.
    async fn commit(&mut self, p: Prepared) {
        // The old watcher's last lines are judged (with the old rules) before its cursors
        // are written, so the new watcher reads on after them and not twice.
        if let Some(mut w) = self.watcher.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), w.stop_reading()).await;
            self.pipeline.flush().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), w.shutdown()).await;
        }
        let watcher = Watcher::spawn_reporting_networks(
            p.watch,
            self.line_tx.clone(),
            self.networks_tx.clone(),
        );
        // The pipeline takes the new rules before the new watcher's first line.
        self.pipeline.send(Command::Reconfigure {
            cfg: Box::new(p.cfg.clone()),
            detector: Box::new(p.detector),
            labels: Some(watcher.labels()),
        });
        self.watcher = Some(watcher);
        // The new watcher starts unconnected: that is not a lost connection.
        self.docker_connected = None;
        self.alerts
            .reconfigure(p.cfg.alerts.cooldown, p.cfg.alerts.keep);
        self.alert_log.set_retention(p.cfg.log_retention_days);
        self.alert_log.set_max_size(p.cfg.alerts.max_log_size);
        self.notifier.reconfigure(&p.cfg);
        self.cfg = p.cfg;
        self.commit_metrics(p.metrics);
    }

    /// Puts a prepared metrics listener in place of the running one.
    pub(super) fn commit_metrics(&mut self, change: MetricsChange) {
        match change {
            MetricsChange::Keep => {}
            MetricsChange::Stop => {
                if let Some((old, task)) = self.metrics_server.take() {
                    task.abort();
                    tracing::info!("stopped the metrics listener on {old}");
                }
            }
            MetricsChange::Start(addr, listener) => {
                if let Some((old, task)) = self.metrics_server.take() {
                    task.abort();
                    tracing::info!("stopped the metrics listener on {old}");
                }
                let conns = server::Conns::new(server::ConnLimits::default());
                let task = tokio::spawn(crate::metrics::http::serve(
                    listener,
                    self.calls.clone(),
                    conns,
                ));
                tracing::info!("serving Prometheus metrics on http://{addr}/metrics");
                self.metrics_server = Some((addr, task));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_refuses_to_move_what_the_daemon_holds_open() {
        let old = Config::default();
        assert!(refuse_moves(&old, &old.clone()).is_ok());
        let mut moved = old.clone();
        moved.state.dir = "/srv/elsewhere".into();
        let e = refuse_moves(&old, &moved).unwrap_err().to_string();
        assert!(
            e.starts_with("state.dir changed from /var/lib/security-monitor to /srv/elsewhere"),
            "{e}"
        );
        assert!(e.contains("systemctl restart security-monitor"), "{e}");
        let mut fw = old.clone();
        fw.firewall.table = "other".into();
        let e = refuse_moves(&old, &fw).unwrap_err().to_string();
        assert!(e.contains("table security_monitor → other"), "{e}");
        let mut sock = old.clone();
        sock.control.socket = "/run/other.sock".into();
        assert!(refuse_moves(&old, &sock)
            .unwrap_err()
            .to_string()
            .contains("socket /run/security-monitor/control.sock → /run/other.sock"));
        // Everything else may change on reload.
        let mut fine = old.clone();
        fine.ban.duration = 60;
        fine.metrics.listen = Some("127.0.0.1:9999".parse().unwrap());
        assert!(refuse_moves(&old, &fine).is_ok());
    }

    #[tokio::test]
    async fn a_port_that_cannot_be_bound_is_found_before_anything_is_swapped() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = match prepare_metrics(None, Some(addr)).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("bound a port that is in use"),
        };
        assert!(e.contains("cannot listen on"), "{e}");
        assert!(matches!(
            prepare_metrics(None, None).await,
            Ok(MetricsChange::Keep)
        ));
    }
}
