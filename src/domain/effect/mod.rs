//! What a change does to each of its targets, decided once (issue #12, "every effect
//! previewed per target"). The built-in executor applies [`decide`]'s [`Outcome`] (and
//! [`restore_to_point`]'s for a bulk restore); the preview, the change page, the CSV and
//! the API describe the same outcome as a [`TargetEffect`], so what a screen says a target
//! gets is what the executor does to it. A rollback is described as the inverse it runs.

use chrono::NaiveDateTime;
use serde::Serialize;

use super::change::number;
use super::entity::EntityState;
use super::execution::{attribute_changes, AttrChange, Attrs};
use super::schema::{Effect, Operation, Schema};

mod rules;

pub use rules::{decide, restore_to_point, Found, Outcome, Rule};

fn attrs_of(s: &str) -> Attrs {
    serde_json::from_str(s).unwrap_or_default()
}

/// Whether a target's effect is still to come, already done by the change's execution, or
/// will be skipped or fail (and why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The effect will be applied.
    Applies,
    /// The change's execution applied it.
    Done,
    /// Skipped (nothing to do), planned or recorded.
    Skipped,
    /// It would fail now.
    Fails,
    /// The change's execution recorded a failure.
    Failed,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Applies => "applies",
            Standing::Done => "done",
            Standing::Skipped => "skipped",
            Standing::Fails => "fails",
            Standing::Failed => "failed",
        }
    }
}

/// What the effect does to the target, by effect (`type`); a skipped or failing target
/// keeps its effect's type with the details left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Detail {
    SetAttributes {
        attributes: Vec<AttrChange>,
    },
    SoftDelete {
        /// When it may be purged (projected from now, or the change's `not_before`, until
        /// the deletion ran).
        #[serde(skip_serializing_if = "Option::is_none")]
        purge_after: Option<NaiveDateTime>,
    },
    Restore {
        #[serde(skip_serializing_if = "Option::is_none")]
        to_state: Option<EntityState>,
        /// The change that deleted it (`CHG-n`).
        #[serde(skip_serializing_if = "Option::is_none")]
        deleted_by: Option<String>,
        /// Attributes the restore puts back (those its deletion changed).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        attributes: Vec<AttrChange>,
    },
    Purge {
        /// When its retention ended.
        #[serde(skip_serializing_if = "Option::is_none")]
        purge_after: Option<NaiveDateTime>,
    },
    Webhook {
        endpoint_host: String,
    },
}

impl Detail {
    /// The effect these details are of.
    pub fn effect(&self) -> Effect {
        match self {
            Detail::SetAttributes { .. } => Effect::SetAttributes,
            Detail::SoftDelete { .. } => Effect::SoftDelete,
            Detail::Restore { .. } => Effect::Restore,
            Detail::Purge { .. } => Effect::Purge,
            Detail::Webhook { .. } => Effect::Webhook,
        }
    }

    /// The details of `effect` when the target is skipped or fails.
    pub fn bare(effect: Effect, webhook_host: &str) -> Detail {
        match effect {
            Effect::SetAttributes => Detail::SetAttributes { attributes: vec![] },
            Effect::SoftDelete => Detail::SoftDelete { purge_after: None },
            Effect::Restore => Detail::Restore {
                to_state: None,
                deleted_by: None,
                attributes: vec![],
            },
            Effect::Purge => Detail::Purge { purge_after: None },
            Effect::Webhook => Detail::Webhook {
                endpoint_host: webhook_host.to_string(),
            },
        }
    }
}

/// The target of the operation's own kind a cascade pulled this target in with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CascadedFrom {
    pub kind: String,
    pub id: String,
    /// Its kind's label ("Cloud site").
    pub label: String,
    /// It is the target's direct parent (not a farther ancestor).
    pub parent: bool,
}

/// What happens to one target, in data and in one line of text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetEffect {
    #[serde(flatten)]
    pub detail: Detail,
    pub outcome: Standing,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cascaded_from: Option<CascadedFrom>,
    /// "soft-deleted; purged after 2027-01-01 unless restored"
    pub text: String,
}

