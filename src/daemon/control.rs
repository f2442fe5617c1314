//! Control-socket calls (and the metrics listener's): status, health, bans, alerts.
//!
//! The main loop never waits for the enforcement thread: a call that needs it (ban,
//! unban, list, insights, metrics) hands its message over with a reply channel, and a
//! small task waits for the reply and answers, or comes back through `Finish` when the
//! answer also needs the daemon's own state. A slow firewall or fsync therefore delays
//! that one answer, never `status`, `health` or the lines.

use tokio::sync::oneshot;

use super::pipeline::Command;
use super::{Daemon, Summary};
use crate::alerts::Filter;
use crate::api::{Request, Response};
use crate::ban::worker::{Answer, Msg};
use crate::ban::BanRecord;
use crate::clock::unix_now;
use crate::docker::Watcher;

/// A call whose answer needs the enforcement thread's list of bans and then the daemon.
pub(crate) enum Finish {
    Insights {
        bans: Vec<BanRecord>,
        reply: oneshot::Sender<Response>,
    },
    Metrics {
        bans: Vec<BanRecord>,
        reply: oneshot::Sender<Response>,
    },
}

const STOPPED: &str = "enforcement has stopped";

impl Daemon {
    /// Answers one call; a reload runs here, in the loop, so it sees no half-made state.
    pub(super) async fn call(&mut self, req: Request, reply: oneshot::Sender<Response>) {
        let resp = match req {
            Request::Status => self.status(),
            Request::Health => {
                let s = self.enforce.summary();
                Response::answer(&self.health(&s))
            }
            Request::List => {
                let (tx, rx) = oneshot::channel();
                if !self.enforce.send(Msg::List { reply: tx }) {
                    Response::err(STOPPED)
                } else {
                    tokio::spawn(async move {
                        let resp = match rx.await {
                            Ok(list) => {
                                Response::ok(serde_json::to_value(list).unwrap_or_default())
                            }
                            Err(_) => Response::err(STOPPED),
                        };
                        let _ = reply.send(resp);
                    });
                    return;
                }
            }
            Request::Ban {
                ip,
                seconds,
                reason,
                fleet,
            } => {
                let (tx, rx) = oneshot::channel();
                self.ask_enforcement(
                    Msg::Ban {
                        ip,
                        seconds,
                        reason,
                        fleet,
                        reply: tx,
                    },
                    rx,
                    reply,
                );
                return;
            }
            Request::Unban { ip, fleet } => {
                self.pipeline.send(Command::Forget(ip));
                let (tx, rx) = oneshot::channel();
                self.ask_enforcement(
                    Msg::Unban {
                        ip,
                        fleet,
                        reply: tx,
                    },
                    rx,
                    reply,
                );
                return;
            }
            Request::FleetList => {
                let Some(f) = &self.fleet else {
                    let _ = reply.send(Response::err("the fleet is not enabled on this host (set \"fleet\": {\"enabled\": true, ...} in the config)"));
                    return;
                };
                let (tx, rx) = oneshot::channel();
                if f.tx.send(crate::fleet::Outgoing::List(tx)).is_err() {
                    Response::err("the fleet task has stopped")
                } else {
                    tokio::spawn(async move {
                        let resp = match rx.await {
                            Ok(rows) => {
                                Response::ok(serde_json::to_value(rows).unwrap_or_default())
                            }
                            Err(_) => Response::err("the fleet task has stopped"),
                        };
                        let _ = reply.send(resp);
                    });
                    return;
                }
            }
            Request::Alerts {
                since,
                severity,
                ip,
                container,
                limit,
                kind,
            } => match Filter::parse(since, severity, ip, container, limit, unix_now())
                .and_then(|f| f.with_kind(kind))
            {
                Ok(f) => {
                    let list = self.alerts.query(&f);
                    Response::ok(serde_json::to_value(list).unwrap_or_default())
                }
                Err(e) => Response::err(e.to_string()),
            },
            Request::Insights => {
                self.with_bans(reply, |bans, reply| Finish::Insights { bans, reply });
                return;
            }
            Request::Metrics => {
                self.with_bans(reply, |bans, reply| Finish::Metrics { bans, reply });
                return;
            }
            Request::Reload => match self.reload().await {
                Ok(msg) => Response::ok(serde_json::Value::String(msg)),
                Err(e) => Response::err(format!(
                    "the new config was rejected; the daemon carries on with the old one:\n{e}"
                )),
            },
        };
        let _ = reply.send(resp);
    }

