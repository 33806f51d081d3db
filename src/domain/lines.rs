//! Reading line-based uploads (NDJSON inventory and contacts files) with bounded memory:
//! a line longer than [`MAX_LINE_BYTES`] is skipped without being held, and every error
//! echoes at most [`ECHO_CHARS`] characters of what was sent.

use std::io::BufRead;

/// Longest line of an inventory or contacts import.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Characters of user input an error message repeats.
pub const ECHO_CHARS: usize = 100;

/// At most [`ECHO_CHARS`] characters of `s`, with `…` when cut, control characters shown
/// as `�` so an echo cannot break a terminal or a log line.
pub fn clip(s: &str) -> String {
    clip_to(s, ECHO_CHARS)
}

/// At most `n` characters of `s` (see [`clip`]).
pub fn clip_to(s: &str, n: usize) -> String {
    let mut out: String = s
        .chars()
        .take(n)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

/// One line of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(String),
    /// A line that cannot be read as text; the import rejects it with this code and
    /// message (and, with `partial`, goes on with the next one).
    Unreadable {
        code: &'static str,
        message: String,
    },
}

impl From<String> for Line {
    fn from(s: String) -> Line {
        Line::Text(s)
    }
}

/// The lines of `reader`, each at most `max` bytes (without its `\n` or `\r\n`).
pub struct Lines<R> {
    reader: R,
    max: usize,
}

impl<R: BufRead> Lines<R> {
    pub fn new(reader: R) -> Lines<R> {
        Lines::with_max(reader, MAX_LINE_BYTES)
    }

    pub fn with_max(reader: R, max: usize) -> Lines<R> {
        Lines { reader, max }
    }

    /// Consume the rest of a line without keeping it; returns the bytes skipped.
    fn skip_rest(&mut self) -> std::io::Result<u64> {
        let mut skipped = 0u64;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(skipped);
            }
            match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.reader.consume(i + 1);
                    return Ok(skipped + i as u64);
                }
                None => {
                    let n = buf.len();
                    self.reader.consume(n);
                    skipped += n as u64;
                }
            }
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = std::io::Result<Line>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        let n = match std::io::Read::take(&mut self.reader, self.max as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        if n == 0 {
            return None;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        } else if buf.len() > self.max {
            let rest = match self.skip_rest() {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            };
            let head = String::from_utf8_lossy(&buf[..buf.len().min(4 * ECHO_CHARS)]);
            return Some(Ok(Line::Unreadable {
                code: "line_too_long",
                message: format!(
                    "the line has {} bytes, more than the {} a line may have; it starts with `{}`",
                    buf.len() as u64 + rest,
                    self.max,
                    clip(&head)
                ),
            }));
        }
        Some(Ok(match String::from_utf8(buf) {
            Ok(s) => Line::Text(s),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.into_bytes();
                Line::Unreadable {
                    code: "not_utf8",
                    message: format!(
                        "the line is not UTF-8 text (byte {} is not); it starts with `{}`",
                        at + 1,
                        clip(&String::from_utf8_lossy(
                            &bytes[..bytes.len().min(4 * ECHO_CHARS)]
                        ))
                    ),
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], max: usize) -> Vec<Line> {
        Lines::with_max(std::io::BufReader::with_capacity(7, input), max)
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn splits_lines_and_bounds_them() {
        let lines = read(b"a\r\nbb\n\nccccccccccccccc\ndd", 4);
        assert_eq!(lines[0], Line::Text("a".into()));
        assert_eq!(lines[1], Line::Text("bb".into()));
        assert_eq!(lines[2], Line::Text("".into()));
        assert!(
            matches!(&lines[3], Line::Unreadable { code: "line_too_long", message } if message.contains("15 bytes")),
            "{:?}",
            lines[3]
        );
        assert_eq!(lines[4], Line::Text("dd".into()));
        assert_eq!(lines.len(), 5);
        // Exactly the limit is fine, with or without a final newline.
        assert_eq!(read(b"abcd\nabcd", 4), vec![Line::Text("abcd".into()); 2]);
        assert!(matches!(read(b"abcde", 4)[0], Line::Unreadable { .. }));
    }

    #[test]
    fn bad_text_is_one_bad_line() {
        let lines = read(b"ok\n\xff\xfe\nok\n", 100);
        assert!(matches!(
            lines[1],
            Line::Unreadable {
                code: "not_utf8",
                ..
            }
        ));
        assert_eq!(lines[2], Line::Text("ok".into()));
    }

    #[test]
    fn clips_echoes() {
        assert_eq!(clip("short"), "short");
        let long = "x".repeat(1000);
        assert_eq!(clip(&long).chars().count(), ECHO_CHARS + 1);
        assert_eq!(clip("a\nb"), "a\u{FFFD}b");
    }
}
