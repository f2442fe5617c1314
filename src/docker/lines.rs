//! Turning what the Docker log API sends into whole lines.
//!
//! With `timestamps=true` every message Docker sends starts with its RFC 3339 timestamp
//! and a space. Docker's log copier cuts a line longer than 16 KiB into pieces; each
//! piece arrives as its own message with the line's timestamp, and only the last piece
//! ends with a newline. Here the pieces are joined again, per stream, so stdout and
//! stderr lines can interleave without mixing. A line is never held beyond
//! `limits.max_line_bytes`: the rest of its pieces are skipped and the line is marked cut.
//!
//! A TTY container's output is one raw byte stream, which bollard splits at newlines
//! (`LogOutput::Console`): a long TTY line therefore arrives as one message holding all
//! its pieces, each behind its own timestamp. Those inner timestamps are found at the
//! piece boundaries (every 16,384 bytes) and removed.

use super::console::line_bound;
use super::Stream;
use crate::lines::{LineSplitter, Piece};
use crate::time::{days_from_civil, format_time};

/// The size of the pieces Docker's log copier cuts long lines into.
pub const PIECE_BYTES: usize = 16 * 1024;

/// One whole line, before it is checked against the cursor and sent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    pub stream: Stream,
    pub ts_ns: i64,
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

#[derive(Debug, Default)]
struct Partial {
    /// Set while the pieces of a line are being collected.
    active: bool,
    ts_ns: i64,
    buf: Vec<u8>,
    truncated: bool,
}

/// Joins pieces into lines for one log connection. Start a new one for each
/// connection: pieces of a line cut short by a lost connection are read again after it.
#[derive(Debug)]
pub struct Assembler {
    max: usize,
    /// By [`Stream`] (a file's lines never come here, but the array covers it).
    partial: [Partial; 4],
    /// The last timestamp seen, for the (unexpected) message without one.
    last_ts: i64,
    /// Cuts raw TTY bytes into messages (see [`Assembler::push_console_bytes`]).
    console: LineSplitter,
}

impl Assembler {
    pub fn new(max_line_bytes: usize) -> Assembler {
        Assembler {
            max: max_line_bytes.max(1),
            partial: Default::default(),
            last_ts: 0,
            console: LineSplitter::new(line_bound(max_line_bytes)),
        }
    }

    /// Takes raw bytes of a TTY container's log, in whatever chunks they arrive: no
    /// line is held beyond the bound (see [`super::console`]).
    pub fn push_console_bytes(&mut self, bytes: &[u8], out: &mut Vec<Assembled>) {
        let mut console = std::mem::take(&mut self.console);
        console.push(bytes, &mut |p| self.console_piece(p, out));
        self.console = console;
    }

    /// A piece of a TTY log: a whole line ends its message, a cut one ends with the
    /// newline that comes after its skipped bytes.
    fn console_piece(&mut self, piece: Piece<'_>, out: &mut Vec<Assembled>) {
        match piece {
            Piece::Line(line) => self.push_console(line, true, out),
            Piece::Cut(part) | Piece::Tail(part) => self.push_console(part, false, out),
            Piece::CutEnd => self.push_console(b"", true, out),
        }
    }

    /// Takes one message from the log API; whole lines go to `out`.
    pub fn push(&mut self, stream: Stream, msg: &[u8], out: &mut Vec<Assembled>) {
        if stream == Stream::Console {
            match msg.strip_suffix(b"\n") {
                Some(line) => self.push_console(line, true, out),
                None => self.push_console(msg, false, out),
            }
            return;
        }
        let (ts, content) = self.timestamp(msg);
        match content.strip_suffix(b"\n") {
            Some(line) => self.piece(stream, ts, line, true, out),
            None => self.piece(stream, ts, content, false, out),
        }
    }

    /// One TTY message (`ended`: its newline came, already taken off).
    fn push_console(&mut self, msg: &[u8], ended: bool, out: &mut Vec<Assembled>) {
        let mut rest = msg;
        loop {
            let (ts, content) = self.timestamp(rest);
            // A piece that was cut is exactly PIECE_BYTES long and the next one starts
            // with its own timestamp right after it.
            if content.len() > PIECE_BYTES && split_timestamp(&content[PIECE_BYTES..]).is_some() {
                self.piece(Stream::Console, ts, &content[..PIECE_BYTES], false, out);
                rest = &content[PIECE_BYTES..];
                continue;
            }
            if ended {
                let line = content.strip_suffix(b"\r").unwrap_or(content);
                self.piece(Stream::Console, ts, line, true, out);
            } else {
                self.piece(Stream::Console, ts, content, false, out);
            }
            return;
        }
    }

