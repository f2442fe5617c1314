//! A JSON reader that accepts `//` and `/* */` comments and trailing commas, and keeps
//! the line and column of every value and key.
//!
//! serde_json would drop both: comments are an error to it, and its values carry no
//! position. Operators annotate their configs (the seed's own example has `//` comments),
//! and every validation error must point at a line:column, so the config is read into this
//! tree first and validated from there.

use std::fmt;

/// 1-based line and column of the first character of a value or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Node>),
    Object(Vec<Member>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// A value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
}

/// One `"key": value` pair of an object, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub key: String,
    pub key_pos: Pos,
    pub node: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// Parses a whole document: exactly one value, surrounded by whitespace and comments.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut p = Parser {
        src: text.as_bytes(),
        at: 0,
        line: 1,
        col: 1,
        depth: 0,
    };
    // A UTF-8 byte order mark is what some Windows editors write first.
    if p.src.starts_with(b"\xEF\xBB\xBF") {
        p.at = 3;
    }
    p.skip_space()?;
    let node = p.value()?;
    p.skip_space()?;
    if p.at < p.src.len() {
        return Err(p.error("unexpected text after the end of the document"));
    }
    Ok(node)
}

const MAX_DEPTH: u32 = 64;

struct Parser<'a> {
    src: &'a [u8],
    at: usize,
    line: u32,
    col: u32,
    depth: u32,
}