    /// Sends `msg` and answers `reply` with the worker's answer when it comes.
    fn ask_enforcement(
        &self,
        msg: Msg,
        rx: oneshot::Receiver<Answer>,
        reply: oneshot::Sender<Response>,
    ) {
        if !self.enforce.send(msg) {
            let _ = reply.send(Response::err(STOPPED));
            return;
        }
        tokio::spawn(async move {
            let resp = match rx.await {
                Ok(Ok(msg)) => Response::ok(serde_json::Value::String(msg)),
                Ok(Err(e)) => Response::err(e),
                Err(_) => Response::err(STOPPED),
            };
            let _ = reply.send(resp);
        });
    }

    /// Asks the worker for its bans, then comes back through `finish` with them.
    fn with_bans(
        &self,
        reply: oneshot::Sender<Response>,
        job: impl FnOnce(Vec<BanRecord>, oneshot::Sender<Response>) -> Finish + Send + 'static,
    ) {
        let (tx, rx) = oneshot::channel();
        // A stopped worker has no bans to give; the answer still comes, without them.
        let sent = self.enforce.send(Msg::List { reply: tx });
        let back = self.finish_tx.clone();
        tokio::spawn(async move {
            let bans = if sent {
                rx.await.unwrap_or_default()
            } else {
                Vec::new()
            };
            let _ = back.send(job(bans, reply));
        });
    }

    /// Finishes a call once the worker's bans have come.
    pub(super) fn finish(&mut self, job: Finish) {
        match job {
            Finish::Insights { bans, reply } => {
                let i = crate::alerts::insights::compute(
                    &self.alerts,
                    &bans,
                    unix_now(),
                    self.baselines_on(),
                );
                let _ = reply.send(Response::ok(serde_json::to_value(i).unwrap_or_default()));
            }
            Finish::Metrics { bans, reply } => {
                let text = self.metrics_text(&bans);
                let _ = reply.send(Response::ok(serde_json::Value::String(text)));
            }
        }
    }

    /// Whether the daemon runs the endpoint baselines (`anomaly.mode` other than `off`),
    /// for the insights' `mode`.
    fn baselines_on(&self) -> bool {
        self.cfg.anomaly.mode != crate::detect::anomaly::Mode::Off
    }

    fn metrics_text(&mut self, bans: &[BanRecord]) -> String {
        let s = self.enforce.summary();
        let p = self.pipeline.stats();
        self.metrics.lines_read = p.lines_read;
        self.metrics.parse_failures = p.parse_failures;
        self.metrics.error_lines = p.error_lines;
        self.metrics.rule_hits = p.rule_hits;
        self.metrics.anomalies = p.anomalies;
        self.metrics.anomaly_model = p.anomaly_model;
        let ws = self.watcher.as_ref().map(|w| w.status());
        let risk =
            crate::alerts::insights::compute(&self.alerts, bans, unix_now(), self.baselines_on())
                .risk_score;
        // Failed delivery attempts over every channel (each retry counts).
        self.metrics.notification_failures = self
            .notifier
            .status()
            .channels
            .iter()
            .map(|c| c.failed)
            .sum();
        crate::metrics::render(
            &self.metrics,
            &crate::metrics::Snapshot {
                summary: &s,
                docker: ws.as_ref(),
                uptime_s: self.counts.started.elapsed().as_secs(),
                alerts_kept: self.alerts.len(),
                risk_score: risk,
                fleet: self
                    .fleet
                    .as_ref()
                    .map(crate::fleet::Fleet::status)
                    .as_ref(),
            },
        )
    }

