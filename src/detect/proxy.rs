//! Who the client is when a reverse proxy logged the request.
//!
//! An app behind a proxy container logs the proxy's address as the client of every
//! request. When that logged peer is a trusted proxy, the client is taken from the
//! forwarded field the format carries (`X-Forwarded-For`, `X-Real-IP`, or a named group):
//! the right-most address that is not itself a trusted proxy, since every proxy appends
//! the address it received the request from and only those appended by trusted proxies
//! can be believed. A forwarded field from an untrusted peer is ignored: anyone can
//! write one, naming any victim.

use std::net::IpAddr;

use crate::netaddr::{parse_client_ip, IpNet};

/// Proxies whose forwarded header (`X-Forwarded-For`, `X-Real-IP`, or a format's
/// forwarded field) names the real client.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrustedProxies {
    pub nets: Vec<IpNet>,
    /// `"docker"` in the list: the containers of every Docker network are trusted.
    pub docker: bool,
    /// `"container:NAME"` entries: these containers' addresses, wherever Docker puts them.
    pub containers: Vec<String>,
}

/// The client of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    /// The trusted proxy that logged it, when the client came from a forwarded field.
    pub via: Option<IpAddr>,
}

#[derive(Debug, Clone, Default)]
pub struct ProxyResolver {
    trusted: Vec<IpNet>,
    trust_docker: bool,
    docker_networks: Vec<IpNet>,
    /// The networks' gateways: the host's side of each bridge. Connections through
    /// docker-proxy (published IPv6 ports, hairpin to 127.0.0.1) arrive from them with
    /// whatever `X-Forwarded-For` the client itself wrote, so they are never trusted.
    docker_gateways: Vec<IpAddr>,
    /// `"container:NAME"` entries, and the addresses those containers have now.
    named: Vec<String>,
    named_addrs: Vec<IpAddr>,
}

impl ProxyResolver {
    pub fn new(cfg: &TrustedProxies) -> Self {
        ProxyResolver {
            trusted: cfg.nets.clone(),
            trust_docker: cfg.docker,
            docker_networks: Vec::new(),
            docker_gateways: Vec::new(),
            named: cfg.containers.clone(),
            named_addrs: Vec::new(),
        }
    }

    /// Docker's networks and their gateways as they are now (kept current by the
    /// daemon). With `trusted_proxies: ["docker"]` the containers' addresses inside those
    /// networks are trusted; the gateways never are.
    pub fn set_docker_networks(
        &mut self,
        nets: Vec<IpNet>,
        gateways: Vec<IpAddr>,
        containers: &[(String, IpAddr)],
    ) {
        self.named_addrs = containers
            .iter()
            .filter(|(name, ip)| self.named.contains(name) && !gateways.contains(ip))
            .map(|(_, ip)| *ip)
            .collect();
        self.docker_networks = nets;
        self.docker_gateways = gateways;
    }

    pub fn is_active(&self) -> bool {
        !self.trusted.is_empty()
            || !self.named_addrs.is_empty()
            || (self.trust_docker && !self.docker_networks.is_empty())
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
            || self.named_addrs.contains(&ip)
            || self.is_docker_container(ip)
    }

    /// A container's address on a Docker network, when `"docker"` is trusted: inside a
    /// network's subnet and not its gateway (nor the network's own address).
    fn is_docker_container(&self, ip: IpAddr) -> bool {
        self.trust_docker
            && !self.docker_gateways.contains(&ip)
            && self
                .docker_networks
                .iter()
                .any(|n| n.contains(ip) && ip != n.addr())
    }

    /// The client of a request logged with peer address `peer` and forwarded field
    /// `forwarded` (empty when the format has none).
    pub fn client(&self, peer: IpAddr, forwarded: &[u8]) -> Client {
        let own = Client {
            ip: peer,
            via: None,
        };
        if forwarded.is_empty() || !self.is_active() || !self.is_trusted(peer) {
            return own;
        }
        for entry in forwarded.rsplit(|&b| b == b',') {
            let entry = trim(entry);
            if entry.is_empty() {
                continue;
            }
            match parse_client_ip(entry) {
                Some(ip) if self.is_trusted(ip) => continue,
                Some(ip) => {
                    return Client {
                        ip,
                        via: Some(peer),
                    }
                }
                // "unknown", a hostname or garbage: nothing left of it can be believed,
                // so the proxy stays the client (and is never banned as such).
                None => return own,
            }
        }
        own
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t' | b'"', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t' | b'"'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolver(nets: &[&str], docker: bool) -> ProxyResolver {
        let mut r = ProxyResolver::new(&TrustedProxies {
            nets: nets.iter().map(|n| n.parse().unwrap()).collect(),
            docker,
            containers: Vec::new(),
        });
        r.set_docker_networks(
            vec![
                "172.18.0.0/16".parse().unwrap(),
                "fd00:d0c::/64".parse().unwrap(),
            ],
            vec![ip("172.18.0.1"), ip("fd00:d0c::1")],
            &[],
        );
        r
    }

