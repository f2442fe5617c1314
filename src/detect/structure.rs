//! Structural analysis of values: a value is tokenized as SQL and as HTML/JavaScript and
//! the token sequence is judged (libinjection's fingerprints, through a pure-Rust port),
//! instead of matching ever longer regexes. A search for `select a wine` or `O'Brien`
//! tokenizes as words; `1' or '1'='1` tokenizes as a string, a logic operator and a
//! comparison, whatever spacing, case or comments it is written with.
//!
//! Each value is judged on its own: a query parameter's value (and name), a path
//! segment, a referer's parameters. Values are bounded ([`MAX_VALUE`]) and most are
//! skipped before tokenizing: a value of letters, digits and `-._~` cannot be either.

/// What a value is tokenized as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analyzer {
    Sqli,
    Xss,
    /// A shell command word split by quotes or backslashes (`'wh'oami`, `c\url`).
    Shell,
}

impl Analyzer {
    pub fn parse(name: &str) -> Option<Analyzer> {
        match name {
            "sqli" => Some(Analyzer::Sqli),
            "xss" => Some(Analyzer::Xss),
            "shell" => Some(Analyzer::Shell),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Analyzer::Sqli => "sqli",
            Analyzer::Xss => "xss",
            Analyzer::Shell => "shell",
        }
    }

    /// Whether `value` (decoded) is an injection of this kind.
    pub fn judges(self, value: &[u8]) -> bool {
        let mut v = &value[..value.len().min(MAX_VALUE)];
        if self == Analyzer::Xss {
            v = without_xml_declaration(v);
        }
        if !could_be(self, v) {
            return false;
        }
        match self {
            Analyzer::Sqli => match prose_asides(v) {
                Some(plain) => libinjectionrs::detect_sqli(&plain).is_injection(),
                None => libinjectionrs::detect_sqli(v).is_injection(),
            },
            Analyzer::Xss => !is_css_declaration(v) && libinjectionrs::detect_xss(v).is_injection(),
            Analyzer::Shell => split_command(v),
        }
    }
}

/// The longest part of one value that is tokenized; request fields over 8 KiB are
/// refused by nginx and Apache, and a longer value is the oversized-field rule's.
pub const MAX_VALUE: usize = 8 << 10;

/// Whether a value holds anything either tokenizer could find: a value of letters,
/// digits and `-._~` (ids, slugs, single words) is one plain token.
fn could_be(a: Analyzer, v: &[u8]) -> bool {
    match a {
        // Without punctuation, SQL needs one of its keywords to be more than words.
        Analyzer::Sqli => {
            v.iter().any(|&b| {
                !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b' ' | b','))
            }) || has_sql_word(v)
        }
        Analyzer::Xss => v
            .iter()
            .any(|&b| matches!(b, b'<' | b'>' | b'"' | b'\'' | b'`' | b'=' | b':' | b'(')),
        Analyzer::Shell => v.iter().copied().any(is_shell_quote),
    }
}

/// A value written as text writes asides in parentheses after a space: `Left (WA, RR)`,
/// `one quarter (24%)`, `while (foo) is bar`. SQL's tokenizer reads `left (`, `quarter (`
/// and `while (` as calls of the functions of those names, and a sentence then
/// fingerprints as an injection. In a value with nothing else of SQL about it (no quote,
/// comment, statement end or operator), such a parenthesis is punctuation: the value is
/// judged with the parentheses that follow a space (and their closing ones) as spaces.
/// A call as an injection writes it (`sleep(5)`, `(select(0)from(...))`) is judged as
/// it is. None: the value has no such aside, or has something else of SQL.
fn prose_asides(v: &[u8]) -> Option<Vec<u8>> {
    let sql_like = |b: u8| {
        matches!(
            b,
            b'\''
                | b'"'
                | b'`'
                | b';'
                | b'#'
                | b'='
                | b'<'
                | b'>'
                | b'|'
                | b'&'
                | b'*'
                | b'@'
                | b'\\'
        )
    };
    if v.iter().any(|&b| sql_like(b)) || memchr::memmem::find(v, b"--").is_some() {
        return None;
    }
    let aside = |i: usize| v[i] == b'(' && i > 0 && v[i - 1].is_ascii_whitespace();
    if !(0..v.len()).any(aside) {
        return None;
    }
    let mut out = v.to_vec();
    // Whether each open parenthesis is an aside, innermost last.
    let mut open: Vec<bool> = Vec::new();
    for (i, b) in out.iter_mut().enumerate() {
        match *b {
            b'(' => {
                let is_aside = aside(i);
                if is_aside {
                    *b = b' ';
                }
                open.push(is_aside);
            }
            b')' => *b = if open.pop() == Some(true) { b' ' } else { b')' },
            _ => {}
        }
    }
    Some(out)
}

