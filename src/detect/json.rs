//! A JSON field scanner: one pass over a line that validates it as serde_json would
//! and notes where the few values a format asks for lie, without building a tree.
//!
//! Why not `serde_json::Value`: a Caddy access line has some 25 keys, nested objects and
//! header arrays; building that tree and copying fields out of it took 6 to 10 times as
//! long as reading the same request in combined. Why not serde_json's `IgnoredAny`: it
//! skips strings without checking their UTF-8 or surrogates, numbers without their range
//! and nesting without its depth limit, so lines `Value` refused would be read.
//!
//! What the scanner accepts is exactly what `serde_json::from_slice::<Value>` accepts:
//! RFC 8259 with whitespace `' ' \t \n \r`, strings of valid UTF-8 without raw control
//! characters, escapes `\" \\ \/ \b \f \n \r \t \uXXXX` with surrogates paired, numbers
//! whose value is finite, and at most 127 nested arrays and objects (serde_json's
//! recursion limit of 128). Duplicate keys: the last one wins, with its whole value, as
//! in `Value` (a second `"request": {...}` replaces the first object, it is not merged).
//!
//! Sans-IO and linear: every byte is looked at a bounded number of times, nesting is
//! bounded, and a duplicate key clears only the slots of its own (fixed) subtree.

/// serde_json's recursion limit: the 128th nested array or object is an error.
const MAX_DEPTH: u32 = 128;

/// What kind of value a path held. `Other`: present, but no text (an object, `true`,
/// `null`, an array whose first element is none of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string without escapes: the span is the text itself, valid UTF-8.
    Str,
    /// A string with escapes: the span is the raw inside, to be [`unescape`]d.
    EscStr,
    /// A number: the span is its text as written.
    Num,
    Other,
}

/// A value found at a wanted path: what it is and where it lies in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    /// The value was an array and this is its first element's (recursively: `[["x"]]`
    /// gives `x`), which text fields take (Caddy logs headers as arrays) and numbers
    /// fields do not.
    pub in_array: bool,
    pub start: usize,
    pub end: usize,
}

impl Found {
    const OTHER: Found = Found {
        kind: Kind::Other,
        in_array: false,
        start: 0,
        end: 0,
    };
}

/// One node of the trie of wanted paths (the root is the top-level object).
#[derive(Debug, Default)]
struct Node {
    /// Children by key length, then key: a line's keys mostly differ in length from
    /// the wanted ones, so most keys are dismissed without a comparison.
    by_len: Vec<Vec<(Box<[u8]>, usize)>>,
    /// The slot of the path that ends here.
    slot: Option<usize>,
    /// The slots of this node's subtree (its own included): cleared when its key comes
    /// again, since the later value replaces the earlier one whole.
    slots: std::ops::Range<usize>,
    /// The children again, as an open-addressing table by [`key_hash`] (the index in
    /// `children` plus one; 0 is empty), filled once all paths are in: a line's key is
    /// hashed once and compared with one wanted key at most, however many there are.
    table: Box<[u32]>,
    children: Vec<(Box<[u8]>, usize)>,
}

impl Node {
    fn has_children(&self) -> bool {
        !self.children.is_empty()
    }

    /// A child while the paths are put in (before [`index`](Self::index)).
    fn child_building(&self, key: &[u8]) -> Option<usize> {
        self.by_len
            .get(key.len())?
            .iter()
            .find(|(k, _)| **k == *key)
            .map(|&(_, n)| n)
    }