    fn status(&mut self) -> Response {
        let s = self.enforce.summary();
        let r = self.rate();
        let p = self.pipeline.stats();
        let ws = self.watcher.as_ref().map(|w| w.status());
        Response::answer(&crate::api::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.counts.started.elapsed().as_secs(),
            config: self.opts.config.clone(),
            firewall: s,
            lines_read: p.lines,
            lines_parsed: p.parsed,
            lines_per_second: r,
            tracked_ips: p.tracked_ips,
            reload_error: self.reload_error.clone(),
            docker: ws,
            notify: self.notifier.status(),
            unparsed: p.unparsed,
            profiles: p
                .profiles
                .into_iter()
                .map(|(container, (profile, reason))| crate::api::SourceProfile {
                    container,
                    profile,
                    reason,
                })
                .collect(),
            anomaly: anomaly_status(&self.cfg, &p.anomaly_model, &p.anomalies),
            fleet: self.fleet.as_ref().map(crate::fleet::Fleet::status),
        })
    }

    /// `ok` when every part runs, Docker is connected, the firewall and the state file
    /// work and the config loaded; otherwise `degraded` with the problems in words. Each
    /// problem is a present one: it goes once what caused it works again.
    fn health(&self, s: &Summary) -> crate::api::Health {
        let ws = self.watcher.as_ref().map(|w| w.status());
        let alive = Alive {
            pipeline: self.pipeline.alive(),
            enforcement: self.enforce.alive(),
            watcher: self.watcher.as_ref().map(Watcher::alive),
            notifier: self.notifier.alive(),
        };
        let mut problems = health_problems(
            alive,
            s,
            ws.as_ref(),
            self.reload_error.as_deref(),
            self.alert_log_error.as_deref(),
        );
        if let Some(f) = self.fleet.as_ref().map(crate::fleet::Fleet::status) {
            problems.extend(fleet_problems(&f));
        }
        crate::api::Health {
            status: crate::api::Health::state_of(&problems),
            problems,
            docker_connected: alive.watcher == Some(true)
                && ws.as_ref().is_some_and(|w| w.connected),
            firewall: s.backend.clone(),
            active_bans: s.active_bans,
            uptime_s: self.counts.started.elapsed().as_secs(),
        }
    }
}

/// `status`'s baselines: per container with a model or an anomaly, by name.
fn anomaly_status(
    cfg: &crate::config::Config,
    model: &[(String, crate::detect::anomaly::Stats)],
    anomalies: &std::collections::BTreeMap<String, u64>,
) -> Option<crate::api::AnomalyStatus> {
    if cfg.anomaly.mode == crate::detect::anomaly::Mode::Off {
        return None;
    }
    let mut by_name: std::collections::BTreeMap<&str, crate::api::AnomalyContainer> = model
        .iter()
        .map(|(name, st)| {
            (
                name.as_str(),
                crate::api::AnomalyContainer {
                    container: name.clone(),
                    endpoints: st.endpoints,
                    learned: st.learned,
                    bytes: st.bytes,
                    anomalies: 0,
                },
            )
        })
        .collect();
    for (name, n) in anomalies {
        by_name
            .entry(name)
            .or_insert_with(|| crate::api::AnomalyContainer {
                container: name.clone(),
                endpoints: 0,
                learned: 0,
                bytes: 0,
                anomalies: 0,
            })
            .anomalies = *n;
    }
    Some(crate::api::AnomalyStatus {
        mode: cfg.anomaly.mode.name().to_string(),
        containers: by_name.into_values().collect(),
    })
}

/// What the fleet adds to `health`: not connected, or a clock far from the server's.
fn fleet_problems(f: &crate::fleet::FleetStatus) -> Vec<String> {
    let mut out = Vec::new();
    if !f.connected {
        out.push(format!(
            "not connected to the fleet's NATS server ({}): {}; bans go on here and are published when it is back",
            f.servers.join(", "),
            f.error.as_deref().unwrap_or("connecting")
        ));
    }
    if let Some(skew) = f
        .clock_skew_s
        .filter(|s| s.abs() > crate::fleet::node::MAX_SKEW_S)
    {
        out.push(format!("this host's clock is {skew:+.1}s off the fleet server's: remote bans' remaining times are computed from the origin's expiry and may be off by as much (run an NTP client such as systemd-timesyncd)"));
    }
    out
}

/// Whether each long-running part still runs. Each ends only at shutdown, so one that
/// has ended while the daemon runs died (a panic: its message is in the daemon's log).
/// A release build aborts on panic and systemd restarts it; this is for every other case.
#[derive(Debug, Clone, Copy)]
struct Alive {
    pipeline: bool,
    enforcement: bool,
    /// None: Docker is not watched at all (reported from the watcher status).
    watcher: Option<bool>,
    notifier: bool,
}