impl TargetEffect {
    pub fn new(
        detail: Detail,
        outcome: Standing,
        reason: Option<String>,
        cascaded_from: Option<CascadedFrom>,
    ) -> TargetEffect {
        let text = describe(&detail, outcome, reason.as_deref(), cascaded_from.as_ref());
        TargetEffect {
            detail,
            outcome,
            reason,
            cascaded_from,
            text,
        }
    }

    /// The attribute changes, for a `set_attributes` target.
    pub fn attributes(&self) -> Option<&[AttrChange]> {
        match &self.detail {
            Detail::SetAttributes { attributes } => Some(attributes),
            _ => None,
        }
    }
}

fn day(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// One line for a target: what its effect does, with the parent a cascade took it with.
pub fn describe(
    detail: &Detail,
    outcome: Standing,
    reason: Option<&str>,
    cascade: Option<&CascadedFrom>,
) -> String {
    let with = cascade
        .map(|c| {
            let rel = if c.parent { "parent" } else { "ancestor" };
            format!(
                " with its {rel} {} {} (cascade)",
                c.label.to_lowercase(),
                c.id
            )
        })
        .unwrap_or_default();
    match outcome {
        Standing::Skipped | Standing::Fails | Standing::Failed => {
            let head = match outcome {
                Standing::Skipped => "skipped",
                Standing::Fails => "fails",
                _ => "failed",
            };
            let reason = reason.unwrap_or("no reason given");
            let pulled = cascade
                .map(|_| format!("; in the list{with}"))
                .unwrap_or_default();
            return format!("{head}: {reason}{pulled}");
        }
        Standing::Applies | Standing::Done => {}
    }
    match detail {
        Detail::SetAttributes { attributes } if attributes.is_empty() => {
            format!("no attribute changes{with}")
        }
        Detail::SetAttributes { attributes } => {
            format!("{}{with}", AttrChange::describe(attributes))
        }
        Detail::SoftDelete { purge_after } => {
            let when = purge_after
                .map(|p| format!("; purged after {} unless restored", day(p)))
                .unwrap_or_default();
            format!("soft-deleted{with}{when}")
        }
        Detail::Restore {
            to_state,
            deleted_by,
            attributes,
        } => {
            let state = to_state.unwrap_or(EntityState::Active);
            let by = deleted_by
                .as_ref()
                .map(|d| format!("; deleted by {d}"))
                .unwrap_or_default();
            let attrs = if attributes.is_empty() {
                String::new()
            } else {
                format!("; {}", AttrChange::describe(attributes))
            };
            format!("restored to {state}{with}{by}{attrs}")
        }
        Detail::Purge { purge_after } => {
            let ended = purge_after
                .map(|p| format!("; retention ended {}", day(p)))
                .unwrap_or_default();
            format!("purged permanently{with}{ended}")
        }
        Detail::Webhook { endpoint_host } => {
            format!("sent to the external executor at {endpoint_host}{with}")
        }
    }
}

/// For a target of `kind` at `scope_path` in a change of `op`: the target of the
/// operation's own kind its cascade took it with (`None` unless `op` cascades and the
/// target is of a kind below the operation's).
pub fn cascaded_from(
    schema: &Schema,
    op: &Operation,
    kind: &str,
    scope_path: &str,
) -> Option<CascadedFrom> {
    if !op.cascade || kind == op.target {
        return None;
    }
    // ancestry: the kind first, then its parent, … ; the scope path is root first.
    let up = schema
        .ancestry(kind)
        .iter()
        .position(|k| k.name == op.target)?;
    let id = scope_path.rsplit('/').nth(up - 1)?;
    if id.is_empty() {
        return None;
    }
    Some(CascadedFrom {
        kind: op.target.clone(),
        id: id.to_string(),
        label: schema
            .kind(&op.target)
            .map(|k| k.label.clone())
            .unwrap_or_else(|| op.target.clone()),
        parent: up == 1,
    })
}

/// The host of a webhook endpoint (`https://hooks.example.net:8443/x` → `hooks.example.net:8443`).
pub fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, h)| h)
        .to_string()
}