    /// Builds the lookup table of the children.
    fn index(&mut self) {
        // The lists by length are for building only: the table and `children` replace
        // them.
        self.children = std::mem::take(&mut self.by_len)
            .into_iter()
            .flatten()
            .collect();
        if self.children.is_empty() {
            return;
        }
        let size = (self.children.len() * 4).next_power_of_two();
        let mut table = vec![0u32; size];
        for (i, (k, _)) in self.children.iter().enumerate() {
            let mut at = key_hash(k) as usize & (size - 1);
            while table[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            table[at] = i as u32 + 1;
        }
        self.table = table.into();
    }

    #[inline]
    fn child(&self, key: &[u8]) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let mask = self.table.len() - 1;
        let mut at = key_hash(key) as usize & mask;
        loop {
            let i = *self.table.get(at)?;
            let (k, n) = self.children.get(i.checked_sub(1)? as usize)?;
            if k.len() == key.len() && same_key(k, key) {
                return Some(*n);
            }
            at = (at + 1) & mask;
        }
    }
}

/// A cheap hash of a key from its length and its first and last bytes.
#[inline]
fn key_hash(k: &[u8]) -> u64 {
    let n = k.len();
    let (a, b) = if n >= 8 {
        (word8(k, 0), word8(k, n - 8))
    } else if n >= 4 {
        (u64::from(word4(k, 0)), u64::from(word4(k, n - 4)))
    } else {
        (k.iter().fold(0u64, |h, &c| h << 8 | u64::from(c)), 0)
    };
    let h = (a ^ b.rotate_left(29) ^ ((n as u64) << 56)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h >> 40
}

#[inline]
fn word8(s: &[u8], i: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&s[i..i + 8]);
    u64::from_le_bytes(w)
}

#[inline]
fn word4(s: &[u8], i: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&s[i..i + 4]);
    u32::from_le_bytes(w)
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The scan that filled it; a slot of an earlier line (or a cleared one) is empty.
    scan: u32,
    found: Found,
}

/// The wanted paths, compiled once per parser, and the slots one scan fills.
#[derive(Debug)]
pub struct Scanner {
    nodes: Vec<Node>,
    slots: Vec<Slot>,
    scan: u32,
    /// A key with escapes, decoded to compare it (rare; the buffer is reused).
    key: Vec<u8>,
}

impl Scanner {
    /// A scanner for `paths` (each a list of keys from the top-level object down).
    /// Returns it and the slot of each path, in order; equal paths share a slot.
    pub fn new(paths: &[Vec<&str>]) -> (Scanner, Vec<usize>) {
        let mut nodes = vec![Node::default()];
        let mut ends = Vec::with_capacity(paths.len());
        for path in paths {
            let mut at = 0;
            for key in path {
                let key = key.as_bytes();
                at = match nodes[at].child_building(key) {
                    Some(n) => n,
                    None => {
                        let n = nodes.len();
                        nodes.push(Node::default());
                        let by_len = &mut nodes[at].by_len;
                        if by_len.len() <= key.len() {
                            by_len.resize_with(key.len() + 1, Vec::new);
                        }
                        by_len[key.len()].push((key.into(), n));
                        n
                    }
                };
            }
            ends.push(at);
        }
        for &n in &ends {
            nodes[n].slot = Some(usize::MAX);
        }
        let mut next = 0;
        number_slots(&mut nodes, 0, &mut next);
        for n in &mut nodes {
            n.index();
        }
        let slot_of = ends
            .iter()
            .map(|&n| nodes[n].slot.unwrap_or(usize::MAX))
            .collect();
        let empty = Slot {
            scan: 0,
            found: Found::OTHER,
        };
        let scanner = Scanner {
            nodes,
            slots: vec![empty; next],
            scan: 0,
            key: Vec::new(),
        };
        (scanner, slot_of)
    }

    /// Scans `json` (one object, nothing but whitespace after it). False: not valid
    /// JSON or not an object; the slots are then empty.
    pub fn scan(&mut self, json: &[u8]) -> bool {
        self.next_scan();
        let mut cursor = Cursor { b: json, i: 0 };
        cursor.ws();
        let ok = cursor.peek() == Some(b'{') && self.object(&mut cursor, 1, Some(0)).is_some() && {
            cursor.ws();
            cursor.i == json.len()
        };
        if !ok {
            // Whatever the scan filled before it failed is not a value of this line.
            self.next_scan();
        }
        ok
    }

