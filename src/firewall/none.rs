//! `none`: a dry run. Decisions are recorded and logged, nothing is blocked.

use std::collections::BTreeMap;

use super::{Backend, KernelBan, Result};
use crate::netaddr::IpNet;

#[derive(Default)]
pub struct DryRun {
    bans: BTreeMap<IpNet, u64>,
}

impl Backend for DryRun {
    fn name(&self) -> &'static str {
        "none"
    }

    fn setup(&mut self) -> Result<()> {
        Ok(())
    }

    fn ban(&mut self, bans: &[(IpNet, u64)]) -> Result<()> {
        self.bans.extend(bans.iter().copied());
        Ok(())
    }

    fn unban(&mut self, nets: &[IpNet]) -> Result<()> {
        for net in nets {
            self.bans.remove(net);
        }
        Ok(())
    }

    fn replace_all(&mut self, bans: &[(IpNet, u64)]) -> Result<()> {
        self.bans = bans.iter().copied().collect();
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<KernelBan>> {
        Ok(self
            .bans
            .iter()
            .map(|(net, s)| KernelBan {
                net: *net,
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