/// What an [`Outcome`] of `rule` means for a target found as `e`: `purge_after` is when a
/// soft delete running now would let it be purged.
pub fn effect_of(
    rule: &Rule<'_>,
    e: Found<'_>,
    outcome: Outcome,
    purge_after: NaiveDateTime,
    cascade: Option<CascadedFrom>,
) -> TargetEffect {
    let (new_attrs, new_state) = match outcome {
        Outcome::Skip(why) => {
            return TargetEffect::new(
                Detail::bare(rule.effect, ""),
                Standing::Skipped,
                Some(why),
                cascade,
            )
        }
        Outcome::Fail(why) => {
            return TargetEffect::new(
                Detail::bare(rule.effect, ""),
                Standing::Fails,
                Some(why),
                cascade,
            )
        }
        Outcome::Apply(state, attrs) => (attrs, state),
    };
    let detail = match rule.effect {
        Effect::SetAttributes => {
            let keys: Vec<String> = if rule.rollback {
                rule.rollback_keys.to_vec()
            } else {
                rule.params.keys().cloned().collect()
            };
            Detail::SetAttributes {
                attributes: attribute_changes(&attrs_of(e.attrs), &attrs_of(&new_attrs), &keys),
            }
        }
        Effect::SoftDelete => Detail::SoftDelete {
            purge_after: Some(purge_after),
        },
        Effect::Restore => Detail::Restore {
            to_state: Some(new_state),
            deleted_by: e.deleted_by.map(number),
            attributes: changed_attributes(e.attrs, &new_attrs),
        },
        Effect::Purge => Detail::Purge {
            purge_after: e.purge_after,
        },
        Effect::Webhook => Detail::bare(Effect::Webhook, ""),
    };
    TargetEffect::new(detail, Standing::Applies, None, cascade)
}

/// The attributes that differ between two attribute texts, key by key.
pub fn changed_attributes(before: &str, after: &str) -> Vec<AttrChange> {
    if before == after {
        return vec![];
    }
    let (b, a) = (attrs_of(before), attrs_of(after));
    let keys: Vec<String> = b
        .keys()
        .chain(a.keys())
        .filter(|k| b.get(*k) != a.get(*k))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    attribute_changes(&b, &a, &keys)
}

/// One version row a change wrote for a target: what its execution did.
#[derive(Debug, Clone, Copy)]
pub struct Written<'a> {
    pub after_state: EntityState,
    pub before_attrs: &'a str,
    pub after_attrs: &'a str,
    pub at: NaiveDateTime,
}

/// What a change's execution did to a target, from the version row it wrote; `e` is the
/// entity now (a soft delete still in force has its own `purge_after`), `retention_days`
/// the operation's, and `keys` a `set_attributes` change's keys.
pub fn effect_done(
    effect: Effect,
    w: Written<'_>,
    e: Found<'_>,
    deleted_by_this: bool,
    retention_days: u32,
    keys: &[String],
    cascade: Option<CascadedFrom>,
) -> TargetEffect {
    let detail = match effect {
        Effect::SetAttributes => Detail::SetAttributes {
            attributes: attribute_changes(
                &attrs_of(w.before_attrs),
                &attrs_of(w.after_attrs),
                keys,
            ),
        },
        Effect::SoftDelete => Detail::SoftDelete {
            purge_after: Some(match (deleted_by_this, e.purge_after) {
                (true, Some(p)) => p,
                _ => w.at + chrono::Duration::days(i64::from(retention_days)),
            }),
        },
        Effect::Restore => Detail::Restore {
            to_state: Some(w.after_state),
            deleted_by: None,
            attributes: changed_attributes(w.before_attrs, w.after_attrs),
        },
        Effect::Purge => Detail::Purge { purge_after: None },
        Effect::Webhook => Detail::bare(Effect::Webhook, ""),
    };
    TargetEffect::new(detail, Standing::Done, None, cascade)
}

#[cfg(test)]
mod tests;
