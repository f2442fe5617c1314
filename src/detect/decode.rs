//! Normalising a field before rules look at it.
//!
//! Attackers encode payloads so that a naive pattern misses them: `%27` for `'`,
//! `%252e%252e` (encoded twice) for `..`, `+` for a space in a query, mixed case. nginx
//! writes bytes it will not print as `\xHH`. Everything is decoded into one canonical
//! form first so the rules can be written once, in lowercase, against plain text.

/// Turns nginx/Apache `\xHH` escapes back into the bytes they stand for, and Apache's
/// `\"` and `\\` into `"` and `\`.
pub fn unescape_log(input: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'\\' && i + 1 < input.len() {
            match input[i + 1] {
                b'x' if i + 3 < input.len() => {
                    if let (Some(h), Some(l)) = (hex(input[i + 2]), hex(input[i + 3])) {
                        out.push(h << 4 | l);
                        i += 4;
                        continue;
                    }
                }
                b'"' | b'\\' => {
                    out.push(input[i + 1]);
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b);
        i += 1;
    }
}

#[inline]
fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `input` onto `out`. `%uHHHH` (IIS style) is decoded too, to UTF-8.
/// Invalid sequences are kept as they are. With `plus_is_space`, `+` becomes a space (as
/// in a query string). Returns whether anything was decoded.
pub fn percent_decode(input: &[u8], plus_is_space: bool, out: &mut Vec<u8>) -> bool {
    let mut changed = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if i + 2 < input.len() {
                if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                    out.push(h << 4 | l);
                    i += 3;
                    changed = true;
                    continue;
                }
            }
            if i + 5 < input.len() && (input[i + 1] == b'u' || input[i + 1] == b'U') {
                let digits = &input[i + 2..i + 6];
                if digits.iter().all(|&d| hex(d).is_some()) {
                    let v = digits
                        .iter()
                        .fold(0u32, |acc, &d| acc * 16 + hex(d).unwrap_or(0) as u32);
                    let c = char::from_u32(v).unwrap_or('\u{fffd}');
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                    changed = true;
                    continue;
                }
            }
        } else if b == b'+' && plus_is_space {
            out.push(b' ');
            i += 1;
            changed = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    changed
}

/// Whether there is anything for [`percent_decode`] to do.
#[inline]
pub fn needs_percent_decode(input: &[u8], plus_is_space: bool) -> bool {
    if plus_is_space {
        memchr::memchr2(b'%', b'+', input).is_some()
    } else {
        memchr::memchr(b'%', input).is_some()
    }
}

/// Reusable buffers for decoding one field without allocating per line.
#[derive(Default)]
pub struct Scratch {
    a: Vec<u8>,
    b: Vec<u8>,
}

impl Scratch {
    /// Decodes a URL component: percent-decoding, applied twice to undo double encoding
    /// (`%2527` → `%27` → `'`), then ASCII lowercase. The result lands in `out`.
    pub fn url(&mut self, input: &[u8], plus_is_space: bool, keep_case: bool, out: &mut Vec<u8>) {
        out.clear();
        if !needs_percent_decode(input, plus_is_space) {
            push_case(input, keep_case, out);
            return;
        }
        self.a.clear();
        percent_decode(input, plus_is_space, &mut self.a);
        if needs_percent_decode(&self.a, false) {
            self.b.clear();
            percent_decode(&self.a, false, &mut self.b);
            push_case(&self.b, keep_case, out);
        } else {
            push_case(&self.a, keep_case, out);
        }
    }
}

#[inline]
fn push_case(input: &[u8], keep_case: bool, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(input);
    if !keep_case {
        out[start..].make_ascii_lowercase();
    }
}

/// Lowercases `input` into `out` (ASCII only: non-ASCII bytes pass unchanged).
#[inline]
pub fn lower_into(input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    push_case(input, false, out);
}

/// Makes a log excerpt safe to show: control characters and invalid UTF-8 are escaped,
/// and it is cut to `max` characters with a marker.
pub fn escape_excerpt(input: &[u8], max: usize) -> String {
    escape_text(&String::from_utf8_lossy(input), max, true)
}

/// Escapes control characters, bidirectional overrides and line separators as `\xHH` or
/// `\u{H}`, and cuts to `max` characters with a marker. `double_backslashes` for raw
/// text; text that is already escaped (evidence from the ban book) keeps its
/// backslashes as they are.
pub fn escape_text(text: &str, max: usize, double_backslashes: bool) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 8);
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        match c {
            '\\' if double_backslashes => out.push_str("\\\\"),
            c if c.is_control() => {
                let v = c as u32;
                if v < 0x100 {
                    out.push_str(&format!("\\x{v:02x}"));
                } else {
                    out.push_str(&format!("\\u{{{v:x}}}"));
                }
            }
            // Bidirectional overrides can make a log line read differently from what it is.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str, plus: bool) -> String {
        let mut out = Vec::new();
        Scratch::default().url(s.as_bytes(), plus, false, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn double_encoding_and_plus_and_case() {
        assert_eq!(url("%2527%20UNION+SELECT", true), "' union select");
        assert_eq!(url("a+b", false), "a+b");
        assert_eq!(url("%252e%252e%252f", false), "../");
        assert_eq!(url("%u002e%u002e/", false), "../");
        assert_eq!(url("100%", true), "100%");
        assert_eq!(url("%zz%4", true), "%zz%4");
    }

    #[test]
    fn nginx_escapes_become_bytes() {
        let mut out = Vec::new();
        unescape_log(br#"\x16\x03\x01 \"q\" \\ \xZZ end\x4"#, &mut out);
        assert_eq!(out, b"\x16\x03\x01 \"q\" \\ \\xZZ end\\x4".to_vec());
    }

    #[test]
    fn excerpts_escape_controls_and_truncate() {
        assert_eq!(
            escape_excerpt(b"a\x1b[31mb\n\xff", 100),
            "a\\x1b[31mb\\x0a\u{fffd}"
        );
        assert_eq!(escape_excerpt(b"abcdef", 3), "abc…");
    }
}