    #[test]
    fn a_named_proxy_container_is_trusted_wherever_docker_puts_it() {
        let mut r = ProxyResolver::new(&TrustedProxies {
            nets: Vec::new(),
            docker: false,
            containers: vec!["traefik".into()],
        });
        let subnet = || vec!["172.18.0.0/16".parse().unwrap()];
        let gateways = vec![ip("172.18.0.1")];
        let attached = [
            ("traefik".to_string(), ip("172.18.0.7")),
            ("app".to_string(), ip("172.18.0.8")),
        ];
        r.set_docker_networks(subnet(), gateways.clone(), &attached);
        assert_eq!(
            r.client(ip("172.18.0.7"), b"203.0.113.5").ip,
            ip("203.0.113.5")
        );
        // Another container on the same network is not the proxy named.
        assert_eq!(
            r.client(ip("172.18.0.8"), b"203.0.113.5").ip,
            ip("172.18.0.8")
        );
        // Recreated with another address: the new one is trusted, the old one no more.
        let moved = [("traefik".to_string(), ip("172.18.0.9"))];
        r.set_docker_networks(subnet(), gateways, &moved);
        assert!(r.is_trusted(ip("172.18.0.9")) && !r.is_trusted(ip("172.18.0.7")));
        assert!(!r.is_trusted(ip("172.18.0.1")));
    }

    #[test]
    fn a_trusted_proxy_gives_the_right_most_untrusted_address() {
        let r = resolver(&["10.0.0.0/8"], false);
        let c = r.client(ip("10.0.0.5"), b"198.51.100.7, 203.0.113.9, 10.0.0.9");
        assert_eq!(
            c,
            Client {
                ip: ip("203.0.113.9"),
                via: Some(ip("10.0.0.5"))
            }
        );
        // X-Real-IP style: one address; IPv6 with brackets and port; mapped IPv4.
        assert_eq!(
            r.client(ip("10.0.0.5"), b"[2001:db8::7]:4431").ip,
            ip("2001:db8::7")
        );
        assert_eq!(
            r.client(ip("10.0.0.5"), b"::ffff:203.0.113.4").ip,
            ip("203.0.113.4")
        );
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_client_is_ignored() {
        let r = resolver(&["10.0.0.0/8"], true);
        // The attacker writes a victim's address into X-Forwarded-For itself.
        let c = r.client(ip("198.51.100.66"), b"203.0.113.200");
        assert_eq!(
            c,
            Client {
                ip: ip("198.51.100.66"),
                via: None
            }
        );
        // Through a trusted proxy, the attacker's own left-most entry is not believed:
        // the proxy appended the address it really saw.
        let c = r.client(ip("10.0.0.5"), b"203.0.113.200, 198.51.100.66");
        assert_eq!(c.ip, ip("198.51.100.66"));
    }

    #[test]
    fn docker_networks_are_trusted_only_when_asked() {
        assert_eq!(
            resolver(&[], true)
                .client(ip("172.18.0.5"), b"203.0.113.1")
                .ip,
            ip("203.0.113.1")
        );
        assert_eq!(
            resolver(&[], false)
                .client(ip("172.18.0.5"), b"203.0.113.1")
                .ip,
            ip("172.18.0.5")
        );
    }

    #[test]
    fn a_docker_gateway_is_never_a_proxy() {
        // docker-proxy forwards published IPv6 ports and hairpin connections from the
        // bridge gateway, carrying the client's own X-Forwarded-For: a victim's address.
        let r = resolver(&[], true);
        for gw in ["172.18.0.1", "fd00:d0c::1"] {
            assert_eq!(r.client(ip(gw), b"203.0.113.200").ip, ip(gw));
        }
        assert!(!r.is_trusted(ip("172.18.0.1")));
        assert!(!r.is_trusted(ip("172.18.0.0")));
        // A container on the same network is still the proxy it is.
        assert_eq!(
            r.client(ip("fd00:d0c::5"), b"203.0.113.1").ip,
            ip("203.0.113.1")
        );
    }

    #[test]
    fn garbage_or_only_proxies_leave_the_proxy_as_the_client() {
        let r = resolver(&["10.0.0.0/8"], false);
        assert_eq!(r.client(ip("10.0.0.5"), b"unknown").ip, ip("10.0.0.5"));
        assert_eq!(
            r.client(ip("10.0.0.5"), b"10.0.0.7, 10.0.0.8").ip,
            ip("10.0.0.5")
        );
        assert_eq!(r.client(ip("10.0.0.5"), b"").ip, ip("10.0.0.5"));
        assert_eq!(
            r.client(ip("10.0.0.5"), b"203.0.113.1, not-an-ip").ip,
            ip("10.0.0.5")
        );
    }
}
