//! The `anomaly` section, read into `crate::detect::anomaly::DaemonSettings`: what the
//! daemon does with the endpoint baselines, the model's knobs, and how often it saves it.

use super::jsonc::Node;
use super::validate::{did_you_mean, Validator};
use crate::detect::anomaly::{DaemonSettings, Mode};

/// Largest `anomaly.min_samples`: half the samples at which an endpoint's counts halve,
/// so an endpoint can still reach it.
pub const MAX_MIN_SAMPLES: u64 = 10_000;
/// Largest `anomaly.max_endpoints` per container.
pub const MAX_ENDPOINTS: u64 = 100_000;
/// Most lines of a container's history read to warm its baselines.
pub const MAX_WARMUP_LINES: u64 = 10_000_000;
/// Shortest `anomaly.save_interval`, seconds.
pub const MIN_SAVE_INTERVAL: u64 = 10;

impl Validator {
    pub(super) fn anomaly(&mut self, node: &Node, a: &mut DaemonSettings) {
        let Some(mut o) = self.object(node, "anomaly") else {
            return;
        };
        if let Some(n) = o.get("mode") {
            if let Some(s) = self.string(n, "anomaly.mode") {
                a.mode = match s {
                    "off" => Mode::Off,
                    "alert" => Mode::Alert,
                    "ban" => Mode::Ban,
                    other => {
                        let hint = did_you_mean(other, &["off", "alert", "ban"])
                            .map(|k| format!("; did you mean \"{k}\"?"))
                            .unwrap_or_default();
                        self.err(
                            "anomaly.mode",
                            n.pos,
                            format!("unknown mode \"{other}\"{hint} (off, alert or ban)"),
                        );
                        a.mode
                    }
                };
            }
        }
        if let Some(n) = o.get("min_samples") {
            if let Some(v) = self.uint(n, "anomaly.min_samples", 1, MAX_MIN_SAMPLES) {
                a.model.min_samples = v as u32;
            }
        }
        if let Some(n) = o.get("max_endpoints") {
            if let Some(v) = self.uint(n, "anomaly.max_endpoints", 1, MAX_ENDPOINTS) {
                a.model.max_endpoints = v as usize;
            }
        }
        if let Some(n) = o.get("max_client_share") {
            if let Some(v) = self.float(n, "anomaly.max_client_share", 0.0, 1.0) {
                if v > 0.0 {
                    a.model.max_client_share = v;
                } else {
                    self.err(
                        "anomaly.max_client_share",
                        n.pos,
                        "must be more than 0 (a share of an endpoint's samples, such as 0.1): with 0 nothing is ever learned",
                    );
                }
            }
        }
        if let Some(n) = o.get("warmup") {
            if let Some(v) = self.duration(n, "anomaly.warmup", 0) {
                a.warmup = v;
            }
        }
        if let Some(n) = o.get("warmup_lines") {
            if let Some(v) = self.uint(n, "anomaly.warmup_lines", 0, MAX_WARMUP_LINES) {
                a.warmup_lines = v;
            }
        }
        if let Some(n) = o.get("save_interval") {
            if let Some(v) = self.duration(n, "anomaly.save_interval", MIN_SAVE_INTERVAL) {
                a.save_interval = v;
            }
        }
        self.finish(o);
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_str;
    use crate::detect::anomaly::Mode;

    #[test]
    fn the_section_is_read_with_its_defaults() {
        let cfg = parse_str("{}").unwrap();
        assert_eq!(cfg.anomaly.mode, Mode::Alert);
        assert_eq!(cfg.anomaly.model.min_samples, 50);
        assert_eq!(cfg.anomaly.model.max_endpoints, 1000);
        assert_eq!(cfg.anomaly.model.max_client_share, 0.1);
        assert_eq!(cfg.anomaly.save_interval, 300);
        assert_eq!(cfg.anomaly.warmup, 24 * 3600);
        assert_eq!(cfg.anomaly.warmup_lines, 100_000);
        let cfg = parse_str(
            r#"{"anomaly": {"mode": "ban", "min_samples": 20, "max_endpoints": 50,
                "max_client_share": 0.25, "save_interval": "1h",
                "warmup": "6h", "warmup_lines": 5000}}"#,
        )
        .unwrap();
        assert_eq!(cfg.anomaly.mode, Mode::Ban);
        assert_eq!(cfg.anomaly.model.min_samples, 20);
        assert_eq!(cfg.anomaly.model.max_endpoints, 50);
        assert_eq!(cfg.anomaly.model.max_client_share, 0.25);
        assert_eq!(cfg.anomaly.save_interval, 3600);
        assert_eq!(cfg.anomaly.warmup, 6 * 3600);
        assert_eq!(cfg.anomaly.warmup_lines, 5000);
        let cfg = parse_str(r#"{"anomaly": {"mode": "off"}}"#).unwrap();
        assert_eq!(cfg.anomaly.mode, Mode::Off);
    }

    #[test]
    fn bad_values_say_what_is_wrong_and_typos_get_a_hint() {
        let errs = parse_str(
            r#"{"anomaly": {"mode": "bann", "min_samples": 0, "max_endpoints": 1e9,
                "max_client_share": 0, "save_interval": "1s", "min_sample": 3}}"#,
        )
        .unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 6, "{shown:#?}");
        let has = |path: &str, what: &str| {
            assert!(
                shown.iter().any(|s| s.contains(path) && s.contains(what)),
                "{path}: {what} not in {shown:#?}"
            )
        };
        has("anomaly.mode", "did you mean \"ban\"");
        has("anomaly.min_samples", "from 1 to 10000");
        has("anomaly.max_endpoints", "out of range");
        has("anomaly.max_client_share", "must be more than 0");
        has("anomaly.save_interval", "at least 10 seconds");
        has("anomaly.min_sample", "did you mean \"min_samples\"");
        let errs = parse_str(r#"{"anomaly": {"max_client_share": 1.5}}"#).unwrap_err();
        assert!(errs[0].to_string().contains("from 0 to 1"), "{}", errs[0]);
        let errs = parse_str(r#"{"anomally": {}}"#).unwrap_err();
        assert!(
            errs[0].to_string().contains("did you mean \"anomaly\""),
            "{}",
            errs[0]
        );
    }
}
