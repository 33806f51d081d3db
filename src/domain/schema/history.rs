//! How one schema version differs from the one before it, for the schema history page:
//! the kinds and operations added, removed and changed (compared as the loaded schema,
//! so a reworded comment changes nothing), and a line difference of the two TOML sources.

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use super::Schema;

/// Names of what was added, removed and changed, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The kinds and operations `after` adds, removes and changes against `before`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SchemaDifference {
    pub kinds: Changes,
    pub operations: Changes,
}

impl SchemaDifference {
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.operations.is_empty()
    }
}

fn changes<T: Serialize>(
    before: &std::collections::BTreeMap<String, T>,
    after: &std::collections::BTreeMap<String, T>,
) -> Changes {
    let shape = |t: &T| serde_json::to_value(t).unwrap_or_default();
    Changes {
        added: after
            .keys()
            .filter(|k| !before.contains_key(*k))
            .cloned()
            .collect(),
        removed: before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect(),
        changed: after
            .iter()
            .filter(|(k, a)| before.get(*k).is_some_and(|b| shape(b) != shape(a)))
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

/// What `after` adds, removes and changes against `before`.
pub fn compare(before: &Schema, after: &Schema) -> SchemaDifference {
    SchemaDifference {
        kinds: changes(&before.kinds, &after.kinds),
        operations: changes(&before.operations, &after.operations),
    }
}

/// A line of a source difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineChange {
    Same,
    Added,
    Removed,
}

/// One line of a hunk: the change, its numbers in the old and new source (1-based), its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiffLine {
    pub change: LineChange,
    pub old: Option<usize>,
    pub new: Option<usize>,
    pub text: String,
}

/// The lines that differ between two sources, in hunks with `context` unchanged lines
/// around each change; empty when the sources are the same.
pub fn line_diff(before: &str, after: &str, context: usize) -> Vec<Vec<DiffLine>> {
    let diff = TextDiff::from_lines(before, after);
    diff.grouped_ops(context)
        .iter()
        .map(|group| {
            group
                .iter()
                .flat_map(|op| diff.iter_changes(op))
                .map(|c| DiffLine {
                    change: match c.tag() {
                        ChangeTag::Equal => LineChange::Same,
                        ChangeTag::Insert => LineChange::Added,
                        ChangeTag::Delete => LineChange::Removed,
                    },
                    old: c.old_index().map(|i| i + 1),
                    new: c.new_index().map(|i| i + 1),
                    text: c.value().trim_end_matches(['\n', '\r']).to_string(),
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = include_str!("../../../config/schema.example.toml");

    #[test]
    fn added_removed_and_changed_operations_are_named() {
        let before = Schema::from_toml(BASE).unwrap();
        // Rename one operation (removed + added), reword a kind's label (changed) and a
        // comment (nothing).
        let after = BASE
            .replacen("[operations.uninstall_app]", "[operations.remove_app]", 1)
            .replacen("label = \"Cloud site\"", "label = \"Hosted site\"", 1)
            .replacen("# countersign example schema.", "# another comment", 1);
        let after = Schema::from_toml(&after).unwrap();
        let d = compare(&before, &after);
        assert_eq!(d.operations.added, vec!["remove_app".to_string()]);
        assert_eq!(d.operations.removed, vec!["uninstall_app".to_string()]);
        assert!(d.operations.changed.is_empty(), "{d:?}");
        assert_eq!(d.kinds.changed, vec!["site".to_string()]);
        assert!(d.kinds.added.is_empty() && d.kinds.removed.is_empty());
        assert!(compare(&before, &before).is_empty());
    }

    #[test]
    fn line_diff_numbers_the_lines_it_shows() {
        let a = "a\nb\nc\nd\ne\nf\ng\n";
        let b = "a\nb\nc\nD\ne\nf\ng\nh\n";
        let hunks = line_diff(a, b, 1);
        assert_eq!(hunks.len(), 2, "{hunks:?}");
        let first: Vec<(LineChange, Option<usize>, Option<usize>, &str)> = hunks[0]
            .iter()
            .map(|l| (l.change, l.old, l.new, l.text.as_str()))
            .collect();
        assert_eq!(
            first,
            vec![
                (LineChange::Same, Some(3), Some(3), "c"),
                (LineChange::Removed, Some(4), None, "d"),
                (LineChange::Added, None, Some(4), "D"),
                (LineChange::Same, Some(5), Some(5), "e"),
            ]
        );
        assert!(line_diff(a, a, 3).is_empty());
    }
}
