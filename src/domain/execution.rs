//! Execution rules, free of I/O: when a wave halts the execution (how a target list is cut
//! into waves is `waves`), which final state an execution ends in, and which effect undoes
//! which.

use std::collections::BTreeMap;

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

pub use super::waves::{default_waves, plan_waves, Wave, WaveSize};

/// Does a finished wave with these counts halt the execution? The threshold is the
/// largest tolerated failure rate (0.0: any failure halts).
pub fn wave_halts(done: u64, failed: u64, threshold: f64) -> bool {
    let ran = done + failed;
    ran > 0 && failed > 0 && (failed as f64 / ran as f64) > threshold
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum ExecState {
    Running,
    /// Waiting after a wave (`bake`), then asking the health check, before the next.
    Baking,
    /// Waiting for an implementer to continue it (`pause_after_waves`).
    Paused,
    Halted,
    Completed,
    PartiallyFailed,
    Failed,
    Aborted,
}

text_enum!(ExecState, "execution state", {
    Running => "running",
    Baking => "baking",
    Paused => "paused",
    Halted => "halted",
    Completed => "completed",
    PartiallyFailed => "partially_failed",
    Failed => "failed",
    Aborted => "aborted",
});

impl ExecState {
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            ExecState::Running | ExecState::Baking | ExecState::Paused | ExecState::Halted
        )
    }
}

/// The state of an execution whose items are all processed.
pub fn final_state(done: u64, failed: u64) -> ExecState {
    match (done, failed) {
        (_, 0) => ExecState::Completed,
        (0, _) => ExecState::Failed,
        _ => ExecState::PartiallyFailed,
    }
}

/// An entity's attributes.
pub type Attrs = BTreeMap<String, serde_json::Value>;

/// The attributes `set_attributes` leaves on an entity: the operation's `params` written as
/// strings, or, for a rollback, the values the entity had before the original change
/// (`prior`) for the keys that change set (a key it did not have is removed). The executor
/// applies exactly this, and the screens show it, so both say the same.
pub fn attributes_after(
    current: &Attrs,
    params: &Attrs,
    rollback: Option<(&Attrs, &[String])>,
) -> Attrs {
    let mut attrs = current.clone();
    match rollback {
        Some((prior, keys)) => {
            for k in keys {
                match prior.get(k) {
                    Some(val) => attrs.insert(k.clone(), val.clone()),
                    None => attrs.remove(k),
                };
            }
        }
        None => {
            for (k, v) in params {
                let v = match v {
                    serde_json::Value::String(_) => v.clone(),
                    other => serde_json::Value::String(other.to_string()),
                };
                attrs.insert(k.clone(), v);
            }
        }
    }
    attrs
}

/// One attribute a change sets on a target: its value now and after (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttrChange {
    pub key: String,
    pub now: Option<String>,
    pub after: Option<String>,
}

impl AttrChange {
    /// "version: 1.0.0 → 2.0.0"
    pub fn describe(changes: &[AttrChange]) -> String {
        changes
            .iter()
            .map(|c| {
                format!(
                    "{}: {} → {}",
                    c.key,
                    c.now.as_deref().unwrap_or("(none)"),
                    c.after.as_deref().unwrap_or("(none)")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The attributes in `keys`, before and after.
pub fn attribute_changes(current: &Attrs, after: &Attrs, keys: &[String]) -> Vec<AttrChange> {
    let text = |v: Option<&serde_json::Value>| {
        v.map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    keys.iter()
        .map(|k| AttrChange {
            key: k.clone(),
            now: text(current.get(k)),
            after: text(after.get(k)),
        })
        .collect()
}

/// The status of one execution item (one target of an execution). Items only move from
/// `pending`, once.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum ItemStatus {
    Pending,
    Done,
    Failed,
    Skipped,
    /// Not run: the drift check before its wave found it deleted, moved or changed since
    /// signing. The execution halts; an implementer skips it or aborts (a resume checks
    /// it again).
    Drifted,
}

text_enum!(ItemStatus, "execution item status", {
    Pending => "pending",
    Done => "done",
    Failed => "failed",
    Skipped => "skipped",
    Drifted => "drifted",
});

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(w: &[Wave]) -> Vec<u64> {
        w.iter().map(Wave::len).collect()
    }

    #[test]
    fn default_waves_are_canary_ten_percent_rest() {
        let w = plan_waves(10_000, &default_waves());
        assert_eq!(lens(&w), vec![1, 1000, 8999]);
        assert_eq!(w[2].end, 10_000);
        assert_eq!(w[1].start, 1);
        assert_eq!(lens(&plan_waves(1, &default_waves())), vec![1]);
        assert_eq!(lens(&plan_waves(2, &default_waves())), vec![1, 1]);
        assert_eq!(lens(&plan_waves(5, &default_waves())), vec![1, 1, 3]);
        assert!(plan_waves(0, &default_waves()).is_empty());
    }

    #[test]
    fn explicit_waves() {
        let sizes = vec![
            WaveSize::parse("2").unwrap(),
            WaveSize::parse("50%").unwrap(),
            WaveSize::parse("100%").unwrap(),
        ];
        assert_eq!(lens(&plan_waves(10, &sizes)), vec![2, 5, 3]);
        assert!(WaveSize::parse("0").is_err());
        assert!(WaveSize::parse("150%").is_err());
        assert!(WaveSize::parse("some").is_err());
    }

    #[test]
    fn exec_state_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(ExecState::VALUES);
        assert_eq!(ExecState::VALUES.len(), 8);
    }

    #[test]
    fn item_status_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(ItemStatus::VALUES);
        assert_eq!(ItemStatus::VALUES.len(), 5);
    }

    #[test]
    fn halting_and_final_states() {
        assert!(wave_halts(9, 1, 0.0));
        assert!(!wave_halts(10, 0, 0.0));
        assert!(!wave_halts(9, 1, 0.1));
        assert!(wave_halts(8, 2, 0.1));
        assert_eq!(final_state(5, 0), ExecState::Completed);

        assert_eq!(final_state(0, 5), ExecState::Failed);
        assert_eq!(final_state(3, 2), ExecState::PartiallyFailed);
        assert_eq!(final_state(0, 0), ExecState::Completed);
    }
}

/// What a bulk restore (`POST /api/v1/restores`) brings back, and to which point. Stored
/// as the change's selector (`{"restore": …}`) and part of its fingerprinted parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// Entities named one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<String>,
    /// Changes whose every touched entity is brought back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<i64>,
    /// Back to the state before this change ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_change: Option<i64>,
    /// Back to the state at this time (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::NaiveDateTime>,
}

impl RestoreSpec {
    /// The spec of a stored restore change, if `selector` is one.
    pub fn of_selector(selector: &str) -> Option<RestoreSpec> {
        let v: serde_json::Value = serde_json::from_str(selector).ok()?;
        serde_json::from_value(v.get("restore")?.clone()).ok()
    }

