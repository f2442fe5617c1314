//! The `firewall` section, read into `crate::firewall::Settings`.

use super::jsonc::Node;
use super::validate::{did_you_mean, Validator};
use crate::firewall::{BackendChoice, Settings};

impl Validator {
    pub(super) fn firewall(&mut self, node: &Node, f: &mut Settings) {
        let Some(mut o) = self.object(node, "firewall") else {
            return;
        };
        if let Some(n) = o.get("backend") {
            if let Some(s) = self.string(n, "firewall.backend") {
                f.backend = match s {
                    "auto" => BackendChoice::Auto,
                    "nftables" | "nft" => BackendChoice::Nftables,
                    "iptables" => BackendChoice::Iptables,
                    "none" => BackendChoice::None,
                    other => {
                        let hint = did_you_mean(other, &["auto", "nftables", "iptables", "none"])
                            .map(|k| format!("; did you mean \"{k}\"?"))
                            .unwrap_or_default();
                        self.err("firewall.backend", n.pos, format!("unknown backend \"{other}\"{hint} (auto, nftables, iptables or none)"));
                        f.backend
                    }
                };
            }
        }
        if let Some(n) = o.get("table") {
            if let Some(s) = self.string(n, "firewall.table") {
                if s.is_empty()
                    || s.len() > 28
                    || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    || s.as_bytes()[0].is_ascii_digit()
                {
                    self.err("firewall.table", n.pos, "must be 1-28 letters, digits or '_', not starting with a digit (it names an nftables table, an iptables chain and ipsets)");
                } else {
                    f.table = s.to_string();
                }
            }
        }
        self.finish(o);
    }
}
