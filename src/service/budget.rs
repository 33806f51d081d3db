//! Budgets shared across changes (issue #12): a change's budget and its state for every
//! screen, the execute gate's check, and the runner's take of each batch. The rules are
//! in `domain::budget`; the counting in `db::budgets`.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;

use crate::db::models::{Change, ExecutionItem};
use crate::db::{budgets as repo, exec as exec_repo, now, DbConn, WriteTx};
use crate::domain::budget::{fitting, root_of, Budget, BudgetState, Candidate, Need};
use crate::domain::change::number;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};

/// A change's budget as screens show it: the group's state now, what the change still
/// needs from it, and whether that fits.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetView {
    #[serde(flatten)]
    pub state: BudgetState,
    /// Targets of the change not yet taken, and their roots not already counted today.
    pub needs: Need,
    pub fits: bool,
    /// Why it does not fit, with the numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shortfall: Option<String>,
    /// One sentence for screens: the state, what the change needs, whether it fits.
    pub summary: String,
}

impl BudgetView {
    fn new(state: BudgetState, needs: Need) -> BudgetView {
        let shortfall = state.shortfall(&needs);
        let mut parts = Vec::new();
        if state.roots.is_some() {
            parts.push(format!(
                "{} new root{}",
                needs.roots,
                if needs.roots == 1 { "" } else { "s" }
            ));
        }
        if state.targets.is_some() || state.roots.is_none() {
            parts.push(format!(
                "{} target{}",
                needs.targets,
                if needs.targets == 1 { "" } else { "s" }
            ));
        }
        let summary = match (&shortfall, needs.targets) {
            (_, 0) => format!("{}. This change needs nothing more from it.", state.text),
            (None, _) => format!(
                "{}. This change needs {}: it fits.",
                state.text,
                parts.join(" and ")
            ),
            (Some(short), _) => format!(
                "{}. This change {short}: the execute gate refuses it until the budget has room ({}).",
                state.text,
                state.retry_hint()
            ),
        };
        BudgetView {
            fits: shortfall.is_none(),
            shortfall,
            summary,
            state,
            needs,
        }
    }
}

/// The budget `c` draws from: its operation's, unless it is a rollback.
pub fn budget_of<'s>(schema: &'s Schema, c: &Change) -> Option<&'s Budget> {
    schema
        .operation(&c.operation)?
        .budget_for(c.rollback_of.is_some())
}

/// The group's state now, without a change (the queue shows one per group).
pub fn state(conn: &mut DbConn, b: &Budget) -> AppResult<BudgetState> {
    Ok(BudgetState::of(b, &repo::usage(conn, &b.group, now())?))
}

/// For a change not stored yet (the new-change preview): the group's state and whether a
/// change of this size fits now (at most its roots: those already counted today cost
/// nothing, which the execute gate takes into account). `(fits, sentence)`.
pub fn preview_line(
    state: &BudgetState,
    summary: &crate::domain::resolution::Summary,
) -> (bool, String) {
    let need = Need {
        targets: summary.targets,
        roots: summary.roots,
    };
    match state.shortfall(&need) {
        None => (true, format!("{}. This change fits in what is left.", state.text)),
        Some(short) => (
            false,
            format!(
                "{}. This change {short} (roots already counted today cost nothing again): the execute gate would refuse it now ({}).",
                state.text,
                state.retry_hint()
            ),
        ),
    }
}

/// `c`'s budget and what it still needs; `None` when it draws from none.
pub fn for_change(conn: &mut DbConn, schema: &Schema, c: &Change) -> AppResult<Option<BudgetView>> {
    let Some(b) = budget_of(schema, c) else {
        return Ok(None);
    };
    let t = now();
    let state = BudgetState::of(b, &repo::usage(conn, &b.group, t)?);
    let needs = need_of(conn, b, c, t)?;
    Ok(Some(BudgetView::new(state, needs)))
}

/// What `c` still needs from `b`: its targets not taken yet, and their roots not counted
/// in the window. Reads the target list only when it must (a roots budget that already
/// counts some roots today); otherwise the change's own counts say it.
fn need_of(conn: &mut DbConn, b: &Budget, c: &Change, t: chrono::NaiveDateTime) -> AppResult<Need> {
    let taken = repo::taken_for(conn, &b.group, c.id)?;
    let used_roots = if b.roots_per_day.is_some() {
        repo::used_roots(conn, &b.group, t)?
    } else {
        HashSet::new()
    };
    let targets = (c.target_count.max(0) as u64).saturating_sub(taken.len() as u64);
    if b.roots_per_day.is_none() || (taken.is_empty() && used_roots.is_empty()) {
        return Ok(Need {
            targets,
            roots: c.root_count.max(0) as u64,
        });
    }
    let mut needs = Need::default();
    let mut seen: HashSet<String> = HashSet::new();
    for (id, scope) in repo::targets_of(conn, c.id)? {
        if taken.contains(&id) {
            continue;
        }
        needs.targets += 1;
        let root = root_of(&id, &scope);
        if !used_roots.contains(root) && !seen.contains(root) {
            needs.roots += 1;
            seen.insert(root.to_string());
        }
    }
    Ok(needs)
}

