//! The `control` section, read into `crate::api::Settings`.

use std::path::PathBuf;

use super::jsonc::Node;
use super::validate::Validator;
use crate::api::Settings;

impl Validator {
    pub(super) fn control(&mut self, n: &Node, control: &mut Settings) {
        if let Some(mut c) = self.object(n, "control") {
            if let Some(v) = c.get("socket") {
                if let Some(p) = self.string(v, "control.socket") {
                    if p.starts_with('/') {
                        control.socket = PathBuf::from(p);
                    } else {
                        self.err(
                            "control.socket",
                            v.pos,
                            "must be an absolute path, such as /run/security-monitor/control.sock",
                        );
                    }
                }
            }
            if let Some(v) = c.get("group") {
                if let Some(g) = self.string(v, "control.group") {
                    control.group = (!g.is_empty()).then(|| g.to_string());
                }
            }
            self.finish(c);
        }
    }
}
