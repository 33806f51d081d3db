//! What a change does to each target of a page of its list (issue #12: every effect
//! previewed per target), decided by the rules the executor applies
//! (`domain::effect::decide`), with what its execution already did read back from the
//! items and version rows it wrote. A page costs a fixed number of batched queries (the
//! entities, the execution's items, the version rows that matter), never one per target.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use serde_json::Value;

use crate::db::models::{Change, Entity, EntityVersion, ExecutionItem};
use crate::db::{changes as repo, exec, DbConn};
use crate::domain::effect::{
    self, cascaded_from, decide, effect_done, effect_of, endpoint_host, restore_to_point, Detail,
    Found, Rule, Standing, TargetEffect, Written,
};
use crate::domain::execution::{Attrs, ChangeStep, ItemStatus, RestoreSpec};
use crate::domain::schema::{Effect, Operation};
use crate::domain::{EntityState, Schema};
use crate::error::AppResult;

use super::shared::effect_for;

/// One target of a page: its place in the stored list (`None` on the new-change form),
/// kind, ID and scope path.
#[derive(Debug, Clone, Copy)]
pub struct TargetRef<'a> {
    pub position: Option<i64>,
    pub kind: &'a str,
    pub id: &'a str,
    pub scope_path: &'a str,
}

impl<'a> From<&'a crate::db::models::ChangeTarget> for TargetRef<'a> {
    fn from(t: &'a crate::db::models::ChangeTarget) -> Self {
        TargetRef {
            position: Some(t.position),
            kind: &t.kind,
            id: &t.entity_id,
            scope_path: &t.scope_path,
        }
    }
}

impl<'a> From<&'a crate::domain::resolution::ResolvedTarget> for TargetRef<'a> {
    fn from(t: &'a crate::domain::resolution::ResolvedTarget) -> Self {
        TargetRef {
            position: None,
            kind: &t.kind,
            id: &t.id,
            scope_path: &t.scope_path,
        }
    }
}

/// Effects keyed by entity ID.
pub type Effects = HashMap<String, TargetEffect>;

fn attrs(s: &str) -> Attrs {
    serde_json::from_str(s).unwrap_or_default()
}

/// What stored change `c` does (or did) to each of `targets`.
pub fn target_effects(
    conn: &mut DbConn,
    schema: &Schema,
    c: &Change,
    targets: &[TargetRef<'_>],
) -> AppResult<Effects> {
    let Some(op) = schema.operation(&c.operation) else {
        return Ok(HashMap::new());
    };
    let Some(effect) = effect_for(op, c) else {
        return Ok(HashMap::new());
    };
    let execution = exec::for_change(conn, c.id)?;
    let items: HashMap<String, ExecutionItem> = match &execution {
        Some(x) => {
            let positions: Vec<i64> = targets.iter().filter_map(|t| t.position).collect();
            exec::items_at(conn, x.id, &positions)?
                .into_iter()
                .map(|i| (i.entity_id.clone(), i))
                .collect()
        }
        None => HashMap::new(),
    };
    // A rollback of set_attributes puts back the keys the original set.
    let rollback_keys: Vec<String> = match c.rollback_of {
        Some(orig) if effect == Effect::SetAttributes => repo::get(conn, orig)?
            .map(|o| attrs(&o.params).into_keys().collect())
            .unwrap_or_default(),
        _ => vec![],
    };
    let params = attrs(&c.params);
    let ctx = Ctx {
        schema,
        op,
        rule: Rule {
            effect,
            rollback: c.rollback_of.is_some(),
            params: &params,
            rollback_keys: &rollback_keys,
        },
        change: Some(c),
        starts: c.not_before,
    };
    compute(conn, &ctx, targets, &items)
}

/// What a new change of `op` with `params` would do to `targets` (the form's preview).
pub fn planned_effects(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    params: &Value,
    targets: &[TargetRef<'_>],
) -> AppResult<Effects> {
    let params: Attrs = serde_json::from_value(params.clone()).unwrap_or_default();
    let ctx = Ctx {
        schema,
        op,
        rule: Rule {
            effect: op.effect,
            rollback: false,
            params: &params,
            rollback_keys: &[],
        },
        change: None,
        starts: None,
    };
    compute(conn, &ctx, targets, &HashMap::new())
}

struct Ctx<'a> {
    schema: &'a Schema,
    op: &'a Operation,
    rule: Rule<'a>,
    change: Option<&'a Change>,
    /// The change's `not_before`: a soft delete cannot run (and start its retention) sooner.
    starts: Option<NaiveDateTime>,
}

fn found(e: &Entity) -> Found<'_> {
    Found {
        state: e.state,
        attrs: &e.attrs,
        deleted_by: e.deleted_by,
        purge_after: e.purge_after,
    }
}

