//! The built-in effects' rule for one target: what the executor does ([`decide`], and
//! [`restore_to_point`] for a bulk restore), free of I/O.

use chrono::NaiveDateTime;

use crate::domain::change::number;
use crate::domain::entity::EntityState;
use crate::domain::execution::{attributes_after, undo_changes, Attrs, ChangeStep};
use crate::domain::schema::Effect;

use super::attrs_of;

/// An entity as the executor finds it.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub state: EntityState,
    /// Its attributes (a JSON object of strings).
    pub attrs: &'a str,
    pub deleted_by: Option<i64>,
    pub purge_after: Option<NaiveDateTime>,
}

/// What a change asks of every target: the effect it runs (for a rollback, the inverse)
/// and, for `set_attributes`, its parameters (a rollback: the keys the original set).
#[derive(Debug, Clone, Copy)]
pub struct Rule<'a> {
    pub effect: Effect,
    pub rollback: bool,
    pub params: &'a Attrs,
    pub rollback_keys: &'a [String],
}

/// What the executor does with one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new (state, attributes).
    Apply(EntityState, String),
    Skip(String),
    Fail(String),
}

fn text_of(a: &Attrs) -> String {
    serde_json::to_string(a).expect("attrs serialise")
}

/// The built-in effects' rule for one entity, as of `now`. `before` is the version row
/// that matters: for a restore, the one its deletion wrote; for a rollback of
/// `set_attributes`, the one the original change wrote.
pub fn decide(
    rule: &Rule<'_>,
    e: Found<'_>,
    before: Option<ChangeStep<'_>>,
    now: NaiveDateTime,
) -> Outcome {
    match rule.effect {
        Effect::SoftDelete => match e.state {
            EntityState::Active => Outcome::Apply(EntityState::Deleted, e.attrs.to_string()),
            EntityState::Deleted => Outcome::Skip(format!(
                "already deleted{}",
                e.deleted_by
                    .map(|d| format!(" by {}", number(d)))
                    .unwrap_or_default()
            )),
            s @ EntityState::Purged => {
                Outcome::Fail(format!("cannot delete an entity that is {s}"))
            }
        },
        Effect::Restore => match e.state {
            // Back to active with what its deletion changed undone (nothing, for a soft
            // delete), keeping what an import recorded while it was deleted.
            EntityState::Deleted => Outcome::Apply(
                EntityState::Active,
                before
                    .map(|v| undo_changes(e.attrs, &[v]))
                    .unwrap_or_else(|| e.attrs.to_string()),
            ),
            EntityState::Active => Outcome::Skip("already active".into()),
            EntityState::Purged => Outcome::Fail("purged: it can no longer be restored".into()),
        },
        Effect::SetAttributes => {
            if e.state != EntityState::Active {
                return Outcome::Fail(format!("the entity is {}", e.state));
            }
            let current = attrs_of(e.attrs);
            let attrs = if rule.rollback {
                let Some(v) = before else {
                    return Outcome::Fail(
                        "no earlier version of this entity from the original change".into(),
                    );
                };
                let prior = attrs_of(v.before_attrs);
                attributes_after(&current, rule.params, Some((&prior, rule.rollback_keys)))
            } else {
                attributes_after(&current, rule.params, None)
            };
            Outcome::Apply(EntityState::Active, text_of(&attrs))
        }
        Effect::Purge => match (e.state, e.purge_after) {
            (EntityState::Deleted, Some(p)) if p <= now => {
                Outcome::Apply(EntityState::Purged, "{}".into())
            }
            (EntityState::Deleted, Some(p)) => Outcome::Fail(format!(
                "still within its retention period: it may be purged after {}",
                p.format("%Y-%m-%d %H:%M UTC")
            )),
            (EntityState::Deleted, None) => Outcome::Fail(
                "has no retention date; restore or soft-delete it through a change first".into(),
            ),
            (EntityState::Purged, _) => Outcome::Skip("already purged".into()),
            (s @ EntityState::Active, _) => {
                Outcome::Fail(format!("only deleted entities can be purged; it is {s}"))
            }
        },
        Effect::Webhook => Outcome::Fail("webhook effects are not built in".into()),
    }
}

/// A bulk restore: back to (state, attrs) at the restore's point; `None` means the entity
/// has not changed since the point.
pub fn restore_to_point(e: Found<'_>, at_point: Option<(EntityState, &str)>) -> Outcome {
    if e.state == EntityState::Purged {
        return Outcome::Fail("purged: it can no longer be restored".into());
    }
    let (state, attrs) = at_point.unwrap_or((e.state, e.attrs));
    if state != EntityState::Active {
        Outcome::Skip(format!("it was {state} at that point"))
    } else if e.state == EntityState::Active && e.attrs == attrs {
        Outcome::Skip("already as it was at that point".into())
    } else {
        Outcome::Apply(EntityState::Active, attrs.to_string())
    }
}
