//! The daemon's alerts: events recorded as alerts and counted in the metrics, the alerts
//! log kept on disk, Docker's connection watched.

use super::Daemon;
use crate::alerts::log::AlertLog;
use crate::alerts::{AlertBook, Recorded};
use crate::clock::unix_now;
use crate::config::Config;
use crate::events::Event;

/// The alert ring, reloaded from the alerts log so alerts survive a restart.
pub(super) fn open(cfg: &Config) -> (AlertBook, AlertLog) {
    let mut book = AlertBook::new(cfg.alerts.cooldown, cfg.alerts.keep);
    let mut log = AlertLog::new(&cfg.state.dir, cfg.log_retention_days);
    log.set_max_size(cfg.alerts.max_log_size);
    let now = unix_now();
    for gone in log.prune(now) {
        tracing::info!("deleted {} (older than log_retention_days)", gone.display());
    }
    let loaded = log.load(now, cfg.alerts.keep);
    if loaded.bad_lines > 0 {
        tracing::warn!(
            "{}: skipped {} line(s) that are not alerts (a write cut short by a crash?)",
            log.path().display(),
            loaded.bad_lines
        );
    }
    book.restore(loaded.alerts);
    (book, log)
}

impl Daemon {
    /// An event (from the bus, or the main loop's own): counted, and recorded as an
    /// alert when noteworthy.
    pub(super) fn on_event(&mut self, e: Event) {
        self.metrics.on_event(&e);
        let Some(alert) = crate::alerts::from_event(&e) else {
            return;
        };
        let severity = alert.severity;
        if let Recorded::New(id) = self.alerts.record(alert) {
            *self.metrics.alerts.entry(severity).or_default() += 1;
            if let Some(a) = self.alerts.get(id).cloned() {
                let r = self.alert_log.append(&[a], unix_now());
                self.alert_log_result(r);
            }
        }
    }

    fn alert_log_result(&mut self, r: std::io::Result<()>) {
        match r {
            Ok(()) => {
                if self.alert_log_error.take().is_some() {
                    tracing::info!("writing {} again", self.alert_log.path().display());
                }
            }
            Err(e) => {
                if self.alert_log_error.is_none() {
                    tracing::error!(
                        "cannot write the alerts log {}: {e}; alerts are kept in memory until it can be written (is the disk full?)",
                        self.alert_log.path().display()
                    );
                }
                self.alert_log_error = Some(e.to_string());
            }
        }
    }

    /// Writes folded alerts whose counts moved, and applies the retention.
    pub(super) fn flush_alerts(&mut self) {
        let now = unix_now();
        let dirty = self.alerts.take_dirty();
        // Nothing to write proves nothing: an earlier failure stays until a write works.
        if !dirty.is_empty() {
            let r = self.alert_log.append(&dirty, now);
            self.alert_log_result(r);
        }
        let cutoff = now - i64::from(self.cfg.log_retention_days) * 86_400;
        self.alerts.prune(cutoff, now);
        for gone in self.alert_log.prune(now) {
            tracing::info!("deleted {} (older than log_retention_days)", gone.display());
        }
    }

    /// Raises an alert when the watcher loses or regains dockerd (looked at every tick).
    pub(super) fn watch_docker_connection(&mut self) {
        let Some(ws) = self.watcher.as_ref().map(|w| w.status()) else {
            return;
        };
        let was = self.docker_connected.replace(ws.connected);
        // At start the watcher needs a moment to connect: only a change from connected,
        // or a first look that finds an error, is news.
        let news = match was {
            Some(was) => was != ws.connected,
            None => !ws.connected && ws.error.is_some(),
        };
        if news {
            self.on_event(Event::DockerConnection {
                at: unix_now(),
                connected: ws.connected,
                error: ws.error,
            });
        }
    }
}
