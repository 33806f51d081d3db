//! The errors of one resolution, collected line by line, and the few phrases every message
//! uses to name a kind.

use super::{ResolutionError, MAX_STORED_ERRORS};
use crate::domain::schema::{Kind, Schema};

/// The errors found so far.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    list: Vec<ResolutionError>,
}

/// How a resolution's errors are listed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Order {
    /// By field, then line (a selector's `targets.ids`, `targets.within`, …); errors on the
    /// same field and line keep the order they were found in.
    FieldLine,
    /// By line, then input (a restore's `entities`, where every error is on one field).
    LineInput,
}

impl Problems {
    pub(crate) fn push(
        &mut self,
        field: &str,
        line: Option<usize>,
        input: &str,
        code: &str,
        message: String,
    ) {
        self.list.push(ResolutionError {
            field: field.into(),
            line,
            input: input.into(),
            code: code.into(),
            message,
            actual_kind: None,
            expected_kind: None,
        });
    }

    /// A `wrong_kind` error, with the kind the ID really is and the one expected.
    pub(crate) fn push_kinds(
        &mut self,
        field: &str,
        line: Option<usize>,
        input: &str,
        message: String,
        actual: &str,
        expected: &str,
    ) {
        self.list.push(ResolutionError {
            field: field.into(),
            line,
            input: input.into(),
            code: "wrong_kind".into(),
            message,
            actual_kind: Some(actual.into()),
            expected_kind: Some(expected.into()),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The errors in `order`, at most [`MAX_STORED_ERRORS`] of them, and how many there were.
    pub(crate) fn into_sorted(self, order: Order) -> (Vec<ResolutionError>, u64) {
        let mut errors = self.list;
        match order {
            Order::FieldLine => {
                errors.sort_by(|a, b| (a.field.as_str(), a.line).cmp(&(b.field.as_str(), b.line)))
            }
            Order::LineInput => errors.sort_by(|a, b| (a.line, &a.input).cmp(&(b.line, &b.input))),
        }
        let count = errors.len() as u64;
        errors.truncate(MAX_STORED_ERRORS);
        (errors, count)
    }
}

/// "an App installation (app_install)"; the bare name for a kind the schema lacks.
pub(crate) fn kind_desc(schema: &Schema, name: &str) -> String {
    schema
        .kind(name)
        .map(Kind::a_describe)
        .unwrap_or_else(|| name.to_string())
}

/// "App installations (app_install)"
pub(crate) fn plural_desc(k: &Kind) -> String {
    format!("{} ({})", k.plural, k.name)
}