fn step(v: &EntityVersion) -> ChangeStep<'_> {
    ChangeStep {
        before_attrs: &v.before_attrs,
        after_attrs: &v.after_attrs,
    }
}

/// A recorded skip or failure, as the execution wrote it.
fn recorded(
    ctx: &Ctx<'_>,
    item: &ExecutionItem,
    host: &str,
    cascade: Option<effect::CascadedFrom>,
) -> Option<TargetEffect> {
    let outcome = match item.status {
        ItemStatus::Skipped => Standing::Skipped,
        ItemStatus::Failed => Standing::Failed,
        // Held back by the drift check: it would not run as signed (the reason says why).
        ItemStatus::Drifted => Standing::Fails,
        ItemStatus::Pending | ItemStatus::Done => return None,
    };
    Some(TargetEffect::new(
        Detail::bare(ctx.rule.effect, host),
        outcome,
        item.error.clone(),
        cascade,
    ))
}

/// A webhook: the external executor calls the endpoint for every target, whatever its
/// state (a rollback: the endpoint of the operation its `undo` names).
fn webhook_effects(
    ctx: &Ctx<'_>,
    targets: &[TargetRef<'_>],
    items: &HashMap<String, ExecutionItem>,
) -> Effects {
    let cascade = |t: &TargetRef<'_>| cascaded_from(ctx.schema, ctx.op, t.kind, t.scope_path);
    let mut out: Effects = HashMap::with_capacity(targets.len());
    let host = ctx
        .schema
        .webhook_called(ctx.op, ctx.rule.rollback)
        .and_then(|o| o.webhook.as_ref())
        .map(|w| endpoint_host(&w.endpoint))
        .unwrap_or_default();
    for t in targets {
        let c = cascade(t);
        let item = items.get(t.id);
        let e = match item.and_then(|i| recorded(ctx, i, &host, c.clone())) {
            Some(r) => r,
            None => {
                let done = item.is_some_and(|i| i.status == ItemStatus::Done);
                let outcome = if done {
                    Standing::Done
                } else {
                    Standing::Applies
                };
                TargetEffect::new(Detail::bare(Effect::Webhook, &host), outcome, None, c)
            }
        };
        out.insert(t.id.to_string(), e);
    }
    out
}

/// A bulk restore's points (`Some(None)`: the change it goes back before never ran).
type Points = Option<Option<HashMap<String, (EntityState, String)>>>;

/// What the rule reads beyond the entities: the version row that matters to it, and a
/// bulk restore's state per entity at its point.
fn rule_inputs(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    ents: &HashMap<String, crate::db::models::Entity>,
    ids: &[&str],
) -> AppResult<(HashMap<String, EntityVersion>, Points)> {
    // The version row that matters to the rule, as the executor reads it.
    let mut before: HashMap<String, EntityVersion> = HashMap::new();
    match (ctx.rule.effect, ctx.change.and_then(|c| c.rollback_of)) {
        (Effect::Restore, _) => {
            let deleted: Vec<(&str, i64)> = ents
                .values()
                .filter(|e| e.state == EntityState::Deleted)
                .filter_map(|e| Some((e.id.as_str(), e.deleted_by?)))
                .collect();
            if !deleted.is_empty() {
                before = exec::versions_by_pairs(conn, &deleted)?;
            }
        }
        (Effect::SetAttributes, Some(orig)) => {
            before = exec::versions_by_change(conn, orig, ids)?;
        }
        _ => {}
    }
    // A bulk restore goes back to the state at its point, per entity.
    let spec = ctx
        .change
        .and_then(|c| RestoreSpec::of_selector(&c.selector));
    let points = match spec {
        Some(spec) if ctx.rule.effect == Effect::Restore => {
            let point = exec::restore_point(conn, &spec)?;
            Some(match point {
                Some(p) => Some(exec::state_at(conn, ents, &p)?),
                None => None,
            })
        }
        _ => None,
    };
    Ok((before, points))
}

fn compute(
    conn: &mut DbConn,
    ctx: &Ctx<'_>,
    targets: &[TargetRef<'_>],
    items: &HashMap<String, ExecutionItem>,
) -> AppResult<Effects> {
    let now = crate::db::now();
    let cascade = |t: &TargetRef<'_>| cascaded_from(ctx.schema, ctx.op, t.kind, t.scope_path);
    let mut out: Effects = HashMap::with_capacity(targets.len());
    if ctx.rule.effect == Effect::Webhook {
        return Ok(webhook_effects(ctx, targets, items));
    }
    let ids: Vec<&str> = targets.iter().map(|t| t.id).collect();
    let ents = exec::entities_by_id(conn, &ids)?;
    // What this change's execution wrote, for the items it did.
    let done_ids: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| items.get(*id).is_some_and(|i| i.status == ItemStatus::Done))
        .collect();
    let written = match (ctx.change, done_ids.is_empty()) {
        (Some(c), false) => exec::versions_by_change(conn, c.id, &done_ids)?,
        _ => HashMap::new(),
    };
    let (before, points) = rule_inputs(conn, ctx, &ents, &ids)?;
    let runs_at = ctx.starts.map_or(now, |s| s.max(now));
    let purge_after = runs_at + chrono::Duration::days(i64::from(ctx.op.retention_days));
    let keys: Vec<String> = if ctx.rule.rollback {
        ctx.rule.rollback_keys.to_vec()
    } else {
        ctx.rule.params.keys().cloned().collect()
    };
    for t in targets {
        let c = cascade(t);
        let Some(e) = ents.get(t.id) else {
            let why = "the entity is no longer in the inventory".to_string();
            let detail = Detail::bare(ctx.rule.effect, "");
            out.insert(
                t.id.to_string(),
                TargetEffect::new(detail, Standing::Fails, Some(why), c),
            );
            continue;
        };
        let item = items.get(t.id);
        if let Some(r) = item.and_then(|i| recorded(ctx, i, "", c.clone())) {
            out.insert(t.id.to_string(), r);
            continue;
        }
        if let Some(v) = written.get(t.id) {
            let w = Written {
                after_state: v.after_state,
                before_attrs: &v.before_attrs,
                after_attrs: &v.after_attrs,
                at: v.at,
            };
            let deleted_by_this = ctx.change.is_some_and(|ch| e.deleted_by == Some(ch.id));
            let done = effect_done(
                ctx.rule.effect,
                w,
                found(e),
                deleted_by_this,
                ctx.op.retention_days,
                &keys,
                c,
            );
            out.insert(t.id.to_string(), done);
            continue;
        }
        let outcome = match &points {
            Some(None) => {
                effect::Outcome::Fail("the change this restore goes back before never ran".into())
            }
            Some(Some(at)) => {
                restore_to_point(found(e), at.get(&e.id).map(|(s, a)| (*s, a.as_str())))
            }
            None => decide(&ctx.rule, found(e), before.get(&e.id).map(step), now),
        };
        out.insert(
            t.id.to_string(),
            effect_of(&ctx.rule, found(e), outcome, purge_after, c),
        );
    }
    Ok(out)
}