/// A bare CSS declaration list (`style=color:red;background:white`): markup only inside
/// a tag's attribute, and without a quote or `<` it cannot leave the attribute it is put
/// in. The tokenizer reads `style=` as the attribute of that name, so such a value is
/// judged as an injection only with what makes CSS run code (`expression(`, `url(javascript:`).
fn is_css_declaration(v: &[u8]) -> bool {
    let t = v.trim_ascii();
    if t.len() < 6 || !t[..6].eq_ignore_ascii_case(b"style=") {
        return false;
    }
    if t.iter()
        .any(|&b| matches!(b, b'<' | b'>' | b'"' | b'\'' | b'`' | b'\\'))
    {
        return false;
    }
    let lower = t.to_ascii_lowercase();
    ![
        "expression",
        "javascript:",
        "vbscript:",
        "behavior",
        "-moz-binding",
        "@import",
    ]
    .iter()
    .any(|k| memchr::memmem::find(&lower, k.as_bytes()).is_some())
}

/// Commands an injection runs that no contraction or name spells when its quotes are
/// taken out (so no two-letter ones: `I'd`, `p's`).
const SPLIT_COMMANDS: &[&[u8]] = &[
    b"whoami",
    b"uname",
    b"ifconfig",
    b"ipconfig",
    b"passwd",
    b"shadow",
    b"curl",
    b"wget",
    b"bash",
    b"python",
    b"python3",
    b"perl",
    b"ruby",
    b"netcat",
    b"ncat",
    b"cat",
    b"nslookup",
    b"netstat",
    b"telnet",
    b"socat",
    b"chmod",
    b"chown",
    b"sudo",
    b"ping",
    b"echo",
    b"time",
    b"env",
    b"pwd",
    b"hostname",
    b"systeminfo",
    b"tasklist",
    b"powershell",
    b"cmd",
    b"busybox",
    b"nmap",
    b"base64",
    b"sleep",
    b"head",
    b"tail",
    b"less",
    b"more",
    b"grep",
    b"awk",
    b"sed",
    b"xargs",
    b"find",
    b"printf",
    b"touch",
    b"crontab",
    b"useradd",
    b"visudo",
    b"tftp",
    b"scp",
    b"ssh",
    b"rsync",
    b"nohup",
    b"strace",
    b"php",
    b"node",
    b"lua",
    b"exec",
    b"eval",
    b"dash",
    b"zsh",
    b"ksh",
    b"csh",
    b"tcsh",
    b"who",
];

/// A byte the shell takes out of a word when it joins it: a quote or a backslash.
fn is_shell_quote(b: u8) -> bool {
    matches!(b, b'\'' | b'"' | b'\\')
}

/// Whether a word of `v` is a command split by quotes or backslashes (`'wh'oami`,
/// `ca''t`, `c\u\rl`, `"w"get`): a shell joins the pieces, and nothing else writes a
/// quote inside a command's name. Words are what lies between shell separators; a quote
/// counts only between two letters of the word (or as `'x'` at its start), so a quoted
/// word (`'cat'`), a name (`O'Brien`) or a contraction (`that's`) is never one.
fn split_command(v: &[u8]) -> bool {
    let is_quote = is_shell_quote;
    let mut joined = Vec::with_capacity(16);
    for word in v.split(|&b| {
        b.is_ascii_whitespace()
            || matches!(
                b,
                b';' | b'|' | b'&' | b'=' | b'/' | b'`' | b'(' | b')' | b'+' | b'<' | b'>' | b','
            )
    }) {
        if word.len() < 3 || word.len() > 40 || !word.iter().any(|&b| is_quote(b)) {
            continue;
        }
        // Letters before and after the first inner quote.
        let mut inner = false;
        let mut seen_letter = false;
        joined.clear();
        let mut i = 0;
        while i < word.len() {
            let b = word[i];
            if is_quote(b) {
                let run = word[i..].iter().take_while(|&&c| is_quote(c)).count();
                let next = word.get(i + run).copied();
                if seen_letter && next.is_some_and(|c| c.is_ascii_alphabetic()) {
                    inner = true;
                }
                i += run;
                continue;
            }
            seen_letter |= b.is_ascii_alphabetic();
            joined.push(b.to_ascii_lowercase());
            i += 1;
        }
        if inner && SPLIT_COMMANDS.iter().any(|c| **c == joined[..]) {
            return true;
        }
    }
    false
}

