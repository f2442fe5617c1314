//! Other hosts' records as this host sees them, and what to do about each: apply it,
//! hold it (a burst from one origin, or the cap on remote bans), lift it, or ignore it.
//!
//! Sans-IO: every call takes `now`. The host's own never-ban policy is not here: the
//! enforcement thread owns it and refuses a remote ban there (`BanBook::plan_remote`),
//! telling this book the outcome (`settle`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::record::{parse_key, BanEntry, Record, UnbanEntry};
use super::settings::Settings;
use crate::netaddr::IpNet;

/// What became of a record here, for `list --fleet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum State {
    /// This host's own record.
    Own,
    /// Handed to the firewall, no answer yet.
    Pending,
    Applied,
    /// Vetoed by this host's never-ban policy (or the firewall failed): the reason.
    Refused(String),
    /// Held by the burst valve or the cap: the reason.
    Held(String),
    /// Over before it arrived (or since).
    Expired,
    /// An unban request.
    Unban,
}

/// A remote ban to put in the firewall, for `seconds`.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteBan {
    pub key: String,
    pub entry: BanEntry,
    pub seconds: u64,
    /// Arrived as it was written (not read back from the bucket's history after a
    /// (re)connect): its propagation latency means something.
    pub live: bool,
}

/// What the I/O side must do about one change in the bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    Apply(RemoteBan),
    /// Held: say so (alert) once in a while.
    Hold {
        ip: IpAddr,
        origin: String,
        reason: String,
    },
    /// Lift the remote ban of `net` if this host holds one from `origin`.
    Lift {
        net: IpNet,
        origin: String,
    },
    /// A fleet-wide unban: lift any ban of `net` given at or before `at` (remote or this
    /// host's own, whose key is then deleted).
    Unban(UnbanEntry),
}

#[derive(Debug, Clone)]
struct Known {
    record: Record,
    state: State,
}

/// One row of `list --fleet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub record: Record,
    #[serde(flatten)]
    pub state: State,
}

/// Every record in the bucket this host knows of, and the valve for remote bans.
#[derive(Debug)]
pub struct RemoteBook {
    me: String,
    max: usize,
    burst: u32,
    window: i64,
    known: BTreeMap<String, Known>,
    /// Times of new remote bans per origin within the window.
    recent: HashMap<String, VecDeque<i64>>,
    pub applied: u64,
    pub refused: u64,
    pub held: u64,
}

impl RemoteBook {
    pub fn new(me: &str, s: &Settings) -> RemoteBook {
        RemoteBook {
            me: me.to_string(),
            max: s.max_remote_bans,
            burst: s.remote_burst,
            window: i64::try_from(s.remote_burst_window).unwrap_or(i64::MAX),
            known: BTreeMap::new(),
            recent: HashMap::new(),
            applied: 0,
            refused: 0,
            held: 0,
        }
    }

    /// Takes new limits (on reload), keeping what it knows.
    pub fn reconfigure(&mut self, s: &Settings) {
        self.max = s.max_remote_bans;
        self.burst = s.remote_burst;
        self.window = i64::try_from(s.remote_burst_window).unwrap_or(i64::MAX);
    }

    /// Remote bans applied or being applied now.
    fn in_force(&self) -> usize {
        self.known
            .values()
            .filter(|k| matches!(k.state, State::Applied | State::Pending))
            .count()
    }

