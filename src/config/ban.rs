//! The `ban`, `allowlist` and `state` sections, read into `crate::ban`'s types.

use std::path::PathBuf;

use super::jsonc::Node;
use super::validate::Validator;
use crate::ban::{Policy, StateSettings};
use crate::netaddr::IpNet;

impl Validator {
    pub(super) fn ban(&mut self, node: &Node, b: &mut Policy) {
        let Some(mut o) = self.object(node, "ban") else {
            return;
        };
        if let Some(n) = o.get("duration") {
            if let Some(x) = self.duration(n, "ban.duration", 1) {
                b.duration = x;
            }
        }
        if let Some(n) = o.get("repeat_multiplier") {
            if let Some(x) = self.float(n, "ban.repeat_multiplier", 1.0, 100.0) {
                b.repeat_multiplier = x;
            }
        }
        let max_pos = o.get("max_duration").map(|n| {
            if let Some(x) = self.duration(n, "ban.max_duration", 1) {
                b.max_duration = x;
            }
            n.pos
        });
        if let Some(n) = o.get("burst_max_bans") {
            if let Some(x) = self.uint(n, "ban.burst_max_bans", 1, 1_000_000) {
                b.burst_max_bans = x as u32;
            }
        }
        if let Some(n) = o.get("burst_window") {
            if let Some(x) = self.duration(n, "ban.burst_window", 1) {
                b.burst_window = x;
            }
        }
        if let Some(n) = o.get("burst_max_bans_total") {
            if let Some(x) = self.uint(n, "ban.burst_max_bans_total", 0, 100_000_000) {
                b.burst_max_bans_total = x as u32;
            }
        }
        if let Some(n) = o.get("ipv6_prefix") {
            match self.uint(n, "ban.ipv6_prefix", 0, 128) {
                Some(x @ (64 | 128)) => b.ipv6_prefix = x as u8,
                Some(x) => self.err(
                    "ban.ipv6_prefix",
                    n.pos,
                    format!(
                        "{x} is not supported: use 128 (ban the address) or 64 (ban its whole /64)"
                    ),
                ),
                None => {}
            }
        }
        if b.max_duration < b.duration {
            self.err(
                "ban.max_duration",
                max_pos.unwrap_or(node.pos),
                format!(
                    "is shorter than ban.duration ({}s < {}s)",
                    b.max_duration, b.duration
                ),
            );
        }
        self.finish(o);
    }

    pub(super) fn allowlist(&mut self, n: &Node, out: &mut Vec<IpNet>) {
        if let Some(list) = self.string_list(n, "allowlist") {
            for (i, (s, pos)) in list.iter().enumerate() {
                match s.parse::<IpNet>() {
                    Ok(net) => out.push(net),
                    Err(e) => self.err(
                        &format!("allowlist[{i}]"),
                        *pos,
                        format!(
                            "{e} (expected an IP address or CIDR range such as 203.0.113.0/24)"
                        ),
                    ),
                }
            }
        }
    }

    pub(super) fn state(&mut self, n: &Node, state: &mut StateSettings) {
        if let Some(mut s) = self.object(n, "state") {
            if let Some(d) = s.get("dir") {
                if let Some(p) = self.string(d, "state.dir") {
                    if !p.starts_with('/') {
                        self.err(
                            "state.dir",
                            d.pos,
                            "must be an absolute path, such as /var/lib/security-monitor",
                        );
                    } else {
                        state.dir = PathBuf::from(p);
                    }
                }
            }
            self.finish(s);
        }
    }
}
