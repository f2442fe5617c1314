//! What this host is, read from the kernel: its own addresses (never banned).

use std::net::IpAddr;

/// The addresses of this host's interfaces (in the current network namespace).
pub fn addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    // /proc/net/fib_trie lists local IPv4 addresses as "/32 host LOCAL" entries.
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in text.lines() {
            let t = line.trim_start_matches([' ', '|', '-', '+', '`']);
            if let Ok(ip) = t.trim().parse::<IpAddr>() {
                last = Some(ip);
            } else if line.contains("/32 host LOCAL") {
                if let Some(ip) = last {
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/if_inet6") {
        for line in text.lines() {
            if let Some(hex) = line.split_whitespace().next() {
                if let Ok(bits) = u128::from_str_radix(hex, 16) {
                    let ip = IpAddr::V6(bits.into());
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_addresses_are_read() {
        let own = super::addresses();
        assert!(own.contains(&"127.0.0.1".parse().unwrap()), "{own:?}");
    }
}