    /// A value was put under `key` at `now`.
    pub fn put(&mut self, key: &str, record: Record, now: i64) -> Action {
        let Some((host, net)) = parse_key(key) else {
            return Action::Nothing;
        };
        // A record must be about its key and come from the host its key names: the
        // server lets a host write only its own keys, and this holds a host to that.
        if host != record.origin() || net.addr() != record.ip() {
            return Action::Nothing;
        }
        if host == self.me {
            self.known.insert(
                key.to_string(),
                Known {
                    state: if matches!(record, Record::Unban(_)) {
                        State::Unban
                    } else {
                        State::Own
                    },
                    record: record.clone(),
                },
            );
            // This host's own ban or unban request, seen again: nothing to do here.
            return Action::Nothing;
        }
        let was = self.known.get(key).map(|k| k.state.clone());
        match record {
            Record::Unban(u) => {
                self.known.insert(
                    key.to_string(),
                    Known {
                        record: Record::Unban(u.clone()),
                        state: State::Unban,
                    },
                );
                Action::Unban(u)
            }
            Record::Ban(b) => {
                let b = b.sanitized();
                let seconds = b.remaining(now);
                let record = Record::Ban(b.clone());
                if seconds == 0 {
                    self.known.insert(
                        key.to_string(),
                        Known {
                            record,
                            state: State::Expired,
                        },
                    );
                    return if matches!(was, Some(State::Applied | State::Pending)) {
                        Action::Lift {
                            net: b.net(),
                            origin: b.origin,
                        }
                    } else {
                        Action::Nothing
                    };
                }
                // An update of a ban already in force here (an extension, a rewrite after
                // a reconnect) is not a new ban for the valve.
                let renewal = matches!(was, Some(State::Applied | State::Pending));
                if !renewal {
                    if let Err(reason) = self.admit(&b.origin, now) {
                        self.held += 1;
                        self.known.insert(
                            key.to_string(),
                            Known {
                                record,
                                state: State::Held(reason.clone()),
                            },
                        );
                        return Action::Hold {
                            ip: b.ip,
                            origin: b.origin,
                            reason,
                        };
                    }
                }
                self.known.insert(
                    key.to_string(),
                    Known {
                        record,
                        state: State::Pending,
                    },
                );
                Action::Apply(RemoteBan {
                    key: key.to_string(),
                    entry: b,
                    seconds,
                    live: true,
                })
            }
        }
    }

    /// Whether one more new ban from `origin` at `now` may go ahead (counted if so).
    fn admit(&mut self, origin: &str, now: i64) -> Result<(), String> {
        if self.in_force() >= self.max {
            return Err(format!(
                "this host already applies {} remote bans (fleet.max_remote_bans); held",
                self.max
            ));
        }
        let since = now.saturating_sub(self.window);
        let times = self.recent.entry(origin.to_string()).or_default();
        while times.front().is_some_and(|t| *t <= since) {
            times.pop_front();
        }
        if times.len() >= self.burst as usize {
            return Err(format!(
                "more than {} new bans from {origin} within {}s (fleet.remote_burst): a flood from one host, possibly compromised; held",
                self.burst, self.window
            ));
        }
        times.push_back(now);
        Ok(())
    }

    /// The key was deleted (or purged) at `now`.
    pub fn delete(&mut self, key: &str, now: i64) -> Action {
        let Some(gone) = self.known.remove(key) else {
            return Action::Nothing;
        };
        let Record::Ban(b) = gone.record else {
            return Action::Nothing;
        };
        if !matches!(gone.state, State::Applied | State::Pending) {
            return Action::Nothing;
        }
        // Another host's ban of the same address still stands: it takes over.
        if let Some(other) = self.standing(b.net(), now) {
            return Action::Apply(other);
        }
        Action::Lift {
            net: b.net(),
            origin: b.origin,
        }
    }

    /// The longest other remote ban of `net` still in force here, re-planned.
    fn standing(&self, net: IpNet, now: i64) -> Option<RemoteBan> {
        self.known
            .iter()
            .filter_map(|(k, v)| match (&v.record, &v.state) {
                (Record::Ban(b), State::Applied | State::Pending) if b.net() == net => Some((k, b)),
                _ => None,
            })
            .map(|(k, b)| RemoteBan {
                key: k.clone(),
                entry: b.clone(),
                seconds: b.remaining(now),
                live: false,
            })
            .filter(|r| r.seconds > 0)
            .max_by_key(|r| r.seconds)
    }

    /// What the enforcement thread made of an `Apply`: applied, or refused with a reason.
    /// A record changed since is left alone.
    pub fn settle(&mut self, key: &str, entry: &BanEntry, outcome: Result<(), String>) {
        let Some(k) = self.known.get_mut(key) else {
            return;
        };
        if k.record != Record::Ban(entry.clone()) {
            return;
        }
        match outcome {
            Ok(()) => {
                if k.state != State::Applied {
                    self.applied += 1;
                }
                k.state = State::Applied;
            }
            Err(reason) => {
                self.refused += 1;
                k.state = State::Refused(reason);
            }
        }
    }

