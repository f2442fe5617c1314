//! Named building blocks for log-line regexes (`%{IP}`, `%{ISO_TIME}`, ...), so that no
//! profile and no operator's `formats` entry writes an address or a time by hand again.
//! A hand-written address class is where parsers go quietly wrong: `[\d.]+` swallows the
//! full stop that ends Vaultwarden's sentence, `\S+` swallows Gitea's `:port:`, and the
//! line then carries no usable address without any error.

/// IPv4, at most three digits per part (the address parser checks the values).
const IPV4: &str = r"\d{1,3}(?:\.\d{1,3}){3}";
/// IPv6 (with an optional embedded IPv4 tail); it ends on a hex digit, so a `:` after the
/// address (Gitea's `ADDRESS:PORT:`) stays outside.
const IPV6: &str = r"[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:]*[0-9A-Fa-f](?:(?:\.\d{1,3}){3})?";

/// The blocks, by name: what each expands to.
pub const BLOCKS: &[(&str, &str, &str)] = &[
    (
        "IP",
        "the client address: IPv4 or IPv6, optionally in [brackets] and/or with :port",
        "",
    ),
    (
        "ISO_TIME",
        "2024-01-15T10:00:00.123Z, 2024-01-15 10:00:00,123 +01:00",
        r"(?P<time>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?: ?(?:Z|[+-]\d{2}:?\d{2}))?)",
    ),
    (
        "SYSLOG_TIME",
        "Jan  5 10:00:00 (the year is the reader's)",
        r"(?P<time>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2})",
    ),
    (
        "CLF_TIME",
        "15/Jan/2024:10:00:00 +0000",
        r"(?P<time>\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})",
    ),
    (
        "SLASH_TIME",
        "2024/01/15 10:00:00 (nginx's error log, Gitea)",
        r"(?P<time>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})",
    ),
    (
        "MYSQL_TIME",
        "240115 10:00:00 (MariaDB, old MySQL)",
        r"(?P<time>\d{6} [ \d]\d:\d{2}:\d{2})",
    ),
    (
        "EPOCH",
        "1705312800 or 1705312800.123 (seconds, or ms/µs/ns)",
        r"(?P<time>\d{9,19}(?:\.\d+)?)",
    ),
    (
        "REQUEST",
        "GET /path?q HTTP/1.1 (the request line, without quotes)",
        r"(?P<request>[A-Za-z]+ \S+(?: HTTP/[\d.]+)?)",
    ),
    ("STATUS", "a three-digit status", r"(?P<status>[1-5]\d\d)"),
];

fn ip_block() -> String {
    format!(r"(?P<ip>\[(?:{IPV4}|{IPV6})\](?::\d{{1,5}})?|{IPV4}(?::\d{{1,5}})?|{IPV6})")
}

/// A `%{NAME}` that names no block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown building block %{{{name}}} (known: {})", known())]
pub struct UnknownBlock {
    pub name: String,
}

fn known() -> String {
    BLOCKS
        .iter()
        .map(|(n, _, _)| format!("%{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces every `%{NAME}` in `pattern` by its block. A `%` not followed by `{` is left
/// alone, so patterns without blocks come out unchanged.
pub fn expand(pattern: &str) -> Result<String, UnknownBlock> {
    if !pattern.contains("%{") {
        return Ok(pattern.to_string());
    }
    let mut out = String::with_capacity(pattern.len() + 64);
    let mut rest = pattern;
    while let Some(at) = rest.find("%{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return Ok(out);
        };
        let name = &after[..end];
        if name == "IP" {
            out.push_str(&ip_block());
        } else {
            let Some((_, _, re)) = BLOCKS.iter().find(|(n, _, _)| *n == name) else {
                return Err(UnknownBlock {
                    name: name.to_string(),
                });
            };
            out.push_str(re);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn ip_of(pattern: &str, line: &str) -> Option<String> {
        let re = Regex::new(&expand(pattern).expect("known blocks")).expect("compiles");
        re.captures(line)
            .and_then(|c| c.name("ip"))
            .map(|m| m.as_str().to_string())
    }

    #[test]
    fn the_address_block_stops_where_the_address_does() {
        // Vaultwarden ends its sentence with a full stop.
        assert_eq!(
            ip_of(r"IP: %{IP}\.", "Try again. IP: 192.0.2.7. Username: a."),
            Some("192.0.2.7".into())
        );
        // Gitea writes ADDRESS:PORT: and the port is not part of the address.
        assert_eq!(
            ip_of(r"from %{IP}:", "attempt for x from 192.0.2.7:54321: user"),
            Some("192.0.2.7:54321".into())
        );
        assert_eq!(
            ip_of(
                r"from %{IP}:",
                "attempt for x from [2001:db8::7]:54321: user"
            ),
            Some("[2001:db8::7]:54321".into())
        );
        assert_eq!(
            ip_of(r"client: %{IP},", "failed, client: 2001:db8::7, server: a"),
            Some("2001:db8::7".into())
        );
        assert_eq!(
            ip_of(r"rip=%{IP},", "auth failed, rip=::ffff:192.0.2.7, lip=x"),
            Some("::ffff:192.0.2.7".into())
        );
        assert_eq!(ip_of(r"^%{IP} ", "example.com - -"), None);
    }

    #[test]
    fn every_block_compiles_and_unknown_ones_are_named() {
        for (name, _, _) in BLOCKS {
            let p = format!("^%{{{name}}}$");
            Regex::new(&expand(&p).expect("known")).expect("compiles");
        }
        let e = expand("%{IPADDR} x").unwrap_err();
        assert!(e.to_string().contains("%{IPADDR}") && e.to_string().contains("%{IP}"));
        assert_eq!(expand(r"100% \d{2}").unwrap(), r"100% \d{2}");
    }

    #[test]
    fn times_read_back() {
        for (block, line) in [
            ("ISO_TIME", "2024-01-15T10:00:00.123Z"),
            ("ISO_TIME", "2024-01-15 10:00:00,123 +01:00"),
            ("SLASH_TIME", "2024/01/15 10:00:00"),
            ("MYSQL_TIME", "240115 10:00:00"),
            ("MYSQL_TIME", "240115  1:00:00"),
            ("CLF_TIME", "15/Jan/2024:10:00:00 +0000"),
            ("EPOCH", "1705312800.123"),
        ] {
            let re = Regex::new(&expand(&format!("^%{{{block}}}$")).unwrap()).unwrap();
            let t = re
                .captures(line)
                .and_then(|c| c.name("time"))
                .map(|m| m.as_str());
            assert_eq!(t, Some(line), "{block}");
            assert!(crate::time::parse_time(line.as_bytes()).is_some(), "{line}");
        }
    }
}
