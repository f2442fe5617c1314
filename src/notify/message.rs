//! What a notice says: one digest of bans (and held-back verdicts), rendered as a mail
//! (subject and plain-text body) or as a webhook's JSON. Sans-IO.
//!
//! Log lines are attacker-controlled. Nothing taken from one reaches a mail header: the
//! subject is fixed text, counts and a parsed IP. In bodies every control character is
//! escaped, so a CR/LF in a log line cannot start a header or fake a line of the notice;
//! Slack and Discord payloads additionally neutralise their mention and link syntax.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{json, Value};

use crate::ban::state_file::BanRecord;
use crate::detect::Severity;
use crate::events::Refusal;
use crate::time::{format_duration, format_time};

/// Bans listed one by one in a notice; beyond this they are counted per category.
pub const MAX_LISTED: usize = 25;
/// Held-back verdicts listed one by one in a notice.
pub const MAX_LISTED_HELD: usize = 10;
/// Evidence lines shown per ban, and characters per line.
pub const EVIDENCE_LINES: usize = 3;
pub const EVIDENCE_CHARS: usize = 300;

/// One ban as a notice shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BanNotice {
    pub ip: IpAddr,
    pub rule: String,
    pub category: String,
    pub severity: Severity,
    pub container: String,
    pub banned_at: i64,
    pub expires_at: i64,
    pub seconds: u64,
    pub times_banned: u32,
    /// The ban of an IP that was already banned was lengthened.
    pub extended: bool,
    pub evidence: Vec<String>,
    pub source: String,
}

impl BanNotice {
    pub fn new(record: &BanRecord, seconds: u64, extended: bool) -> BanNotice {
        BanNotice {
            ip: record.ip,
            rule: clean(&record.rule, 100),
            category: clean(&record.category, 50),
            severity: record.severity,
            container: clean(&record.container, 100),
            banned_at: record.banned_at,
            expires_at: record.expires_at,
            seconds,
            times_banned: record.times_banned,
            extended,
            evidence: record
                .evidence
                .iter()
                .take(EVIDENCE_LINES)
                .map(|l| clean(l, EVIDENCE_CHARS))
                .collect(),
            source: clean(&record.source, 20),
        }
    }

    /// The command that lifts this ban.
    pub fn unban_command(&self) -> String {
        format!("security-monitor unban {}", self.ip)
    }
}

/// A verdict the safety valve held back instead of banning: the event's fields, cut
/// and escaped for a notice.
pub type HeldNotice = Refusal;

pub fn held_notice(r: &Refusal) -> HeldNotice {
    Refusal {
        at: r.at,
        ip: r.ip,
        rule: clean(&r.rule, 100),
        category: clean(&r.category, 50),
        severity: r.severity,
        container: clean(&r.container, 100),
        reason: clean(&r.reason, 300),
    }
}

/// What one mail or one webhook post says. Its size is bounded: at most `MAX_LISTED`
/// bans are listed, the rest are counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Digest {
    /// This host's name (letters, digits, '.', '-', '_' only), so a mailbox fed by many
    /// hosts can tell them apart.
    pub host: String,
    pub bans: Vec<BanNotice>,
    /// Bans folded in without being listed.
    pub more_bans: u64,
    /// The folded-in bans per category.
    pub more_by_category: BTreeMap<String, u64>,
    pub held: Vec<HeldNotice>,
    pub more_held: u64,
    /// Events the notifier lost because it fell behind the daemon.
    pub missed_events: u64,
    /// A `test-notify` notice rather than a real one.
    pub test: bool,
}

impl Digest {
    pub fn new(host: &str) -> Digest {
        Digest {
            host: header_safe_host(host),
            ..Digest::default()
        }
    }

    /// A notice sent by `security-monitor test-notify`.
    pub fn test(host: &str) -> Digest {
        Digest {
            test: true,
            ..Digest::new(host)
        }
    }