    /// Starts a new scan: every slot filled by an earlier one is empty from now on.
    fn next_scan(&mut self) {
        self.scan = self.scan.wrapping_add(1);
        if self.scan == 0 {
            for s in &mut self.slots {
                s.scan = 0;
            }
            self.scan = 1;
        }
    }

    /// The value at `slot` in the last scan, when that path was present.
    pub fn get(&self, slot: usize) -> Option<Found> {
        self.slots
            .get(slot)
            .filter(|s| s.scan == self.scan)
            .map(|s| s.found)
    }

    /// An object at the cursor (on its `{`). `node`: the trie node its keys are looked
    /// up in; None: nothing inside is wanted.
    fn object(&mut self, c: &mut Cursor<'_>, depth: u32, node: Option<usize>) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        c.i += 1;
        c.ws();
        if c.peek()? == b'}' {
            c.i += 1;
            return Some(());
        }
        loop {
            if c.peek()? != b'"' {
                return None;
            }
            let (ks, ke, kesc) = c.string()?;
            let child = match node {
                Some(n) => self.child(n, &c.b[ks..ke], kesc),
                None => None,
            };
            c.ws();
            if c.peek()? != b':' {
                return None;
            }
            c.i += 1;
            c.ws();
            match child {
                Some(ch) => {
                    let node = &self.nodes[ch];
                    let descend = node.has_children().then_some(ch);
                    for s in &mut self.slots[node.slots.clone()] {
                        s.scan = 0;
                    }
                    let slot = node.slot;
                    let found = self.value(c, depth, descend)?;
                    if let Some(s) = slot.and_then(|s| self.slots.get_mut(s)) {
                        *s = Slot {
                            scan: self.scan,
                            found,
                        };
                    }
                }
                // Not wanted, and (mostly) a string: passed over here, not in `value`.
                None if c.peek() == Some(b'"') => {
                    c.string()?;
                }
                None => {
                    self.value(c, depth, None)?;
                }
            }
            c.ws();
            match c.peek()? {
                b',' => {
                    c.i += 1;
                    c.ws();
                }
                b'}' => {
                    c.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn child(&mut self, node: usize, raw: &[u8], escaped: bool) -> Option<usize> {
        if !escaped {
            return self.nodes[node].child(raw);
        }
        self.key.clear();
        unescape_into(raw, &mut self.key);
        self.nodes[node].child(&self.key)
    }

    /// An array at the cursor (on its `[`): its first element is what it stands for.
    fn array(&mut self, c: &mut Cursor<'_>, depth: u32) -> Option<Found> {
        if depth >= MAX_DEPTH {
            return None;
        }
        c.i += 1;
        c.ws();
        let mut first = Found::OTHER;
        if c.peek()? == b']' {
            c.i += 1;
        } else {
            first = self.value(c, depth, None)?;
            loop {
                c.ws();
                match c.peek()? {
                    b',' => {
                        c.i += 1;
                        c.ws();
                        self.value(c, depth, None)?;
                    }
                    b']' => {
                        c.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        first.in_array = true;
        Some(first)
    }

    /// Any value at the cursor. `depth`: containers open around it.
    fn value(&mut self, c: &mut Cursor<'_>, depth: u32, node: Option<usize>) -> Option<Found> {
        let at = c.i;
        let found = |kind, end| Found {
            kind,
            in_array: false,
            start: at,
            end,
        };
        match c.peek()? {
            b'"' => {
                let (s, e, esc) = c.string()?;
                let kind = if esc { Kind::EscStr } else { Kind::Str };
                Some(Found {
                    kind,
                    in_array: false,
                    start: s,
                    end: e,
                })
            }
            b'{' => {
                self.object(c, depth + 1, node)?;
                Some(Found::OTHER)
            }
            b'[' => self.array(c, depth + 1),
            b't' => c.literal(b"true").then_some(Found::OTHER),
            b'f' => c.literal(b"false").then_some(Found::OTHER),
            b'n' => c.literal(b"null").then_some(Found::OTHER),
            b'-' | b'0'..=b'9' => {
                c.number()?;
                Some(found(Kind::Num, c.i))
            }
            _ => None,
        }
    }
}

/// Gives each node that ends a path its slot, depth first, so that every subtree's
/// slots are one range.
fn number_slots(nodes: &mut [Node], n: usize, next: &mut usize) {
    let first = *next;
    if nodes[n].slot.is_some() {
        nodes[n].slot = Some(*next);
        *next += 1;
    }
    let children: Vec<usize> = nodes[n].by_len.iter().flatten().map(|&(_, c)| c).collect();
    for c in children {
        number_slots(nodes, c, next);
    }
    nodes[n].slots = first..*next;
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// A string at the cursor (on its `"`): the span of its inside and whether it has
    /// escapes. Checks what serde_json checks: escapes, paired surrogates, no raw
    /// control character, valid UTF-8 (escapes are ASCII, so the raw inside is checked
    /// whole).
    ///
    /// One pass, eight bytes at a time: a word with no quote, backslash, control
    /// character or non-ASCII byte (almost every word of a log) is passed over whole;
    /// only a word holding one of them is looked at byte by byte.
    #[inline(always)]
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        let b = self.b;
        let start = self.i + 1;
        let mut at = start;
        let mut escaped = false;
        let mut ascii = true;
        let end = loop {
            // To the first special byte: whole words, then (near the end of the line)
            // byte by byte.
            while let Some(word) = b.get(at..at + 8) {
                let m = special(word8(word, 0));
                if m != 0 {
                    // The lowest marked byte is a real one (see `special`).
                    at += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                at += 8;
            }
            match *b.get(at)? {
                b'"' => break at,
                b'\\' => {
                    escaped = true;
                    at = escape_end(b, at + 1)?;
                }
                0..=0x1F => return None,
                0x80.. => {
                    ascii = false;
                    at += 1;
                }
                _ => at += 1,
            }
        };
        if !ascii && std::str::from_utf8(&b[start..end]).is_err() {
            return None;
        }
        self.i = end + 1;
        Some((start, end, escaped))
    }

    /// A number at the cursor, by JSON's grammar; one whose value serde_json would
    /// find out of range (infinite as an f64) is refused as it refuses it.
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        let b = self.b;
        let mut i = start;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => i += digits(&b[i..]),
            _ => return None,
        }
        let int_digits = i - int_start;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let n = digits(&b[i..]);
            if n == 0 {
                return None;
            }
            i += n;
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = b.get(i) {
            exponent = true;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let n = digits(&b[i..]);
            if n == 0 {
                return None;
            }
            i += n;
        }
        self.i = i;
        // Under 1e300 without an exponent: always finite. Anything else is rare in a
        // log and is asked of serde_json itself.
        if (exponent || int_digits > 300)
            && serde_json::from_slice::<serde_json::Number>(&b[start..i]).is_err()
        {
            return None;
        }
        Some(())
    }
}

/// The eight bytes of `w` (little-endian) that are a quote, a backslash, a control
/// character (below 0x20) or non-ASCII, marked by their high bit; 0 when there is
/// none. The lowest mark is exact; marks above it may be false (a borrow runs upward
/// only from a byte that matched), so the first special byte is `trailing_zeros / 8`.
#[inline]
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    zero(w ^ (ONES * u64::from(b'"')))
        | zero(w ^ (ONES * u64::from(b'\\')))
        | below_space
        | (w & HIGH)
}

/// Two keys of the same length compared as words (a key is mostly 3 to 16 bytes):
/// the first and last eight (or four) bytes overlap to cover it whole.
#[inline]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len();
    if n >= 8 {
        word8(a, 0) == word8(b, 0)
            && word8(a, n - 8) == word8(b, n - 8)
            && (n <= 16 || a[8..n - 8] == b[8..n - 8])
    } else if n >= 4 {
        word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4)
    } else {
        a == b
    }
}

fn digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let h = b.get(at..at + 4)?;
    let s = std::str::from_utf8(h).ok()?;
    if !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

/// Checks the escape whose letter is at `at` (just after the backslash), as serde_json
/// does when it reads a string: a `\u` high surrogate must be followed by a `\u` low
/// one, and a low one must not come alone. Returns where the escape ends.
fn escape_end(b: &[u8], at: usize) -> Option<usize> {
    match b.get(at)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(at + 1),
        b'u' => {
            let n = hex4(b, at + 1)?;
            match n {
                0xDC00..=0xDFFF => None,
                0xD800..=0xDBFF => {
                    if b.get(at + 5..at + 7)? != b"\\u" {
                        return None;
                    }
                    let low = hex4(b, at + 7)?;
                    (0xDC00..=0xDFFF).contains(&low).then_some(at + 11)
                }
                _ => Some(at + 5),
            }
        }
        _ => None,
    }
}

/// The text of a string's raw inside (from a scan, so its escapes are valid; one that
/// is not is kept as written rather than trusted).
pub fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    unescape_into(raw, &mut out);
    out
}

fn unescape_into(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'\\', &raw[i..]) {
        out.extend_from_slice(&raw[i..i + off]);
        let e = i + off + 1;
        let simple = match raw.get(e) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0C),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            out.push(c);
            i = e + 1;
            continue;
        }
        match unicode_escape(raw, e) {
            Some((ch, next)) => {
                let mut buf = [0; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i = next;
            }
            None => {
                out.push(b'\\');
                i = e;
            }
        }
    }
    out.extend_from_slice(&raw[i..]);
}

