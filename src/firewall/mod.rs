//! The kernel side of a ban: one driver trait, one file per backend, chosen by name.
//!
//! Every backend keeps to what is its own (one nftables table, or one iptables chain and
//! its ipsets) and never lists or changes anything else in the host's ruleset.

mod iptables;
mod nft;
mod none;

use std::fmt;
use std::process::Command;

pub use self::iptables::Iptables;
pub use self::nft::Nftables;
pub use self::none::DryRun;
use crate::netaddr::IpNet;

/// Which backend `firewall.backend` asks for; `Auto` picks one at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Nftables,
    Iptables,
    None,
}

impl BackendChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Nftables => "nftables",
            BackendChoice::Iptables => "iptables",
            BackendChoice::None => "none",
        }
    }
}

/// The `firewall` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub backend: BackendChoice,
    /// Name of our own nftables table (family inet) / iptables chain and ipset prefix.
    pub table: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            backend: BackendChoice::Auto,
            table: "security_monitor".into(),
        }
    }
}

/// An address or network the kernel drops, and for how many more seconds (None: no
/// kernel expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelBan {
    pub net: IpNet,
    pub remaining: Option<u64>,
}

#[derive(Debug)]
pub struct FirewallError {
    /// What we were doing, e.g. "adding 3 bans to the nftables set".
    pub action: String,
    pub detail: String,
}

impl fmt::Display for FirewallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.action, self.detail)
    }
}

impl std::error::Error for FirewallError {}

pub type Result<T> = std::result::Result<T, FirewallError>;

/// A firewall driver. All calls are batched: one call, one kernel transaction where the
/// backend allows it.
pub trait Backend: Send {
    /// `nftables`, `iptables` or `none`.
    fn name(&self) -> &'static str;

    /// Creates our table/chains/sets if they are missing and (re)writes our rules. Set
    /// elements (active bans) that are already there are kept. Safe to call again.
    fn setup(&mut self) -> Result<()>;

    /// Bans each address or network (an IPv6 /64, say) for its number of seconds. One
    /// that is already banned gets the new duration (extended or shortened to exactly that).
    fn ban(&mut self, bans: &[(IpNet, u64)]) -> Result<()>;

    /// Lifts bans. One that is not banned is not an error.
    fn unban(&mut self, nets: &[IpNet]) -> Result<()>;

    /// Replaces every ban the kernel holds with exactly `bans`, in one transaction where
    /// the backend can (no moment without the bans in force).
    fn replace_all(&mut self, bans: &[(IpNet, u64)]) -> Result<()>;

    /// The bans the kernel holds now.
    fn list(&mut self) -> Result<Vec<KernelBan>>;

    /// Whether the kernel expires bans by itself. When false the daemon must unban on time.
    fn kernel_expiry(&self) -> bool;

    /// The longest timeout the kernel keeps on an entry, in seconds. A longer ban is put in
    /// without a timeout and the daemon lifts it on time, as when `kernel_expiry` is false.
    fn kernel_max_timeout(&self) -> u64 {
        u64::MAX
    }

    /// Removes our table/chains/sets entirely (`install.sh --uninstall`).
    fn teardown(&mut self) -> Result<()>;
}

/// Opens the configured backend; `auto` takes nftables where `nft` works, else iptables.
/// The returned text says which was chosen and why, for the start-up log.
pub fn open(cfg: &Settings) -> Result<(Box<dyn Backend>, String)> {
    match cfg.backend {
        BackendChoice::Nftables => Ok((
            Box::new(Nftables::new(&cfg.table)),
            "nftables (configured)".into(),
        )),
        BackendChoice::Iptables => {
            let b = Iptables::new(&cfg.table);
            let how = if b.has_ipset() {
                "iptables with ipset (configured)"
            } else {
                "iptables without ipset: one rule per IP, expiry by the daemon (configured)"
            };
            Ok((Box::new(b), how.into()))
        }
        BackendChoice::None => Ok((
            Box::new(DryRun::default()),
            "none: a dry run, nothing is blocked (configured)".into(),
        )),
        BackendChoice::Auto => {
            if nft::usable() {
                Ok((
                    Box::new(Nftables::new(&cfg.table)),
                    "nftables (auto: `nft` works here)".into(),
                ))
            } else if iptables::usable() {
                let b = Iptables::new(&cfg.table);
                let how = if b.has_ipset() {
                    "iptables with ipset (auto: `nft` is missing or not usable)"
                } else {
                    "iptables without ipset (auto: `nft` and `ipset` are missing)"
                };
                Ok((Box::new(b), how.into()))
            } else {
                Err(FirewallError {
                    action: "choosing a firewall backend".into(),
                    detail: "neither `nft` nor `iptables` works here (are they installed, and are we root?). Install nftables, or set firewall.backend to \"none\" for a dry run".into(),
                })
            }
        }
    }
}

/// Runs a command with optional stdin; an error says what ran and what it printed.
fn run(action: &str, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let err = |detail: String| FirewallError {
        action: action.to_string(),
        detail,
    };
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd
        .spawn()
        .map_err(|e| err(format!("cannot run {program}: {e}")))?;
    if let Some(input) = stdin {
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(input)
                .map_err(|e| err(format!("writing to {program}: {e}")))?;
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("waiting for {program}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first: String = stderr.lines().take(5).collect::<Vec<_>>().join(" | ");
        return Err(err(format!(
            "`{program} {}` failed ({}): {first}",
            args.join(" "),
            out.status
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program --version`-style probing succeeds.
fn works(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