    pub fn total_bans(&self) -> u64 {
        self.bans.len() as u64 + self.more_bans
    }

    pub fn total_held(&self) -> u64 {
        self.held.len() as u64 + self.more_held
    }

    /// Bans and held verdicts waiting in this digest.
    pub fn len(&self) -> u64 {
        self.total_bans() + self.total_held()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.missed_events == 0
    }

    pub fn add_ban(&mut self, n: BanNotice) {
        if self.bans.len() < MAX_LISTED {
            self.bans.push(n);
        } else {
            self.more_bans += 1;
            *self.more_by_category.entry(n.category).or_default() += 1;
        }
    }

    pub fn add_held(&mut self, n: HeldNotice) {
        if self.held.len() < MAX_LISTED_HELD {
            self.held.push(n);
        } else {
            self.more_held += 1;
        }
    }

    /// Puts `later`'s content after this digest's, keeping the size bound.
    pub fn absorb(&mut self, later: Digest) {
        for b in later.bans {
            self.add_ban(b);
        }
        self.more_bans += later.more_bans;
        for (c, n) in later.more_by_category {
            *self.more_by_category.entry(c).or_default() += n;
        }
        for h in later.held {
            self.add_held(h);
        }
        self.more_held += later.more_held;
        self.missed_events += later.missed_events;
    }

    /// The subject line: fixed text, counts and at most one IP (a parsed address).
    pub fn subject(&self) -> String {
        let host = &self.host;
        if self.test {
            return format!("[security-monitor] {host}: test notice");
        }
        let (n, h) = (self.total_bans(), self.total_held());
        let mut s = match (n, self.bans.first()) {
            (1, Some(b)) => format!("[security-monitor] {host}: banned {}", b.ip),
            (0, _) => format!("[security-monitor] {host}:"),
            (n, Some(b)) => format!("[security-monitor] {host}: {n} bans ({} and others)", b.ip),
            (n, None) => format!("[security-monitor] {host}: {n} bans"),
        };
        if h > 0 {
            if n > 0 {
                s.push(',');
            }
            s.push_str(&format!(" {h} held back by the safety valve"));
        }
        if n == 0 && h == 0 {
            s.push_str(&format!(" {} events missed", self.missed_events));
        }
        s
    }

