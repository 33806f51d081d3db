//! Echoing input back in error messages: always a bounded part of it, so a huge line, ID
//! or answer cannot turn into a huge report, audit record or page.

use std::borrow::Cow;

/// How many characters of an input an error message quotes.
pub const ECHO_CHARS: usize = 120;

/// `s` itself when it has at most `max_chars` characters, else its first `max_chars`
/// characters followed by `…`.
pub fn excerpt(s: &str, max_chars: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max_chars) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
    }
}

/// [`excerpt`] with the usual bound.
pub fn echo(s: &str) -> Cow<'_, str> {
    excerpt(s, ECHO_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_characters() {
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("abcd", 3), "abc…");
        assert_eq!(excerpt("ééé", 2), "éé…");
        assert_eq!(excerpt("", 0), "");
        assert_eq!(echo(&"x".repeat(10_000)).chars().count(), ECHO_CHARS + 1);
    }
}