    pub fn selector(&self) -> serde_json::Value {
        serde_json::json!({ "restore": self })
    }
}

/// The point a restore goes back to, per entity: the state its first version row of a
/// change after the point records as `before`; an entity with no such row has not been
/// changed by a change since. Version rows of inventory imports never mark a point (see
/// [`undo_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestorePoint {
    /// Before the earliest of these changes that touched the entity.
    BeforeChanges(Vec<i64>),
    /// Before anything at or after this instant (the start of a change's execution).
    Since(chrono::NaiveDateTime),
    /// As it was at this instant.
    At(chrono::NaiveDateTime),
}

/// One version row written by a change, as a restore reads it: the attributes before and
/// after (JSON objects of strings).
#[derive(Debug, Clone, Copy)]
pub struct ChangeStep<'a> {
    pub before_attrs: &'a str,
    pub after_attrs: &'a str,
}

/// The attributes an entity goes back to when the change `steps` (oldest first, all made
/// after the restore's point) are undone, starting from its `current` attributes: every
/// attribute a step changed takes that step's `before` value (or goes away), newest step
/// first. Attributes no step changed keep their current value, so what inventory imports
/// recorded in between (the systems of record's word) survives a restore, and a restore
/// never reverts part of an import. Without imports in between this is exactly the
/// `before` of the oldest step. Returns `current` as it is when nothing changes.
pub fn undo_changes(current: &str, steps: &[ChangeStep<'_>]) -> String {
    type Attrs = std::collections::BTreeMap<String, serde_json::Value>;
    let parse = |s: &str| serde_json::from_str::<Attrs>(s).unwrap_or_default();
    let mut attrs = parse(current);
    let mut touched = false;
    for step in steps.iter().rev() {
        let (before, after) = (parse(step.before_attrs), parse(step.after_attrs));
        for key in before.keys().chain(after.keys()) {
            let was = before.get(key);
            if was == after.get(key) || attrs.get(key) == was {
                continue;
            }
            touched = true;
            match was {
                Some(v) => attrs.insert(key.clone(), v.clone()),
                None => attrs.remove(key),
            };
        }
    }
    if touched {
        serde_json::to_string(&attrs).expect("attributes serialise")
    } else {
        current.to_string()
    }
}

#[cfg(test)]
mod undo_tests {
    use super::{undo_changes, ChangeStep};

    fn step<'a>(before_attrs: &'a str, after_attrs: &'a str) -> ChangeStep<'a> {
        ChangeStep {
            before_attrs,
            after_attrs,
        }
    }

    #[test]
    fn without_imports_it_is_the_oldest_before() {
        // v1 → set version 2 → add beta → delete (no attribute change).
        let steps = [
            step(
                r#"{"app":"x","version":"1"}"#,
                r#"{"app":"x","version":"2"}"#,
            ),
            step(
                r#"{"app":"x","version":"2"}"#,
                r#"{"app":"x","beta":"y","version":"2"}"#,
            ),
            step(
                r#"{"app":"x","beta":"y","version":"2"}"#,
                r#"{"app":"x","beta":"y","version":"2"}"#,
            ),
        ];
        assert_eq!(
            undo_changes(r#"{"app":"x","beta":"y","version":"2"}"#, &steps),
            r#"{"app":"x","version":"1"}"#
        );
    }

    #[test]
    fn what_an_import_recorded_survives() {
        // A change set version 2; an import then renamed the app attribute; undoing the
        // change brings the version back and keeps the imported app.
        let steps = [step(
            r#"{"app":"x","version":"1"}"#,
            r#"{"app":"x","version":"2"}"#,
        )];
        assert_eq!(
            undo_changes(r#"{"app":"z","version":"2"}"#, &steps),
            r#"{"app":"z","version":"1"}"#
        );
        // A soft delete changes no attribute: the current (imported) ones stay as they are.
        let current = r#"{ "app": "z" }"#;
        assert_eq!(
            undo_changes(current, &[step(r#"{"app":"x"}"#, r#"{"app":"x"}"#)]),
            current
        );
    }

    #[test]
    fn a_purge_is_undone_key_by_key() {
        assert_eq!(
            undo_changes("{}", &[step(r#"{"app":"x"}"#, "{}")]),
            r#"{"app":"x"}"#
        );
    }
}