    fn timestamp<'a>(&mut self, msg: &'a [u8]) -> (i64, &'a [u8]) {
        match split_timestamp(msg) {
            Some((ts, content)) => {
                self.last_ts = ts;
                (ts, content)
            }
            None => (self.last_ts, msg),
        }
    }

    fn piece(
        &mut self,
        stream: Stream,
        ts: i64,
        bytes: &[u8],
        last: bool,
        out: &mut Vec<Assembled>,
    ) {
        let max = self.max;
        let p = &mut self.partial[stream as usize];
        if !p.active {
            if last {
                // The common case: a whole line in one message.
                let keep = bytes.len().min(max);
                out.push(Assembled {
                    stream,
                    ts_ns: ts,
                    bytes: bytes[..keep].to_vec(),
                    truncated: bytes.len() > max,
                });
                return;
            }
            p.active = true;
            p.ts_ns = ts;
            p.buf.clear();
            p.truncated = false;
        }
        let room = max - p.buf.len();
        if bytes.len() > room {
            p.truncated = true;
        }
        p.buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if last {
            out.push(take(stream, p));
        }
    }

    /// Hands out lines whose last piece never came: at the end of a stopped container's
    /// log, where the output did not end with a newline.
    pub fn flush(&mut self, out: &mut Vec<Assembled>) {
        let mut console = std::mem::take(&mut self.console);
        console.finish(&mut |p| self.console_piece(p, out));
        self.console = console;
        for stream in [Stream::Stdout, Stream::Stderr, Stream::Console] {
            let p = &mut self.partial[stream as usize];
            if p.active {
                out.push(take(stream, p));
            }
        }
    }
}

fn take(stream: Stream, p: &mut Partial) -> Assembled {
    p.active = false;
    let cap = p.buf.capacity();
    let bytes = std::mem::replace(&mut p.buf, Vec::with_capacity(cap.min(PIECE_BYTES)));
    Assembled {
        stream,
        ts_ns: p.ts_ns,
        bytes,
        truncated: std::mem::take(&mut p.truncated),
    }
}

/// Splits `2026-11-21T06:25:32.954352105Z rest` into (Unix nanoseconds, rest).
pub fn split_timestamp(msg: &[u8]) -> Option<(i64, &[u8])> {
    // RFC 3339 with up to nine fraction digits and an offset: at most 35 bytes.
    let head = &msg[..msg.len().min(40)];
    let sp = memchr::memchr(b' ', head)?;
    let ts = parse_rfc3339_ns(&msg[..sp])?;
    Some((ts, &msg[sp + 1..]))
}