    /// The plain-text body of a mail, and the text of Slack and Discord posts.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.test {
            out.push_str(&format!(
                "This is a test notice from security-monitor on {}.\n\
                 If you can read it, ban notices will reach you this way.\n",
                self.host
            ));
            return out;
        }
        let n = self.total_bans();
        if n > 0 {
            out.push_str(&format!(
                "security-monitor on {} banned {n} IP{}.\n",
                self.host,
                if n == 1 { "" } else { "s" }
            ));
        }
        for b in &self.bans {
            out.push('\n');
            out.push_str(&format!(
                "{}  {} for {}, until {} (ban #{} of this IP)\n",
                b.ip,
                if b.extended { "ban extended" } else { "banned" },
                format_duration(b.seconds),
                format_time(b.expires_at),
                b.times_banned
            ));
            out.push_str(&format!(
                "  rule:      {} (category {}, severity {})\n",
                b.rule, b.category, b.severity
            ));
            if !b.container.is_empty() {
                out.push_str(&format!("  container: {}\n", b.container));
            }
            out.push_str(&format!("  banned at: {}\n", format_time(b.banned_at)));
            for (i, e) in b.evidence.iter().enumerate() {
                let label = if i == 0 { "evidence:" } else { "" };
                out.push_str(&format!("  {label:<10} {e}\n"));
            }
            out.push_str(&format!("  to lift it: {}\n", b.unban_command()));
        }
        if self.more_bans > 0 {
            let cats: Vec<String> = self
                .more_by_category
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            out.push_str(&format!(
                "\n... and {} more bans (by category: {}), not listed here.\n\
                 `security-monitor list` shows every active ban.\n",
                self.more_bans,
                cats.join(", ")
            ));
        }
        let h = self.total_held();
        if h > 0 {
            out.push_str(&format!(
                "\n{h} verdict{} held back by the safety valve (more new bans than ban.burst_max_bans \
                 within ban.burst_window); these IPs are NOT banned:\n",
                if h == 1 { " was" } else { "s were" }
            ));
            for x in &self.held {
                out.push_str(&format!(
                    "  {} at {}: rule {} (category {}, severity {}){}\n",
                    x.ip,
                    format_time(x.at),
                    x.rule,
                    x.category,
                    x.severity,
                    if x.container.is_empty() {
                        String::new()
                    } else {
                        format!(", container {}", x.container)
                    }
                ));
            }
            if self.more_held > 0 {
                out.push_str(&format!("  ... and {} more\n", self.more_held));
            }
            out.push_str("  To ban one by hand: security-monitor ban IP\n");
        }
        if self.missed_events > 0 {
            out.push_str(&format!(
                "\n{} event(s) were missed because the notifier fell behind; \
                 `journalctl -u security-monitor ACTION=ban` has every ban.\n",
                self.missed_events
            ));
        }
        out
    }

    /// The `generic` webhook body: every field, for your own tooling.
    pub fn generic_json(&self) -> Value {
        json!({
            "source": "security-monitor",
            "host": self.host,
            "test": self.test,
            "summary": self.subject(),
            "bans": self.bans.iter().map(|b| {
                let mut v = serde_json::to_value(b).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("banned_at".into(), Value::String(format_time(b.banned_at)));
                    m.insert("expires_at".into(), Value::String(format_time(b.expires_at)));
                    m.insert("unban_command".into(), Value::String(b.unban_command()));
                }
                v
            }).collect::<Vec<_>>(),
            "more_bans": self.more_bans,
            "more_bans_by_category": self.more_by_category,
            "held": self.held.iter().map(|h| {
                let mut v = serde_json::to_value(h).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("at".into(), Value::String(format_time(h.at)));
                }
                v
            }).collect::<Vec<_>>(),
            "more_held": self.more_held,
            "missed_events": self.missed_events,
        })
    }

    /// A Slack incoming webhook's body. `&`, `<` and `>` are escaped as Slack asks, so a
    /// log line cannot write `<!channel>` or a disguised link.
    pub fn slack_json(&self) -> Value {
        let text = format!(
            "*{}*\n```\n{}```",
            slack_escape(&self.subject()),
            slack_escape(&code_safe(&self.text()))
        );
        json!({ "text": text })
    }

    /// A Discord webhook's body: at most 2,000 characters of content, and no mentions
    /// (`allowed_mentions` empty), so a log line cannot ping `@everyone`.
    pub fn discord_json(&self) -> Value {
        let subject = self.subject();
        let budget = 2000 - subject.chars().count().min(1900) - 12;
        let body: String = code_safe(&self.text()).chars().take(budget).collect();
        json!({
            "content": format!("**{subject}**\n```\n{body}```"),
            "allowed_mentions": { "parse": [] },
        })
    }
}

/// Escapes control characters (and bidirectional overrides) and cuts to `max`
/// characters. Text that is already escaped (evidence from the ban book) is left as it
/// is: backslashes are not doubled.
pub fn clean(s: &str, max: usize) -> String {
    crate::detect::decode::escape_text(s, max, false)
}

