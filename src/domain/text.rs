//! The words of a change: a title and a rationale, checked once when they are made, so
//! that no path (form, API, rollback, restore, edit) stores one that breaks the rules.

/// Longest title, in characters.
pub const MAX_TITLE: usize = 200;
/// Longest rationale, in characters.
pub const MAX_RATIONALE: usize = 20_000;

/// The text a problem is about (`error.rs` names the API `code` of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    Title,
    Rationale,
}

/// Why a text was refused: which text, and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextProblem {
    pub field: TextField,
    pub message: String,
}

fn problem(field: TextField, message: String) -> TextProblem {
    TextProblem { field, message }
}

/// A title: 1 to [`MAX_TITLE`] characters, trimmed, on one line, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Title, TextProblem> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(problem(TextField::Title, "the title is required".into()));
        }
        let n = t.chars().count();
        if n > MAX_TITLE {
            return Err(problem(
                TextField::Title,
                format!("the title has {n} characters; at most {MAX_TITLE} are allowed"),
            ));
        }
        if let Some(c) = t.chars().find(|c| c.is_control()) {
            return Err(problem(
                TextField::Title,
                format!(
                    "the title contains the control character U+{:04X}; a title is one line of text",
                    c as u32
                ),
            ));
        }
        Ok(Title(t.to_string()))
    }

    /// A title made by countersign from other text (say "Roll back CHG-3: <title>"):
    /// control characters become spaces and it is cut to fit.
    pub fn generated(raw: &str) -> Title {
        let cleaned: String = raw
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_TITLE)
            .collect();
        let cleaned = cleaned.trim();
        Title(if cleaned.is_empty() {
            "(untitled)".into()
        } else {
            cleaned.to_string()
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A rationale: at most [`MAX_RATIONALE`] characters, trimmed; lines and tabs are
/// allowed, other control characters are not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Rationale(String);

impl Rationale {
    pub fn parse(raw: &str) -> Result<Rationale, TextProblem> {
        let n = raw.chars().count();
        if n > MAX_RATIONALE {
            return Err(problem(
                TextField::Rationale,
                format!("the rationale has {n} characters; at most {MAX_RATIONALE} are allowed"),
            ));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(problem(
                TextField::Rationale,
                format!(
                    "the rationale contains the control character U+{:04X}",
                    c as u32
                ),
            ));
        }
        Ok(Rationale(raw.trim().to_string()))
    }

    /// A rationale made by countersign (see [`Title::generated`]).
    pub fn generated(raw: &str) -> Rationale {
        Rationale(
            raw.trim()
                .chars()
                .map(|c| {
                    if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                        ' '
                    } else {
                        c
                    }
                })
                .take(MAX_RATIONALE)
                .collect(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(Title::parse("  Remove x ").unwrap().as_str(), "Remove x");
        assert!(Title::parse("").is_err());
        assert!(Title::parse("a\u{1b}[31mred").is_err());
        assert!(Title::parse("two\nlines").is_err());
        assert!(Title::parse(&"t".repeat(MAX_TITLE + 1)).is_err());
        assert_eq!(
            Title::generated(&"t".repeat(500)).as_str().chars().count(),
            MAX_TITLE
        );
        assert_eq!(Title::generated("a\nb").as_str(), "a b");
    }

    #[test]
    fn rationales() {
        assert!(Rationale::parse("line one\nline two\tok").is_ok());
        assert!(Rationale::parse("bell\u{7}").is_err());
        assert!(Rationale::parse(&"r".repeat(MAX_RATIONALE + 1)).is_err());
        assert_eq!(
            Rationale::generated(&"r".repeat(MAX_RATIONALE + 9))
                .as_str()
                .len(),
            MAX_RATIONALE
        );
    }
}