impl Parser<'_> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos: self.pos(),
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            // Count characters, not the continuation bytes of multi-byte UTF-8.
            self.col += 1;
        }
        Some(b)
    }

    fn skip_space(&mut self) -> Result<(), SyntaxError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    self.bump();
                }
                Some(b'/') => match self.src.get(self.at + 1) {
                    Some(b'/') => {
                        while let Some(b) = self.peek() {
                            if b == b'\n' {
                                break;
                            }
                            self.bump();
                        }
                    }
                    Some(b'*') => {
                        let start = self.pos();
                        self.bump();
                        self.bump();
                        loop {
                            match self.bump() {
                                None => {
                                    return Err(SyntaxError {
                                        pos: start,
                                        message: "this /* comment is never closed with */".into(),
                                    })
                                }
                                Some(b'*') if self.peek() == Some(b'/') => {
                                    self.bump();
                                    break;
                                }
                                Some(_) => {}
                            }
                        }
                    }
                    _ => {
                        return Err(self
                            .error("a single '/' is not valid here; comments start with // or /*"))
                    }
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let pos = self.pos();
        let value = match self.peek() {
            None => return Err(self.error("unexpected end of file: a value was expected")),
            Some(b'{') => self.object()?,
            Some(b'[') => self.array()?,
            Some(b'"') => Value::String(self.string()?),
            Some(b't') => self.word("true", Value::Bool(true))?,
            Some(b'f') => self.word("false", Value::Bool(false))?,
            Some(b'n') => self.word("null", Value::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b'\'') => {
                return Err(self.error("strings must use double quotes (\"), not single quotes"))
            }
            Some(_) => {
                return Err(self.error(format!(
                    "unexpected character {}: a value was expected",
                    self.describe_here()
                )))
            }
        };
        Ok(Node { value, pos })
    }

    fn describe_here(&self) -> String {
        let rest = &self.src[self.at..];
        let s = String::from_utf8_lossy(&rest[..rest.len().min(4)]);
        match s.chars().next() {
            Some(c) => format!("{c:?}"),
            None => "end of file".into(),
        }
    }

    fn word(&mut self, word: &str, value: Value) -> Result<Value, SyntaxError> {
        if self.src[self.at..].starts_with(word.as_bytes()) {
            for _ in 0..word.len() {
                self.bump();
            }
            Ok(value)
        } else {
            Err(self.error(format!(
                "unexpected word: expected {word}, a string, a number, an object or an array"
            )))
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Value, SyntaxError> {
        self.enter()?;
        self.bump(); // {
        let mut members = Vec::new();
        loop {
            self.skip_space()?;
            match self.peek() {
                Some(b'}') => {
                    self.bump();
                    break;
                }
                Some(b'"') => {}
                None => {
                    return Err(
                        self.error("unexpected end of file inside an object: '}' is missing")
                    )
                }
                Some(_) => {
                    return Err(self.error(format!(
                        "expected a key in double quotes or '}}', found {}",
                        self.describe_here()
                    )))
                }
            }
            let key_pos = self.pos();
            let key = self.string()?;
            self.skip_space()?;
            if self.peek() != Some(b':') {
                return Err(self.error(format!("expected ':' after the key \"{key}\"")));
            }
            self.bump();
            self.skip_space()?;
            let node = self.value()?;
            members.push(Member { key, key_pos, node });
            self.skip_space()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b'}') => {
                    self.bump();
                    break;
                }
                None => {
                    return Err(
                        self.error("unexpected end of file inside an object: '}' is missing")
                    )
                }
                Some(_) => {
                    return Err(self.error(format!(
                        "expected ',' or '}}' after a value, found {} (is a comma missing?)",
                        self.describe_here()
                    )))
                }
            }
        }
        self.depth -= 1;
        Ok(Value::Object(members))
    }

    fn array(&mut self) -> Result<Value, SyntaxError> {
        self.enter()?;
        self.bump(); // [
        let mut items = Vec::new();
        loop {
            self.skip_space()?;
            if self.peek() == Some(b']') {
                self.bump();
                break;
            }
            items.push(self.value()?);
            self.skip_space()?;
            match self.peek() {
                Some(b',') => {
                    self.bump();
                }
                Some(b']') => {
                    self.bump();
                    break;
                }
                None => {
                    return Err(self.error("unexpected end of file inside an array: ']' is missing"))
                }
                Some(_) => {
                    return Err(self.error(format!(
                        "expected ',' or ']' after a value, found {} (is a comma missing?)",
                        self.describe_here()
                    )))
                }
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos();
        self.bump(); // "
        let mut out = Vec::new();
        loop {
            let here = self.pos();
            match self.bump() {
                None => {
                    return Err(SyntaxError {
                        pos: start,
                        message: "this string is never closed with '\"'".into(),
                    })
                }
                Some(b'"') => break,
                Some(b'\n') => {
                    return Err(SyntaxError {
                        pos: start,
                        message:
                            "this string runs past the end of the line (is a closing '\"' missing?)"
                                .into(),
                    })
                }
                Some(b'\\') => {
                    let c = match self.bump() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => self.unicode_escape(here)?,
                        other => {
                            let shown = other.map(|b| (b as char).to_string()).unwrap_or_default();
                            return Err(SyntaxError {
                                pos: here,
                                message: format!(
                                    "invalid escape \\{shown} in a string; in JSON a regex backslash is written twice, e.g. \"\\\\d+\" for \\d+"
                                ),
                            });
                        }
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                Some(b) => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| SyntaxError {
            pos: start,
            message: "this string is not valid UTF-8".into(),
        })
    }

    fn hex4(&mut self, at: Pos) -> Result<u32, SyntaxError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self
                .bump()
                .and_then(|b| (b as char).to_digit(16))
                .ok_or(SyntaxError {
                    pos: at,
                    message: "\\u must be followed by four hex digits".into(),
                })?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn unicode_escape(&mut self, at: Pos) -> Result<char, SyntaxError> {
        let hi = self.hex4(at)?;
        let code = if (0xD800..0xDC00).contains(&hi) {
            if self.bump() != Some(b'\\') || self.bump() != Some(b'u') {
                return Err(SyntaxError {
                    pos: at,
                    message: "a \\u surrogate must be followed by its low half".into(),
                });
            }
            let lo = self.hex4(at)?;
            0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
        } else {
            hi
        };
        char::from_u32(code).ok_or(SyntaxError {
            pos: at,
            message: "\\u escape is not a valid character".into(),
        })
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start_at = self.at;
        let start = self.pos();
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.bump();
        }
        let text = std::str::from_utf8(&self.src[start_at..self.at]).unwrap_or("");
        text.parse::<f64>()
            .map(Value::Number)
            .map_err(|_| SyntaxError {
                pos: start,
                message: format!("{text:?} is not a valid number"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_trailing_commas_are_accepted() {
        let n = parse("// head\n{ \"a\": 1, /* why */ \"b\": [true, null,], }\n").unwrap();
        let Value::Object(m) = n.value else {
            panic!("object expected")
        };
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].key, "a");
        assert_eq!(m[1].key_pos, Pos { line: 2, col: 21 });
    }

    #[test]
    fn positions_are_line_and_column() {
        let n = parse("{\n  \"x\": \"y\"\n}").unwrap();
        let Value::Object(m) = n.value else { panic!() };
        assert_eq!(m[0].key_pos, Pos { line: 2, col: 3 });
        assert_eq!(m[0].node.pos, Pos { line: 2, col: 8 });
    }

    #[test]
    fn missing_comma_is_reported_where_it_is() {
        let e = parse("{\n \"a\": 1\n \"b\": 2\n}").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, col: 2 });
        assert!(e.message.contains("comma"), "{}", e.message);
    }

    #[test]
    fn unclosed_block_comment_and_bad_escape() {
        assert!(parse("{} /* x")
            .unwrap_err()
            .message
            .contains("never closed"));
        let e = parse(r#"{"p": "\d+"}"#).unwrap_err();
        assert!(e.message.contains("written twice"), "{}", e.message);
    }

    #[test]
    fn escapes_decode() {
        let n = parse(r#""a\\x\u00e9\ud83d\ude00""#).unwrap();
        assert_eq!(n.value, Value::String("a\\xé😀".into()));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "[".repeat(10_000);
        assert!(parse(&text).unwrap_err().message.contains("nesting"));
    }
}