/// A value without a leading XML declaration (`<?xml version="1.0"?>`): an XML document
/// passed as a parameter (SOAP, an API) is not markup injected into a page, and the
/// declaration alone tokenizes as a tag. What follows it is still judged.
fn without_xml_declaration(v: &[u8]) -> &[u8] {
    let t = v.trim_ascii_start();
    if t.len() >= 5 && t[..5].eq_ignore_ascii_case(b"<?xml") {
        if let Some(end) = memchr::memmem::find(t, b"?>") {
            return &t[end + 2..];
        }
    }
    v
}

/// SQL keywords that can make an injection of a value without quotes or operators.
const SQL_WORDS: &[&[u8]] = &[
    b"union",
    b"select",
    b"sleep",
    b"benchmark",
    b"waitfor",
    b"order",
    b"group",
    b"having",
    b"exec",
    b"declare",
    b"drop",
    b"insert",
    b"delete",
    b"update",
];

/// Whether one of the words of `v` (runs of letters) is one of `SQL_WORDS`, in any case.
fn has_sql_word(v: &[u8]) -> bool {
    v.split(|b| !b.is_ascii_alphabetic())
        .filter(|w| (4..=9).contains(&w.len()))
        .any(|w| SQL_WORDS.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

/// The values of one URL worth tokenizing, decoded once per line and judged by every
/// structural rule: spans into `buf`, each marked as from the query or the path.
#[derive(Debug, Default)]
pub struct Values {
    pub buf: Vec<u8>,
    pub spans: Vec<(std::ops::Range<usize>, bool)>,
}

impl Values {
    /// The values, with whether each is from the query.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> {
        self.spans.iter().map(|(r, q)| (&self.buf[r.clone()], *q))
    }
}

/// Collects the values of a URL (`/path/seg?k=v&k2=v2`, or a full URL with scheme and
/// host, as a referer is) into `out`: every path segment and every parameter's name and
/// value, each percent-decoded (twice, for double encoding; `+` as a space in the query).
/// Plain tokens (an id, a slug, a word) are left out: neither tokenizer finds anything in
/// one, so they are not even decoded.
pub fn url_values(
    url: &[u8],
    scratch: &mut super::decode::Scratch,
    tmp: &mut Vec<u8>,
    out: &mut Values,
) {
    out.buf.clear();
    out.spans.clear();
    let rest = strip_origin(url);
    let (path, query) = match memchr::memchr(b'?', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let query = query.split(|&b| b == b'#').next().unwrap_or(b"");
    let plain = |v: &[u8]| {
        v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    let mut push = |part: &[u8], in_query: bool, out: &mut Values| {
        scratch.url(part, in_query, true, tmp);
        let start = out.buf.len();
        out.buf.extend_from_slice(tmp);
        out.spans.push((start..out.buf.len(), in_query));
    };
    for seg in path
        .split(|&b| b == b'/')
        .filter(|s| !s.is_empty() && !plain(s))
    {
        push(seg, false, out);
    }
    for pair in query.split(|&b| b == b'&').filter(|s| !s.is_empty()) {
        let (name, value) = match memchr::memchr(b'=', pair) {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (&b""[..], pair),
        };
        for part in [value, name] {
            if !part.is_empty() && !plain(part) {
                push(part, true, out);
            }
        }
    }
}

/// The path and query of a URL: without `scheme://host[:port]` when it has them.
pub fn strip_origin(url: &[u8]) -> &[u8] {
    // An origin-form target (the common case): whatever `://` it holds is in its path or
    // query, after a `/` no scheme has.
    if url.first() == Some(&b'/') {
        return url;
    }
    let Some(i) = memchr::memmem::find(url, b"://") else {
        return url;
    };
    if !url[..i]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return url;
    }
    let after = &url[i + 3..];
    match after.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')) {
        Some(j) => &after[j..],
        None => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::decode::Scratch;

    /// Asserts that `a` judges each of `values` an injection (`want`) or not.
    fn judged(a: Analyzer, want: bool, values: &[&[u8]]) {
        for v in values {
            assert_eq!(a.judges(v), want, "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn sql_injection_is_told_from_text_by_its_tokens() {
        judged(
            Analyzer::Sqli,
            true,
            &[
                &b"1' or '1'='1"[..],
                b"1 UNION ALL SELECT NULL,NULL,NULL--",
                b"admin'--",
                b"1);DROP TABLE users;--",
                b"1' AND SLEEP(5)#",
                b"1 union select 1,2",
            ],
        );
        judged(
            Analyzer::Sqli,
            false,
            &[
                &b"select a wine"[..],
                b"O'Brien",
                b"Tom's diner -- menu",
                b"it's 5 o'clock",
                b"C++ -- tutorial",
                b"12345",
                b"what's new?",
            ],
        );
    }

    #[test]
    fn xss_is_told_from_text_by_its_tokens() {
        assert!(Analyzer::Xss.judges(b"<script>alert(1)</script>"));
        assert!(Analyzer::Xss.judges(b"\"><img src=x onerror=alert(1)>"));
        // An XML document as a parameter is judged by what follows its declaration.
        assert!(!Analyzer::Xss.judges(br#"<?xml version="1.0" standalone="yes"?><order/>"#));
        assert!(Analyzer::Xss.judges(br#"<?xml version="1.0"?><x><script>alert(1)</script></x>"#));
        judged(
            Analyzer::Xss,
            false,
            &[b"a < b", b"x<y and y>z", b"rock & roll", b"2 > 1"],
        );
    }

    #[test]
    fn asides_in_text_are_not_calls_and_calls_still_are() {
        judged(
            Analyzer::Sqli,
            false,
            &[
                &b"while (foo) is bar."[..],
                b"Left (WA, RR), following wood edge south",
                b"One quarter (24%) of people have had an affair",
            ],
        );
        // An aside inside a call, and a call inside an aside, close where they opened.
        assert_eq!(
            prose_asides(b"max(a (b)) c").as_deref(),
            Some(&b"max(a  b ) c"[..])
        );
        assert_eq!(
            prose_asides(b"x (f(1) y)").as_deref(),
            Some(&b"x  f(1) y "[..])
        );
        judged(
            Analyzer::Sqli,
            true,
            &[
                &b"1 and sleep(5)"[..],
                b"(select(0)from(select(sleep(5)))v)",
                b"1) and (1=1",
                b"1 union select 1,2",
            ],
        );
    }

    #[test]
    fn a_bare_css_declaration_is_not_markup() {
        assert!(!Analyzer::Xss.judges(b"style=color:red;background:white"));
        assert!(!Analyzer::Xss.judges(b"style=background:url(http://example.com/x)"));
        assert!(Analyzer::Xss.judges(b"style=x:expression(alert(1))"));
        assert!(Analyzer::Xss.judges(b"\" style=x onmouseover=alert(1) \""));
    }

    #[test]
    fn a_command_split_by_quotes_is_joined_as_the_shell_joins_it() {
        judged(
            Analyzer::Shell,
            true,
            &[
                &b"'wh'oami"[..],
                b"ca''t /etc/hosts",
                b"\"w\"get localhost",
                b"/bin/ca't' /et*/passwd",
                b"x;c\\u\\rl evil.example",
                b"w'h'o'am'i",
            ],
        );
        judged(
            Analyzer::Shell,
            false,
            &[
                &b"O'Brien"[..],
                b"O'keefe's",
                b"That's two \"O\"s in goose",
                b"'cat' videos",
                b"I'd like a cat",
                b"rock'n'roll",
                b"''that's the joke''.jpeg",
                b"C:\\Windows\\System32",
            ],
        );
    }

    #[test]
    fn each_value_of_a_url_is_judged_on_its_own_decoded() {
        let mut scratch = Scratch::default();
        let mut buf = Vec::new();
        let mut values = Values::default();
        url_values(
            b"https://shop.example:8443/a%20b/c?q=O%27Brien&id=%25271&x#frag",
            &mut scratch,
            &mut buf,
            &mut values,
        );
        let seen: Vec<String> = values
            .iter()
            .map(|(v, _)| String::from_utf8_lossy(v).into_owned())
            .collect();
        // Plain tokens (c, q, id, x) are skipped: neither tokenizer finds anything in one.
        assert_eq!(seen, ["a b", "O'Brien", "'1"]);
        url_values(
            b"/item?id=1%27%20or%20%271%27%3D%271",
            &mut scratch,
            &mut buf,
            &mut values,
        );
        assert!(values.iter().any(|(v, q)| q && Analyzer::Sqli.judges(v)));
    }

    #[test]
    fn values_of_any_bytes_and_length_are_judged_without_panic() {
        let mut v: Vec<u8> = (0..=255u8).cycle().take(20_000).collect();
        for a in [Analyzer::Sqli, Analyzer::Xss, Analyzer::Shell] {
            let _ = a.judges(&v);
            v.reverse();
            let _ = a.judges(&v);
            let _ = a.judges(b"");
            let _ = a.judges(b"'");
            let _ = a.judges(b"<");
        }
    }
}