/// What `health` lists, most serious first.
fn health_problems(
    alive: Alive,
    s: &Summary,
    ws: Option<&crate::docker::WatcherStatus>,
    reload_error: Option<&str>,
    alert_log_error: Option<&str>,
) -> Vec<String> {
    const RESTART: &str = "see the daemon's log for why, and restart the service (systemctl restart security-monitor)";
    let mut problems = Vec::new();
    if !alive.pipeline {
        problems.push(format!(
            "the pipeline thread has stopped: no line is judged and nobody is banned; {RESTART}"
        ));
    }
    if !alive.enforcement {
        problems.push(format!("the enforcement thread has stopped: no ban is applied or lifted and blocked_ips.json is not written; {RESTART}"));
    }
    if alive.watcher == Some(false) {
        problems.push(format!(
            "the Docker watcher has stopped: no container's log is read; {RESTART}"
        ));
    }
    if !alive.notifier {
        problems.push(format!(
            "the notifier has stopped: no mail or webhook notice is sent; {RESTART}"
        ));
    }
    match ws {
        None => problems.push("Docker is not watched (see the daemon's log)".to_string()),
        Some(w) if !w.connected && alive.watcher != Some(false) => problems.push(format!(
            "not connected to dockerd at {}: {}",
            w.docker_host,
            w.error.as_deref().unwrap_or("connecting")
        )),
        Some(_) => {}
    }
    if let Some(e) = &s.firewall_error {
        problems.push(format!("the firewall is failing: {e}"));
    }
    if let Some(e) = &s.state_file_error {
        problems.push(format!("the state file cannot be written: {e}"));
    }
    if let Some(e) = reload_error {
        problems.push(format!("the last reload failed: {e}"));
    }
    if let Some(e) = alert_log_error {
        problems.push(format!("cannot write the alerts log: {e}"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::WatcherStatus;

    const ALL_RUN: Alive = Alive {
        pipeline: true,
        enforcement: true,
        watcher: Some(true),
        notifier: true,
    };

    fn connected() -> WatcherStatus {
        WatcherStatus {
            docker_host: "unix:///run/docker.sock".into(),
            connected: true,
            error: None,
            containers: Vec::new(),
        }
    }

    #[test]
    fn the_fleet_degrades_health_when_unreachable_or_the_clock_is_off() {
        let mut f = crate::fleet::FleetStatus {
            connected: true,
            servers: vec!["nats://10.0.0.5:4222".into()],
            clock_skew_s: Some(0.3),
            ..Default::default()
        };
        assert!(fleet_problems(&f).is_empty());
        f.clock_skew_s = Some(-7.5);
        let p = fleet_problems(&f);
        assert!(p.len() == 1 && p[0].contains("-7.5s off"), "{p:?}");
        f.connected = false;
        f.error = Some("connection refused".into());
        let p = fleet_problems(&f);
        assert!(
            p[0].contains("not connected to the fleet's NATS server (nats://10.0.0.5:4222): connection refused"),
            "{p:?}"
        );
    }

    #[test]
    fn healthy_when_every_part_runs_and_nothing_fails() {
        let p = health_problems(ALL_RUN, &Summary::default(), Some(&connected()), None, None);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn a_dead_part_is_reported_by_name() {
        let cases = [
            (
                Alive {
                    pipeline: false,
                    ..ALL_RUN
                },
                "the pipeline thread has stopped",
            ),
            (
                Alive {
                    enforcement: false,
                    ..ALL_RUN
                },
                "the enforcement thread has stopped",
            ),
            (
                Alive {
                    watcher: Some(false),
                    ..ALL_RUN
                },
                "the Docker watcher has stopped",
            ),
            (
                Alive {
                    notifier: false,
                    ..ALL_RUN
                },
                "the notifier has stopped",
            ),
        ];
        for (alive, want) in cases {
            // A dead watcher's last status may still say connected: it must not hide it.
            let p = health_problems(alive, &Summary::default(), Some(&connected()), None, None);
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].starts_with(want), "{p:?}");
            assert!(p[0].contains("restart the service"), "{p:?}");
        }
    }

    #[test]
    fn a_firewall_or_state_file_failure_is_reported_while_it_lasts() {
        let failing = Summary {
            firewall_error: Some("adding 1 ban: no buffer space available".into()),
            state_file_error: Some("cannot write blocked_ips.json: No space left".into()),
            // An error in the past is history, not a present problem.
            last_error: Some("an old one".into()),
            ..Summary::default()
        };
        let p = health_problems(ALL_RUN, &failing, Some(&connected()), None, None);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("the firewall is failing: adding 1 ban"),
            "{p:?}"
        );
        assert!(p[1].contains("No space left"), "{p:?}");
        let cleared = Summary {
            last_error: failing.last_error.clone(),
            firewall_errors: 2,
            ..Summary::default()
        };
        let p = health_problems(ALL_RUN, &cleared, Some(&connected()), None, None);
        assert!(p.is_empty(), "{p:?}");
    }
}
