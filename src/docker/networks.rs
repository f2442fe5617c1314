//! Docker's networks: every subnet and gateway, read through the API and kept current.
//!
//! An address inside one of them, seen as a client in a log, is a container: usually a
//! reverse proxy in front of the app, or docker-proxy's gateway. Those are never banned
//! (banning would cut every visitor off) and, with `trusted_proxies: ["docker"]`, they are
//! the proxies whose forwarded header names the real client.

use std::time::Duration;

use crate::enforce::DockerNetwork;
use crate::netaddr::parse_client_ip;

/// How often the watcher reads the list again, besides whenever a network event says so.
pub const POLL_EVERY: Duration = Duration::from_secs(3);

/// Every subnet of every Docker network.
pub async fn list(docker: &bollard::Docker) -> Result<Vec<DockerNetwork>, String> {
    let networks = docker
        .list_networks(None)
        .await
        .map_err(|e| format!("listing Docker networks: {e}"))?;
    let mut out = Vec::new();
    for n in networks {
        let name = n.name.unwrap_or_default();
        for c in n.ipam.and_then(|i| i.config).unwrap_or_default() {
            let Some(subnet) = c.subnet.as_deref().and_then(|s| s.parse().ok()) else {
                continue;
            };
            out.push(DockerNetwork {
                name: name.clone(),
                subnet,
                gateway: c
                    .gateway
                    .as_deref()
                    .and_then(|g| parse_client_ip(g.as_bytes())),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, a.subnet.to_string()).cmp(&(&b.name, b.subnet.to_string())));
    Ok(out)
}
