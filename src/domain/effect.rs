//! What a change does to each of its targets, decided once (issue #12, "every effect
//! previewed per target"). The built-in executor applies [`decide`]'s [`Outcome`] (and
//! [`restore_to_point`]'s for a bulk restore); the preview, the change page, the CSV and
//! the API describe the same outcome as a [`TargetEffect`], so what a screen says a target
//! gets is what the executor does to it. A rollback is described as the inverse it runs.

use chrono::NaiveDateTime;
use serde::Serialize;

use super::change::number;
use super::entity::EntityState;
use super::execution::{
    attribute_changes, attributes_after, undo_changes, AttrChange, Attrs, ChangeStep,
};
use super::schema::{Effect, Operation, Schema};

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

fn attrs_of(s: &str) -> Attrs {
    serde_json::from_str(s).unwrap_or_default()
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
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_toml(include_str!("../../config/schema.example.toml")).expect("schema")
    }

    fn t(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    fn found(state: EntityState, attrs: &str) -> Found<'_> {
        Found {
            state,
            attrs,
            deleted_by: None,
            purge_after: None,
        }
    }

    fn rule(effect: Effect, params: &Attrs) -> Rule<'_> {
        Rule {
            effect,
            rollback: false,
            params,
            rollback_keys: &[],
        }
    }

    #[test]
    fn a_soft_delete_says_when_it_may_be_purged() {
        let p = Attrs::new();
        let r = rule(Effect::SoftDelete, &p);
        let e = found(EntityState::Active, "{}");
        let now = t("2026-12-02 17:00");
        let o = decide(&r, e, None, now);
        assert_eq!(o, Outcome::Apply(EntityState::Deleted, "{}".into()));
        let fx = effect_of(&r, e, o, t("2027-01-01 17:00"), None);
        assert_eq!(fx.outcome, Standing::Applies);
        assert_eq!(
            fx.text,
            "soft-deleted; purged after 2027-01-01 unless restored"
        );
        let json = serde_json::to_value(&fx).unwrap();
        assert_eq!(json["type"], "soft_delete");
        assert_eq!(json["outcome"], "applies");
        assert_eq!(json["purge_after"], "2027-01-01T17:00:00");
        // Already deleted: skipped, and says by which change.
        let gone = Found {
            deleted_by: Some(7),
            ..found(EntityState::Deleted, "{}")
        };
        let o = decide(&r, gone, None, now);
        let fx = effect_of(&r, gone, o, now, None);
        assert_eq!(fx.outcome, Standing::Skipped);
        assert_eq!(fx.text, "skipped: already deleted by CHG-7");
        assert!(serde_json::to_value(&fx)
            .unwrap()
            .get("purge_after")
            .is_none());
    }

    #[test]
    fn set_attributes_shows_now_and_after() {
        let mut p = Attrs::new();
        p.insert("tier".into(), serde_json::json!("platinum"));
        let r = rule(Effect::SetAttributes, &p);
        let e = found(EntityState::Active, r#"{"tier":"gold","url":"x"}"#);
        let o = decide(&r, e, None, t("2026-12-02 17:00"));
        let fx = effect_of(&r, e, o, t("2027-01-01 00:00"), None);
        assert_eq!(fx.text, "tier: gold → platinum");
        assert_eq!(fx.attributes().unwrap().len(), 1);
        // A deleted entity cannot be changed: the executor fails it, the preview says so.
        let d = found(EntityState::Deleted, "{}");
        let o = decide(&r, d, None, t("2026-12-02 17:00"));
        assert_eq!(
            effect_of(&r, d, o, t("2027-01-01 00:00"), None).text,
            "fails: the entity is deleted"
        );
    }

    #[test]
    fn a_restore_names_the_state_and_the_deleting_change() {
        let p = Attrs::new();
        let r = rule(Effect::Restore, &p);
        let e = Found {
            deleted_by: Some(3),
            ..found(EntityState::Deleted, r#"{"app":"x"}"#)
        };
        let o = decide(&r, e, None, t("2026-12-02 17:00"));
        let fx = effect_of(&r, e, o, t("2027-01-01 00:00"), None);
        assert_eq!(fx.text, "restored to active; deleted by CHG-3");
        let json = serde_json::to_value(&fx).unwrap();
        assert_eq!(json["to_state"], "active");
        assert_eq!(json["deleted_by"], "CHG-3");
        // A purge deleted its attributes: the restore puts them back, and says which.
        let step = ChangeStep {
            before_attrs: r#"{"app":"x"}"#,
            after_attrs: "{}",
        };
        let e = Found {
            deleted_by: Some(3),
            ..found(EntityState::Deleted, "{}")
        };
        let o = decide(&r, e, Some(step), t("2026-12-02 17:00"));
        let fx = effect_of(&r, e, o, t("2027-01-01 00:00"), None);
        assert_eq!(
            fx.text,
            "restored to active; deleted by CHG-3; app: (none) → x"
        );
        let purged = found(EntityState::Purged, "{}");
        let o = decide(&r, purged, None, t("2026-12-02 17:00"));
        assert_eq!(
            effect_of(&r, purged, o, t("2027-01-01 00:00"), None).text,
            "fails: purged: it can no longer be restored"
        );
    }

    #[test]
    fn a_purge_is_permanent_and_only_after_retention() {
        let p = Attrs::new();
        let r = rule(Effect::Purge, &p);
        let e = Found {
            purge_after: Some(t("2026-11-01 00:00")),
            ..found(EntityState::Deleted, "{}")
        };
        let now = t("2026-12-02 17:00");
        let o = decide(&r, e, None, now);
        assert_eq!(
            effect_of(&r, e, o, now, None).text,
            "purged permanently; retention ended 2026-11-01"
        );
        let early = Found {
            purge_after: Some(t("2027-01-01 00:00")),
            ..e
        };
        let o = decide(&r, early, None, now);
        assert!(matches!(o, Outcome::Fail(_)));
        assert!(effect_of(&r, early, o, now, None)
            .text
            .starts_with("fails: still within its retention period"));
    }

    #[test]
    fn a_cascade_names_the_parent_that_pulled_the_child_in() {
        let s = schema();
        let op = s.operation("decommission_site").unwrap();
        let c = cascaded_from(&s, op, "app_install", "org-00000001/site-a").unwrap();
        assert_eq!(
            (c.kind.as_str(), c.id.as_str(), c.parent),
            ("site", "site-a", true)
        );
        assert!(cascaded_from(&s, op, "site", "org-00000001").is_none());
        // Not a cascading operation: nothing pulled in.
        let plain = s.operation("uninstall_app").unwrap();
        assert!(cascaded_from(&s, plain, "app_install", "org-1/site-a").is_none());
        let d = Detail::SoftDelete {
            purge_after: Some(t("2027-01-01 00:00")),
        };
        assert_eq!(
            describe(&d, Standing::Applies, None, Some(&c)),
            "soft-deleted with its parent cloud site site-a (cascade); purged after 2027-01-01 unless restored"
        );
        let r = Detail::Restore {
            to_state: Some(EntityState::Active),
            deleted_by: None,
            attributes: vec![],
        };
        assert_eq!(
            describe(&r, Standing::Applies, None, Some(&c)),
            "restored to active with its parent cloud site site-a (cascade)"
        );
        assert_eq!(
            describe(&r, Standing::Skipped, Some("already active"), Some(&c)),
            "skipped: already active; in the list with its parent cloud site site-a (cascade)"
        );
    }

    #[test]
    fn webhook_hosts() {
        assert_eq!(
            endpoint_host("https://hooks.example.net/x?y"),
            "hooks.example.net"
        );
        assert_eq!(
            endpoint_host("http://u:p@127.0.0.1:8080/h"),
            "127.0.0.1:8080"
        );
        let d = Detail::bare(Effect::Webhook, "hooks.example.net");
        assert_eq!(
            describe(&d, Standing::Applies, None, None),
            "sent to the external executor at hooks.example.net"
        );
    }

    #[test]
    fn what_an_execution_did_is_read_from_its_version_row() {
        let w = Written {
            after_state: EntityState::Deleted,
            before_attrs: "{}",
            after_attrs: "{}",
            at: t("2026-12-01 10:00"),
        };
        let e = Found {
            deleted_by: Some(4),
            purge_after: Some(t("2026-12-31 10:00")),
            ..found(EntityState::Deleted, "{}")
        };
        let fx = effect_done(Effect::SoftDelete, w, e, true, 30, &[], None);
        assert_eq!(fx.outcome, Standing::Done);
        assert_eq!(
            fx.text,
            "soft-deleted; purged after 2026-12-31 unless restored"
        );
        let w = Written {
            after_state: EntityState::Active,
            before_attrs: r#"{"version":"1"}"#,
            after_attrs: r#"{"version":"2"}"#,
            at: t("2026-12-01 10:00"),
        };
        let keys = vec!["version".to_string()];
        let fx = effect_done(Effect::SetAttributes, w, e, false, 30, &keys, None);
        assert_eq!(fx.text, "version: 1 → 2");
    }

    #[test]
    fn a_bulk_restore_goes_back_to_its_point() {
        let e = found(EntityState::Deleted, r#"{"a":"2"}"#);
        assert_eq!(
            restore_to_point(e, Some((EntityState::Active, r#"{"a":"1"}"#))),
            Outcome::Apply(EntityState::Active, r#"{"a":"1"}"#.into())
        );
        assert!(matches!(
            restore_to_point(e, Some((EntityState::Deleted, "{}"))),
            Outcome::Skip(_)
        ));
        let active = found(EntityState::Active, "{}");
        assert_eq!(
            restore_to_point(active, None),
            Outcome::Skip("already as it was at that point".into())
        );
    }
}
