//! The `control` section.

use std::path::PathBuf;

/// The control socket of the running daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub socket: PathBuf,
    /// A group whose members may use the socket besides root (mode 0660); None: root only.
    pub group: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            socket: PathBuf::from("/run/security-monitor/control.sock"),
            group: None,
        }
    }
}
