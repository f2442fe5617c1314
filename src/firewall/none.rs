//! `none`: a dry run. Decisions are recorded and logged, nothing is blocked.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Backend, KernelBan, Result};

#[derive(Default)]
pub struct DryRun {
    bans: BTreeMap<IpAddr, u64>,
}

impl Backend for DryRun {
    fn name(&self) -> &'static str {
        "none"
    }

    fn setup(&mut self) -> Result<()> {
        Ok(())
    }

    fn ban(&mut self, bans: &[(IpAddr, u64)]) -> Result<()> {
        self.bans.extend(bans.iter().copied());
        Ok(())
    }

    fn unban(&mut self, ips: &[IpAddr]) -> Result<()> {
        for ip in ips {
            self.bans.remove(ip);
        }
        Ok(())
    }

    fn replace_all(&mut self, bans: &[(IpAddr, u64)]) -> Result<()> {
        self.bans = bans.iter().copied().collect();
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<KernelBan>> {
        Ok(self
            .bans
            .iter()
            .map(|(ip, s)| KernelBan {
                ip: *ip,
                remaining: Some(*s),
            })
            .collect())
    }

    fn kernel_expiry(&self) -> bool {
        false
    }

    fn teardown(&mut self) -> Result<()> {
        self.bans.clear();
        Ok(())
    }
}