/// The execute gate's check: the change must fit in what its budget has left.
pub fn check_gate(conn: &mut WriteTx<'_>, schema: &Schema, c: &Change) -> AppResult<()> {
    let Some(v) = for_change(conn, schema, c)? else {
        return Ok(());
    };
    let Some(short) = &v.shortfall else {
        return Ok(());
    };
    Err(AppError::new(
        ErrorCode::BudgetExceeded,
        format!(
            "{} {short} in the budget `{}` ({}); {}",
            number(c.id),
            v.state.group,
            used_words(&v.state),
            v.state.retry_hint()
        ),
    )
    .with_details(json!({ "budget": v })))
}

/// Resuming needs room for the next target at least: a halted execution whose budget is
/// still spent would only halt again.
pub fn check_resume(conn: &mut WriteTx<'_>, schema: &Schema, c: &Change) -> AppResult<()> {
    let Some(v) = for_change(conn, schema, c)? else {
        return Ok(());
    };
    let spent = v.state.targets.is_some_and(|m| m.left == 0)
        || (v.needs.roots > 0 && v.state.roots.is_some_and(|m| m.left == 0));
    if v.needs.targets == 0 || !spent {
        return Ok(());
    }
    Err(AppError::new(
        ErrorCode::BudgetExceeded,
        format!(
            "{} cannot resume yet: the budget `{}` is spent ({}); {}",
            number(c.id),
            v.state.group,
            used_words(&v.state),
            v.state.retry_hint()
        ),
    )
    .with_details(json!({ "budget": v })))
}

/// "47 of 50 roots used in the last 24 hours".
fn used_words(s: &BudgetState) -> String {
    let parts: Vec<String> = [
        s.roots.map(|m| format!("{} of {} roots", m.used, m.limit)),
        s.targets
            .map(|m| format!("{} of {} targets", m.used, m.limit)),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!(
        "{} used in the last {} hours",
        parts.join(" and "),
        s.window_hours
    )
}

/// What the runner may run of a batch.
#[derive(Debug)]
pub struct Taken {
    /// The first `fit` items of the batch were taken from the budget (all of them when
    /// the change draws from none).
    pub fit: usize,
    /// When nothing fits: why the execution halts, with the numbers.
    pub halt: Option<String>,
}

/// Take the items of `batch` that fit from `c`'s budget, in the caller's transaction
/// (the runner's fenced batch transaction, so the take and the work commit together),
/// under the group's lock.
pub fn take_batch(
    conn: &mut WriteTx<'_>,
    schema: &Schema,
    c: &Change,
    batch: &[ExecutionItem],
) -> AppResult<Taken> {
    let Some(b) = budget_of(schema, c) else {
        return Ok(Taken {
            fit: batch.len(),
            halt: None,
        });
    };
    repo::lock_group(conn, &b.group)?;
    let t = now();
    let state = BudgetState::of(b, &repo::usage(conn, &b.group, t)?);
    let used_roots = if b.roots_per_day.is_some() {
        repo::used_roots(conn, &b.group, t)?
    } else {
        HashSet::new()
    };
    let ids: Vec<&str> = batch.iter().map(|i| i.entity_id.as_str()).collect();
    let taken = repo::taken_of(conn, &b.group, c.id, &ids)?;
    let positions: Vec<i64> = batch.iter().map(|i| i.position).collect();
    let scopes: std::collections::HashMap<i64, String> =
        exec_repo::targets_at(conn, c.id, &positions)?
            .into_iter()
            .map(|(pos, _, _, scope, _)| (pos, scope))
            .collect();
    let roots: Vec<&str> = batch
        .iter()
        .map(|i| root_of(&i.entity_id, scopes.get(&i.position).map_or("", |s| s)))
        .collect();
    let candidates: Vec<Candidate<'_>> = batch
        .iter()
        .zip(&roots)
        .map(|(i, root)| Candidate {
            root,
            taken: taken.contains(&i.entity_id),
        })
        .collect();
    let (fit, _) = fitting(&state, &used_roots, &candidates);
    let new: Vec<(&str, &str)> = batch[..fit]
        .iter()
        .zip(&roots)
        .filter(|(i, _)| !taken.contains(&i.entity_id))
        .map(|(i, root)| (i.entity_id.as_str(), *root))
        .collect();
    repo::take(conn, &b.group, c.id, &new, t)?;
    let halt = (fit == 0).then(|| {
        format!(
            "the budget `{}` is spent: {}; the next target needs more than is left. Nothing more runs until someone resumes (after {}) or aborts",
            b.group,
            used_words(&state),
            state
                .frees_at
                .map(|t| format!("{} UTC, when the oldest use stops counting", t.format("%Y-%m-%d %H:%M")))
                .unwrap_or_else(|| "the budget frees".into())
        )
    });
    Ok(Taken { fit, halt })
}
