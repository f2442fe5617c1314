//! The never-ban list: addresses no log line can get banned (loopback and other special
//! ranges, this host, Docker's gateways and networks, the allowlist).

use std::net::IpAddr;

use crate::config::Config;
use crate::netaddr::{never_ban_reason, IpNet};

/// Addresses that are never banned, whatever the logs say.
#[derive(Debug, Clone, Default)]
pub struct NeverBan {
    pub allowlist: Vec<IpNet>,
    /// The host's own addresses (which include the Docker bridge gateways).
    pub host: Vec<IpAddr>,
    /// Docker's networks, kept current by the daemon.
    pub docker_networks: Vec<DockerNetwork>,
    /// Whether addresses inside Docker's networks may be banned (`docker.ban_internal_addresses`);
    /// gateways never are.
    pub ban_internal: bool,
}

/// One Docker network, as the never-ban list needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub name: String,
    pub subnet: IpNet,
    pub gateway: Option<IpAddr>,
    /// The containers attached to it inside `subnet`: name and address, sorted.
    pub containers: Vec<(String, IpAddr)>,
}

impl NeverBan {
    /// The list a config asks for, with the host's own addresses (read at the edge, see
    /// `crate::host::addresses`).
    pub fn from_config(cfg: &Config, host: Vec<IpAddr>) -> Self {
        NeverBan {
            allowlist: cfg.allowlist.clone(),
            host,
            docker_networks: Vec::new(),
            ban_internal: cfg.docker.ban_internal_addresses,
        }
    }

    /// Why `ip` must never be banned, if it must not.
    pub fn reason(&self, ip: IpAddr) -> Option<String> {
        if let Some(r) = never_ban_reason(ip) {
            return Some(r.to_string());
        }
        if self.host.contains(&ip) {
            return Some("an address of this host".into());
        }
        if let Some(n) = self.docker_networks.iter().find(|n| n.gateway == Some(ip)) {
            return Some(format!("the gateway of Docker network {} (connections through docker-proxy appear to come from it)", n.name));
        }
        if !self.ban_internal {
            if let Some(n) = self.docker_networks.iter().find(|n| n.subnet.contains(ip)) {
                return Some(format!(
                    "inside Docker network {} ({}): most likely a reverse-proxy container in front of the app, and banning it would cut every visitor off. \
                     Watch the proxy container's log instead, or add \"docker\" (or its address) to trusted_proxies so the client is taken from X-Forwarded-For; \
                     docker.ban_internal_addresses allows such bans",
                    n.name, n.subnet
                ));
            }
        }
        self.allowlist
            .iter()
            .find(|n| n.contains(ip))
            .map(|n| format!("on the allowlist ({n})"))
    }

    /// Why the range `net` must never be banned, if it must not: for a network (an IPv6
    /// /64), when it holds any never-ban address or overlaps a never-ban range.
    pub fn reason_net(&self, net: IpNet) -> Option<String> {
        if net.is_host() {
            return self.reason(net.addr());
        }
        if let Some(r) = never_ban_reason(net.addr()) {
            return Some(format!("{net}: {r}"));
        }
        if let Some(h) = self.host.iter().find(|h| net.contains(**h)) {
            return Some(format!("{net}, which holds an address of this host ({h})"));
        }
        for n in &self.docker_networks {
            if n.gateway.is_some_and(|g| net.contains(g))
                || (!self.ban_internal && n.subnet.overlaps(&net))
            {
                return Some(format!(
                    "{net}, which overlaps Docker network {} ({})",
                    n.name, n.subnet
                ));
            }
        }
        self.allowlist
            .iter()
            .find(|n| n.overlaps(&net))
            .map(|n| format!("{net}, which overlaps the allowlist ({n})"))
    }
}