    /// Marks the remote bans over by `now` as expired (the kernel lifts them itself).
    pub fn expire(&mut self, now: i64) {
        for k in self.known.values_mut() {
            if let Record::Ban(b) = &k.record {
                if b.remaining(now) == 0 && k.state != State::Own {
                    k.state = State::Expired;
                }
            }
        }
    }

    /// Every record known, by key.
    pub fn rows(&self) -> Vec<Row> {
        self.known
            .iter()
            .map(|(k, v)| Row {
                key: k.clone(),
                record: v.record.clone(),
                state: v.state.clone(),
            })
            .collect()
    }

    /// This host's own keys in the bucket.
    pub fn own_keys(&self) -> Vec<String> {
        self.known
            .iter()
            .filter(|(_, v)| matches!(v.state, State::Own))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forgets one of this host's own keys (it was deleted).
    pub fn forget(&mut self, key: &str) {
        self.known.remove(key);
    }

    /// Whether a remote ban handed to the firewall has not been answered yet.
    pub fn any_pending(&self) -> bool {
        self.known.values().any(|k| k.state == State::Pending)
    }

    pub fn remote_in_force(&self) -> usize {
        self.in_force()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;
    use crate::fleet::record::key;

    fn ban(origin: &str, ip: &str, at: i64, secs: u64) -> (String, Record) {
        let ip: IpAddr = ip.parse().unwrap();
        let e = BanEntry {
            ip,
            prefix: None,
            rule: "sqli".into(),
            category: "injection".into(),
            severity: Severity::High,
            evidence: vec![],
            banned_at: at,
            expires_at: at + secs as i64,
            duration: secs,
            times_banned: 1,
            origin: origin.into(),
            applied_at_ns: 0,
            written_at: 0,
        };
        (key(origin, IpNet::host(ip)), Record::Ban(e))
    }

    fn settings(max: usize, burst: u32) -> Settings {
        Settings {
            max_remote_bans: max,
            remote_burst: burst,
            remote_burst_window: 60,
            ..Settings::default()
        }
    }

    #[test]
    fn a_remote_ban_is_applied_for_its_remaining_time_and_settled() {
        let mut r = RemoteBook::new("h2", &settings(100, 100));
        let (k, rec) = ban("h1", "203.0.113.5", 1000, 3600);
        let Action::Apply(a) = r.put(&k, rec, 1600) else {
            panic!()
        };
        assert_eq!(a.seconds, 3000);
        r.settle(&k, &a.entry, Ok(()));
        assert_eq!(r.rows()[0].state, State::Applied);
        assert_eq!(r.applied, 1);
        // The deletion of the key lifts it.
        assert_eq!(
            r.delete(&k, 1700),
            Action::Lift {
                net: IpNet::host("203.0.113.5".parse().unwrap()),
                origin: "h1".into()
            }
        );
    }

    #[test]
    fn own_records_expired_ones_and_mislabelled_ones_are_not_applied() {
        let mut r = RemoteBook::new("h1", &settings(100, 100));
        let (k, rec) = ban("h1", "203.0.113.5", 1000, 3600);
        assert_eq!(r.put(&k, rec, 1000), Action::Nothing);
        assert_eq!(r.own_keys(), [k]);
        let (k, rec) = ban("h3", "203.0.113.6", 1000, 60);
        assert_eq!(r.put(&k, rec, 2000), Action::Nothing, "over before it came");
        // h3's record under h2's key: not h2's ban, whatever it says.
        let (_, rec) = ban("h3", "203.0.113.7", 1000, 3600);
        let k2 = key("h2", IpNet::host("203.0.113.7".parse().unwrap()));
        assert_eq!(r.put(&k2, rec, 1000), Action::Nothing);
        let (_, rec) = ban("h2", "203.0.113.8", 1000, 3600);
        assert_eq!(r.put(&k2, rec, 1000), Action::Nothing, "key and ip differ");
    }

    #[test]
    fn a_flood_from_one_origin_is_held_and_others_still_pass() {
        let mut r = RemoteBook::new("h2", &settings(100_000, 10));
        let mut held = 0;
        for i in 0..50 {
            let (k, rec) = ban("bad", &format!("198.51.100.{i}"), 1000, 3600);
            match r.put(&k, rec, 1000) {
                Action::Apply(_) => {}
                Action::Hold { reason, origin, .. } => {
                    assert!(reason.contains("fleet.remote_burst") && origin == "bad");
                    held += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((held, r.held), (40, 40));
        let (k, rec) = ban("good", "192.0.2.1", 1000, 3600);
        assert!(matches!(r.put(&k, rec, 1000), Action::Apply(_)));
        // The window passes: the origin may ban again.
        let (k, rec) = ban("bad", "198.51.100.200", 1061, 3600);
        assert!(matches!(r.put(&k, rec, 1061), Action::Apply(_)));
        // A rewrite of a ban in force is not a new ban.
        let (k, rec) = ban("bad", "198.51.100.0", 1000, 7200);
        let mut full = RemoteBook::new("h2", &settings(100_000, 1));
        let (k0, rec0) = ban("bad", "198.51.100.0", 1000, 3600);
        assert!(matches!(full.put(&k0, rec0, 1000), Action::Apply(_)));
        assert!(matches!(full.put(&k, rec, 1001), Action::Apply(_)));
    }

    #[test]
    fn the_cap_on_remote_bans_holds_the_rest() {
        let mut r = RemoteBook::new("h2", &settings(3, 1000));
        let actions: Vec<Action> = (0..5)
            .map(|i| {
                let (k, rec) = ban("h1", &format!("198.51.100.{i}"), 1000, 3600);
                r.put(&k, rec, 1000)
            })
            .collect();
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::Hold { reason, .. } if reason.contains("fleet.max_remote_bans")))
                .count(),
            2
        );
        assert_eq!(r.remote_in_force(), 3);
    }

    #[test]
    fn a_refusal_is_kept_with_its_reason() {
        let mut r = RemoteBook::new("h2", &settings(10, 10));
        let (k, rec) = ban("h1", "10.0.0.1", 1000, 3600);
        let Action::Apply(a) = r.put(&k, rec, 1000) else {
            panic!()
        };
        r.settle(
            &k,
            &a.entry,
            Err("on the allowlist (10.0.0.0/8); banned by h1".into()),
        );
        assert!(matches!(&r.rows()[0].state, State::Refused(s) if s.contains("allowlist")));
        assert_eq!(r.refused, 1);
        assert_eq!(r.delete(&k, 1001), Action::Nothing, "nothing to lift");
    }

    #[test]
    fn when_one_origins_ban_goes_anothers_takes_over() {
        let mut r = RemoteBook::new("h3", &settings(10, 10));
        let (k1, r1) = ban("h1", "203.0.113.9", 1000, 3600);
        let (k2, r2) = ban("h2", "203.0.113.9", 1000, 600);
        for (k, rec) in [(&k1, r1), (&k2, r2)] {
            let Action::Apply(a) = r.put(k, rec, 1000) else {
                panic!()
            };
            r.settle(k, &a.entry, Ok(()));
        }
        let Action::Apply(a) = r.delete(&k1, 1100) else {
            panic!()
        };
        assert_eq!((a.key.as_str(), a.seconds), (k2.as_str(), 500));
        assert!(matches!(r.delete(&k2, 1200), Action::Lift { .. }));
    }

    #[test]
    fn an_unban_request_is_passed_on() {
        let mut r = RemoteBook::new("h2", &settings(10, 10));
        let u = UnbanEntry {
            ip: "203.0.113.5".parse().unwrap(),
            prefix: None,
            at: 1000,
            origin: "h1".into(),
        };
        let k = key("h1", u.net());
        assert_eq!(r.put(&k, Record::Unban(u.clone()), 1000), Action::Unban(u));
        assert_eq!(r.rows()[0].state, State::Unban);
    }
}
