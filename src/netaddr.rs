//! Client addresses: parsing as they appear in logs, normalising, and CIDR ranges.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Parses a client address as a log writes it and normalises it: `[::1]` brackets and a
/// `%zone` are removed, and an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) becomes the
/// IPv4 address, so one client is one key however its server logged it.
pub fn parse_client_ip(text: &[u8]) -> Option<IpAddr> {
    let mut t = text;
    if t.len() > 2 && t[0] == b'[' {
        // "[2001:db8::1]" or "[2001:db8::1]:443"
        let end = t.iter().position(|&b| b == b']')?;
        t = &t[1..end];
    }
    if let Some(pct) = t.iter().position(|&b| b == b'%') {
        t = &t[..pct];
    }
    if t.is_empty() || t.len() > 45 {
        return None;
    }
    let s = std::str::from_utf8(t).ok()?;
    let ip = match IpAddr::from_str(s) {
        Ok(ip) => ip,
        // "1.2.3.4:5678", as some proxies log the peer.
        Err(_) => {
            let (host, port) = s.rsplit_once(':')?;
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || host.contains(':') {
                return None;
            }
            IpAddr::V4(Ipv4Addr::from_str(host).ok()?)
        }
    };
    Some(normalize(ip))
}

/// IPv4-mapped IPv6 becomes IPv4; everything else is unchanged.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Addresses that are never banned whatever the config says: a ban on them would cut the
/// host off from itself or is meaningless (the packet never crosses the firewall).
pub fn never_ban_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast() {
                Some("not a unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some("loopback")
            } else if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("not a unicast address")
            } else {
                None
            }
        }
    }
}

/// Why a text or a prefix length is not an address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("prefix /{prefix} is longer than {max} bits")]
    PrefixTooLong { prefix: u8, max: u8 },
    #[error("{0:?} is not an IPv4 or IPv6 address")]
    NotAnAddress(String),
    #[error("{0:?} is not a prefix length (0-128)")]
    NotAPrefix(String),
    /// The range as written, and the network it probably meant.
    #[error("{written} has host bits set; did you mean {meant}?")]
    HostBits { written: String, meant: String },
}

/// An address range such as `10.0.0.0/8`, `2001:db8::/32`, or one address (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, NetError> {
        let addr = normalize(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(NetError::PrefixTooLong { prefix, max });
        }
        Ok(IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// One address as a range (`/32` or `/128`).
    pub fn host(ip: IpAddr) -> Self {
        let addr = normalize(ip);
        IpNet {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// Whether this range is a single address.
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// Whether the two ranges share any address (one then contains the other).
    pub fn overlaps(&self, other: &IpNet) -> bool {
        let shorter = self.prefix.min(other.prefix);
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && mask(self.addr, shorter) == mask(other.addr, shorter)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = normalize(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

/// The source prefix an address is counted under by the burst valve: its IPv4 /24 or its
/// IPv6 /64, the block one operator (one subscriber, one host) typically holds.
pub fn source_prefix(ip: IpAddr) -> IpNet {
    let ip = normalize(ip);
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    IpNet {
        addr: mask(ip, prefix),
        prefix,
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix as u32)
            };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix as u32)
            };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for IpNet {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, NetError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| NetError::NotAnAddress(addr.to_string()))?;
        let prefix = match prefix {
            None => {
                if normalize(addr).is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(p) => p
                .parse::<u8>()
                .map_err(|_| NetError::NotAPrefix(p.to_string()))?,
        };
        let net = IpNet::new(addr, prefix)?;
        if mask(normalize(addr), prefix) != normalize(addr) {
            return Err(NetError::HostBits {
                written: s.to_string(),
                meant: format!("{}/{prefix}", net.addr),
            });
        }
        Ok(net)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn client_ips_are_normalised() {
        assert_eq!(parse_client_ip(b"::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(
            parse_client_ip(b"[2001:db8::1]:443"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_client_ip(b"fe80::1%eth0"), Some(ip("fe80::1")));
        assert_eq!(
            parse_client_ip(b"203.0.113.9:51234"),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(parse_client_ip(b"2001:DB8::A"), Some(ip("2001:db8::a")));
        assert_eq!(parse_client_ip(b"example.com"), None);
        assert_eq!(parse_client_ip(b"-"), None);
        assert_eq!(parse_client_ip(b"1.2.3.4.5"), None);
    }

    #[test]
    fn cidr_contains() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.1.1")));
        assert!(n.contains(ip("::ffff:10.0.0.1")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let six: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(six.contains(ip("2001:db8:ffff::1")));
        let one: IpNet = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        assert_eq!(
            "10.0.0.1/8".parse::<IpNet>().unwrap_err().to_string(),
            "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?"
        );
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    }

    #[test]
    fn hosts_and_overlaps() {
        let h = IpNet::host(ip("2001:db8:1:2::9"));
        assert!(h.is_host() && h.to_string() == "2001:db8:1:2::9/128");
        let n: IpNet = "2001:db8:1:2::/64".parse().unwrap();
        assert!(!n.is_host() && n.overlaps(&h) && h.overlaps(&n));
        assert!(!n.overlaps(&IpNet::host(ip("2001:db8:1:3::9"))));
        assert!(!n.overlaps(&"10.0.0.0/8".parse().unwrap()));
        assert!(n.overlaps(&"2001:db8::/32".parse().unwrap()));
    }

    #[test]
    fn source_prefixes_are_a_v4_24_and_a_v6_64() {
        assert_eq!(
            source_prefix(ip("203.0.113.77")).to_string(),
            "203.0.113.0/24"
        );
        assert_eq!(
            source_prefix(ip("2001:db8:1:2:aaaa::9")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            source_prefix(ip("::ffff:10.1.2.3")).to_string(),
            "10.1.2.0/24"
        );
    }

    #[test]
    fn never_ban_covers_loopback_and_link_local() {
        assert!(never_ban_reason(ip("127.0.0.5")).is_some());
        assert!(never_ban_reason(ip("::1")).is_some());
        assert!(never_ban_reason(ip("169.254.3.3")).is_some());
        assert!(never_ban_reason(ip("fe80::2")).is_some());
        assert!(never_ban_reason(ip("203.0.113.7")).is_none());
    }
}