/// The character of a `\u` escape (a surrogate pair taken together) whose `u` is at
/// `at`, and where it ends.
fn unicode_escape(raw: &[u8], at: usize) -> Option<(char, usize)> {
    if raw.get(at) != Some(&b'u') {
        return None;
    }
    let n = hex4(raw, at + 1)?;
    if (0xD800..=0xDBFF).contains(&n) {
        if raw.get(at + 5..at + 7)? != b"\\u" {
            return None;
        }
        let low = hex4(raw, at + 7)?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            return None;
        }
        let c = 0x1_0000 + ((u32::from(n) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
        return Some((char::from_u32(c)?, at + 11));
    }
    Some((char::from_u32(u32::from(n))?, at + 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_special(b: u8) -> bool {
        b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b)
    }

    #[test]
    fn the_first_special_byte_of_a_word_is_found_exactly() {
        // Every byte value at every position, amid every kind of neighbour (a borrow
        // from a lower byte must not make an ordinary byte above it look special).
        for fill in [
            b'a', b' ', b'!', b'#', b'[', b']', 0x7F, 0x21, 0x1F, 0x80, 0xFF,
        ] {
            for pos in 0..8 {
                for v in 0..=255u8 {
                    let mut w = [fill; 8];
                    w[pos] = v;
                    let first = w.iter().position(|&b| is_special(b));
                    let m = special(u64::from_le_bytes(w));
                    let got = (m != 0).then(|| (m.trailing_zeros() / 8) as usize);
                    assert_eq!(got, first, "{w:?}");
                }
            }
        }
    }

    #[test]
    fn keys_compare_whole() {
        let keys: [&[u8]; 7] = [
            b"",
            b"a",
            b"abc",
            b"abcd",
            b"abcdefg",
            b"abcdefgh",
            b"ClientHost-and-more",
        ];
        for k in keys {
            assert!(same_key(k, k));
            for i in 0..k.len() {
                let mut other = k.to_vec();
                other[i] ^= 1;
                assert!(!same_key(k, &other), "{k:?} at {i}");
            }
        }
        assert!(!same_key(b"ClientHost", b"ClientPort"));
        assert!(!same_key(b"request_User-Agent-x", b"request_User-Agent-y"));
        assert!(!same_key(b"request_Xser-Agent-x", b"request_User-Agent-x"));
    }
}