/// Parses an RFC 3339 timestamp (`Z` or `±hh:mm`, optional fraction) into Unix ns.
pub fn parse_rfc3339_ns(s: &[u8]) -> Option<i64> {
    fn num(s: &[u8]) -> Option<i64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(s.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0')))
    }
    if s.len() < 20 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
    let (h, mi, sec) = (num(&s[11..13])?, num(&s[14..16])?, num(&s[17..19])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if s[i] == b'.' {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        for k in 0..9 {
            frac_ns = frac_ns * 10 + digits.get(k).map_or(0, |&c| i64::from(c - b'0'));
        }
    }
    let offset = match s.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), oh @ .., b':', om1, om2] if oh.len() == 2 => {
            let secs = num(oh)? * 3600 + num(&[*om1, *om2])? * 60;
            if *sign == b'+' {
                secs
            } else {
                -secs
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// Formats Unix ns as RFC 3339 UTC with nanoseconds, as Docker writes it.
pub fn format_ts_ns(ns: i64) -> String {
    let seconds = format_time(ns.div_euclid(1_000_000_000));
    let frac = ns.rem_euclid(1_000_000_000);
    format!("{}.{frac:09}Z", seconds.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-21T06:25:32.954352105Z";
    const TS_NS: i64 = 1_795_242_332_954_352_105;

    fn run(max: usize, msgs: &[(Stream, Vec<u8>)]) -> Vec<Assembled> {
        let mut a = Assembler::new(max);
        let mut out = Vec::new();
        for (s, m) in msgs {
            a.push(*s, m, &mut out);
        }
        out
    }

    fn msg(ts: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!("{ts} ").into_bytes();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn timestamps_parse_and_format() {
        assert_eq!(parse_rfc3339_ns(TS.as_bytes()), Some(TS_NS));
        assert_eq!(format_ts_ns(TS_NS), TS);
        assert_eq!(
            parse_rfc3339_ns(b"2026-11-21T06:25:32Z"),
            Some(1_795_242_332_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns(b"2026-11-21T07:25:32.5+01:00"),
            Some(1_795_242_332_500_000_000)
        );
        assert_eq!(parse_rfc3339_ns(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns(b"not a time at all!!"), None);
        assert_eq!(parse_rfc3339_ns(b"2026-13-21T06:25:32Z"), None);
        assert_eq!(split_timestamp(b"hello world"), None);
    }

    #[test]
    fn whole_lines_and_pieces_per_stream() {
        let out = run(
            1 << 20,
            &[
                (Stream::Stdout, msg(TS, b"first\n")),
                (Stream::Stdout, msg(TS, &[b'a'; PIECE_BYTES])),
                (Stream::Stderr, msg(TS, b"err between\n")),
                (Stream::Stdout, msg(TS, &[b'a'; PIECE_BYTES])),
                (Stream::Stdout, msg(TS, b"aaa\n")),
            ],
        );
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].bytes, b"first");
        assert_eq!(out[0].ts_ns, TS_NS);
        assert_eq!(
            (out[1].stream, out[1].bytes.as_slice()),
            (Stream::Stderr, &b"err between"[..])
        );
        assert_eq!(out[2].bytes.len(), 2 * PIECE_BYTES + 3);
        assert!(!out[2].truncated);
    }

    #[test]
    fn a_long_line_is_cut_at_the_cap_and_the_rest_skipped() {
        let mut msgs = Vec::new();
        for _ in 0..100 {
            msgs.push((Stream::Stdout, msg(TS, &[b'x'; PIECE_BYTES])));
        }
        msgs.push((Stream::Stdout, msg(TS, b"end\n")));
        msgs.push((Stream::Stdout, msg(TS, b"next\n")));
        let out = run(20_000, &msgs);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes.len(), 20_000);
        assert!(out[0].truncated);
        assert_eq!(out[1].bytes, b"next");
        let out = run(4, &[(Stream::Stdout, msg(TS, b"abcdef\n"))]);
        assert_eq!(
            (out[0].bytes.as_slice(), out[0].truncated),
            (&b"abcd"[..], true)
        );
    }

    #[test]
    fn tty_pieces_lose_their_inner_timestamps() {
        // What bollard hands over for a 40,000-byte TTY line: three pieces, one message.
        let mut m = msg(TS, &[b'a'; PIECE_BYTES]);
        m.extend(msg(TS, &[b'b'; PIECE_BYTES]));
        m.extend(msg(TS, &[b'c'; 40_000 - 2 * PIECE_BYTES]));
        m.extend_from_slice(b"\r\n");
        let out = run(
            1 << 20,
            &[
                (Stream::Console, m),
                (Stream::Console, msg(TS, b"short\r\n")),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].bytes.len(), 40_000);
        assert!(out[0].bytes[..PIECE_BYTES].iter().all(|&b| b == b'a'));
        assert!(out[0].bytes[PIECE_BYTES..2 * PIECE_BYTES]
            .iter()
            .all(|&b| b == b'b'));
        assert_eq!(out[1].bytes, b"short");
        assert_eq!(out[1].stream, Stream::Console);
    }

    #[test]
    fn invalid_utf8_passes_through_and_flush_ends_a_dangling_line() {
        let mut a = Assembler::new(1024);
        let mut out = Vec::new();
        a.push(Stream::Stdout, &msg(TS, b"\xff\xfe bad\n"), &mut out);
        a.push(Stream::Stderr, &msg(TS, b"no newline"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, b"\xff\xfe bad");
        a.flush(&mut out);
        assert_eq!(out[1].bytes, b"no newline");
        assert_eq!(out[1].stream, Stream::Stderr);
    }
}
