//! Bytes, in whatever chunks they arrive, cut into lines with a bound on what is held:
//! a line longer than the bound is handed on as its first part and the rest is skipped
//! without being buffered, so neither a 1 GiB line nor input without newlines can
//! exhaust memory. `check` reads files through it; a TTY container's log (one raw byte
//! stream, see `docker::console`) goes through it too.

use std::io::{self, Read};

/// What the splitter hands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A whole line, without its newline.
    Line(&'a [u8]),
    /// The first `max` bytes of a longer line; the rest of it is skipped.
    Cut(&'a [u8]),
    /// The newline that ends a cut line, after its skipped bytes.
    CutEnd,
    /// What was left at the end of the input: a line without its newline.
    Tail(&'a [u8]),
}

/// Cuts a byte stream into lines of at most `max` bytes. Whole lines inside a chunk are
/// handed on where they lie; only a line split across chunks is copied, up to `max`.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The start of a line whose newline has not come yet (never more than `max`).
    held: Vec<u8>,
    max: usize,
    /// Skipping the rest of a cut line, up to its newline.
    skipping: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            held: Vec::new(),
            max: max.max(1),
            skipping: false,
        }
    }

    /// The bound: lines are handed on whole up to this many bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes the next bytes of the stream; each finished piece goes to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut impl FnMut(Piece<'_>)) {
        while !bytes.is_empty() {
            if self.skipping {
                let Some(i) = memchr::memchr(b'\n', bytes) else {
                    return;
                };
                self.skipping = false;
                bytes = &bytes[i + 1..];
                out(Piece::CutEnd);
                continue;
            }
            let room = self.max - self.held.len();
            // A newline within room + 1 bytes ends a line that fits; none there: the
            // line is longer than the bound, or not finished in this chunk.
            let look = &bytes[..bytes.len().min(room + 1)];
            if let Some(i) = memchr::memchr(b'\n', look) {
                self.line(&bytes[..i], out);
                bytes = &bytes[i + 1..];
            } else if bytes.len() > room {
                self.held.extend_from_slice(&bytes[..room]);
                out(Piece::Cut(&self.held));
                self.held.clear();
                self.skipping = true;
                bytes = &bytes[room..];
            } else {
                self.held.extend_from_slice(bytes);
                return;
            }
        }
        if self.held.is_empty() && self.held.capacity() > 64 * 1024 {
            self.held = Vec::new();
        }
    }

    fn line(&mut self, rest: &[u8], out: &mut impl FnMut(Piece<'_>)) {
        if self.held.is_empty() {
            out(Piece::Line(rest));
        } else {
            self.held.extend_from_slice(rest);
            out(Piece::Line(&self.held));
            self.held.clear();
        }
    }

    /// At the end of the input: a line left without its newline is handed on.
    pub fn finish(&mut self, out: &mut impl FnMut(Piece<'_>)) {
        if !self.held.is_empty() {
            out(Piece::Tail(&self.held));
            self.held.clear();
        }
        self.skipping = false;
    }
}

/// The size of the chunks [`for_each_line`] reads.
const CHUNK: usize = 1 << 20;

/// Reads `input` to its end and hands each line (without its newline) to `f`, with
/// whether it was cut at `max` bytes.
pub fn for_each_line<R: Read>(
    mut input: R,
    max: usize,
    mut f: impl FnMut(&[u8], bool),
) -> io::Result<()> {
    let mut splitter = LineSplitter::new(max);
    let mut out = |p: Piece<'_>| match p {
        Piece::Line(l) | Piece::Tail(l) => f(l, false),
        Piece::Cut(l) => f(l, true),
        Piece::CutEnd => {}
    };
    let mut buf = vec![0; CHUNK];
    loop {
        match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => splitter.push(&buf[..n], &mut out),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    splitter.finish(&mut out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        for_each_line(input, max, |l, cut| out.push((l.to_vec(), cut))).unwrap();
        out
    }

    /// Every piece, pushed in chunks of `size`.
    fn pieces(max: usize, input: &[u8], size: usize) -> Vec<(char, Vec<u8>)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut keep = |p: Piece<'_>| {
            out.push(match p {
                Piece::Line(l) => ('L', l.to_vec()),
                Piece::Cut(l) => ('C', l.to_vec()),
                Piece::CutEnd => ('E', Vec::new()),
                Piece::Tail(l) => ('T', l.to_vec()),
            })
        };
        for c in input.chunks(size) {
            s.push(c, &mut keep);
        }
        s.finish(&mut keep);
        out
    }

    #[test]
    fn line_reader_splits_and_cuts() {
        let got = lines_of(b"a\nbb\n\nccc", 1024);
        assert_eq!(
            got.iter().map(|(l, _)| l.as_slice()).collect::<Vec<_>>(),
            vec![b"a".as_slice(), b"bb", b"", b"ccc"]
        );
        let mut big = vec![b'x'; 3 * CHUNK + 17];
        big.extend_from_slice(b"\nnext\n");
        let got = lines_of(&big, 2048);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.len(), 2048);
        assert!(got[0].1);
        assert_eq!(got[1], (b"next".to_vec(), false));
    }

    #[test]
    fn line_reader_handles_lines_across_chunks() {
        let mut data = Vec::new();
        for i in 0..200_000 {
            data.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        let got = lines_of(&data, 1024);
        assert_eq!(got.len(), 200_000);
        assert_eq!(got[199_999].0, b"line 199999");
    }

    #[test]
    fn the_pieces_are_the_same_whatever_the_chunks() {
        let input = b"TS a\nTS bc\nxxxxxxxxxxxxxxxxxxxxxxxx\nTS d\nfits-8!!\nTS e";
        let want = pieces(8, input, input.len());
        assert_eq!(
            want,
            vec![
                ('L', b"TS a".to_vec()),
                ('L', b"TS bc".to_vec()),
                ('C', b"xxxxxxxx".to_vec()),
                ('E', Vec::new()),
                ('L', b"TS d".to_vec()),
                ('L', b"fits-8!!".to_vec()),
                ('T', b"TS e".to_vec()),
            ]
        );
        for size in 1..input.len() {
            assert_eq!(pieces(8, input, size), want, "chunks of {size}");
        }
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_whole_even_when_a_chunk_ends_with_it() {
        // The old reader marked it cut when a read ended right after its last byte.
        assert_eq!(
            pieces(4, b"abcd\nef\n", 4),
            vec![('L', b"abcd".to_vec()), ('L', b"ef".to_vec())]
        );
    }

    #[test]
    fn a_line_without_end_is_held_only_up_to_the_bound() {
        let mut s = LineSplitter::new(100);
        let mut n = 0;
        let chunk = vec![b'x'; 4096];
        for _ in 0..10_000 {
            s.push(&chunk, &mut |_| n += 1);
            assert!(s.held.len() <= 100);
        }
        assert_eq!(n, 1, "one cut piece, the rest skipped");
    }
}