/// The host name as it may appear in a subject: letters, digits, '.', '-' and '_'.
fn header_safe_host(h: &str) -> String {
    let s: String = h
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if s.is_empty() {
        "localhost".into()
    } else {
        s
    }
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text for a ``` code block: a log line cannot close the block early.
fn code_safe(s: &str) -> String {
    s.replace("```", "'''")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ip: &str, evidence: &str) -> BanRecord {
        BanRecord {
            ip: ip.parse().unwrap(),
            rule: "sqli-union-select".into(),
            category: "sqli".into(),
            severity: Severity::Critical,
            container: "web".into(),
            first_offence: 1_763_683_100,
            last_offence: 1_763_683_150,
            banned_at: 1_763_683_150,
            expires_at: 1_763_769_550,
            times_banned: 1,
            evidence: vec![evidence.into()],
            source: "detector".into(),
            prefix: None,
        }
    }

    #[test]
    fn a_single_ban_says_everything_an_operator_needs() {
        let mut d = Digest::new("host1");
        d.add_ban(BanNotice::new(
            &record("203.0.113.7", "GET /?q=union select"),
            86400,
            false,
        ));
        assert_eq!(d.subject(), "[security-monitor] host1: banned 203.0.113.7");
        let t = d.text();
        for want in [
            "203.0.113.7  banned for 1d, until 2025-11-21T23:59:10Z",
            "rule:      sqli-union-select (category sqli, severity critical)",
            "container: web",
            "evidence:  GET /?q=union select",
            "to lift it: security-monitor unban 203.0.113.7",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
    }

    #[test]
    fn log_text_is_escaped_and_never_in_the_subject() {
        let mut d = Digest::new("host1\r\nBcc: x@example.com");
        d.add_ban(BanNotice::new(
            &record("203.0.113.7", "GET /\r\nBcc: victim@example.com\u{202e}"),
            60,
            false,
        ));
        let s = d.subject();
        assert!(
            !s.contains('\n') && !s.contains('\r') && !s.contains("Bcc: "),
            "{s}"
        );
        let t = d.text();
        assert!(
            t.contains("GET /\\x0d\\x0aBcc: victim@example.com\\u{202e}"),
            "{t}"
        );
        assert!(!t.lines().any(|l| l.starts_with("Bcc:")), "{t}");
        // Already-escaped evidence is not escaped twice.
        assert_eq!(clean("a\\x0db", 100), "a\\x0db");
    }

    #[test]
    fn a_digest_lists_a_bounded_number_and_counts_the_rest() {
        let mut d = Digest::new("h");
        for i in 0..1000u32 {
            let ip = format!("198.51.{}.{}", i / 256, i % 256);
            let mut r = record(&ip, "x");
            if i % 2 == 0 {
                r.category = "xss".into();
            }
            d.add_ban(BanNotice::new(&r, 60, false));
        }
        assert_eq!(d.bans.len(), MAX_LISTED);
        assert_eq!(d.total_bans(), 1000);
        assert_eq!(
            d.subject(),
            "[security-monitor] h: 1000 bans (198.51.0.0 and others)"
        );
        let t = d.text();
        assert!(
            t.contains("... and 975 more bans (by category: sqli 488, xss 487)"),
            "{t}"
        );
        let mut later = Digest::new("h");
        later.add_ban(BanNotice::new(&record("192.0.2.1", "y"), 60, false));
        d.absorb(later);
        assert_eq!(d.total_bans(), 1001);
    }

    #[test]
    fn chat_payloads_cannot_ping_or_link() {
        let mut d = Digest::new("h");
        d.add_ban(BanNotice::new(
            &record("203.0.113.7", "<!channel> @everyone ```x"),
            60,
            false,
        ));
        let slack = d.slack_json()["text"].as_str().unwrap().to_string();
        assert!(
            slack.contains("&lt;!channel&gt;") && !slack.contains("<!channel>"),
            "{slack}"
        );
        let discord = d.discord_json();
        assert_eq!(discord["allowed_mentions"]["parse"], json!([]));
        assert!(discord["content"].as_str().unwrap().chars().count() <= 2000);
        let g = d.generic_json();
        assert_eq!(
            g["bans"][0]["unban_command"],
            "security-monitor unban 203.0.113.7"
        );
        assert_eq!(g["bans"][0]["expires_at"], "2025-11-21T23:59:10Z");
    }
}
