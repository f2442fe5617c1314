//! Docker's networks: every subnet and gateway, read through the API and kept current.
//!
//! An address inside one of them, seen as a client in a log, is a container: usually a
//! reverse proxy in front of the app, or docker-proxy's gateway. Those are never banned
//! (banning would cut every visitor off) and, with `trusted_proxies: ["docker"]`, they are
//! the proxies whose forwarded header names the real client.

use std::net::IpAddr;
use std::time::Duration;

use crate::ban::DockerNetwork;
use crate::netaddr::{parse_client_ip, IpNet};

/// How often the watcher reads the list again, besides whenever a network event says so.
pub const POLL_EVERY: Duration = Duration::from_secs(3);

/// Docker did not answer the list of networks (the watcher tries again at the next poll).
#[derive(Debug, thiserror::Error)]
#[error("listing Docker networks: {0}")]
pub struct ListError(bollard::errors::Error);

/// Every subnet of every Docker network, with the containers attached to it (for
/// `trusted_proxies: ["container:NAME"]`: a container's address changes when it is
/// recreated, its name does not).
pub async fn list(docker: &bollard::Docker) -> Result<Vec<DockerNetwork>, ListError> {
    let networks = docker.list_networks(None).await.map_err(ListError)?;
    let mut out = Vec::new();
    for n in networks {
        let name = n.name.unwrap_or_default();
        let attached = attached(docker, n.id.as_deref().unwrap_or(&name)).await;
        for c in n.ipam.and_then(|i| i.config).unwrap_or_default() {
            let Some(subnet) = c.subnet.as_deref().and_then(|s| s.parse::<IpNet>().ok()) else {
                continue;
            };
            let mut containers: Vec<(String, IpAddr)> = attached
                .iter()
                .filter(|(_, a)| subnet.contains(*a))
                .cloned()
                .collect();
            containers.sort();
            out.push(DockerNetwork {
                name: name.clone(),
                subnet,
                gateway: c
                    .gateway
                    .as_deref()
                    .and_then(|g| parse_client_ip(g.as_bytes())),
                containers,
            });
        }
    }
    out.sort_by(|a, b| (&a.name, a.subnet.to_string()).cmp(&(&b.name, b.subnet.to_string())));
    Ok(out)
}

/// The containers attached to network `id`: name and each address (`172.18.0.5/16` as
/// Docker writes it). A network that cannot be read has none (it may just have gone).
async fn attached(docker: &bollard::Docker, id: &str) -> Vec<(String, IpAddr)> {
    let Ok(n) = docker.inspect_network(id, None).await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in n.containers.unwrap_or_default().into_values() {
        let Some(name) = c.name else { continue };
        let name = name.trim_start_matches('/').to_string();
        for a in [c.ipv4_address, c.ipv6_address].into_iter().flatten() {
            let addr = a.split('/').next().unwrap_or_default();
            if let Some(ip) = parse_client_ip(addr.as_bytes()) {
                out.push((name.clone(), ip));
            }
        }
    }
    out
}
