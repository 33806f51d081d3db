//! Response views: what the API (and later the pages) show, separate from the rows.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::Value;

use crate::db::audit;
use crate::db::models::{AuditEvent, Change};
use crate::domain::access::ChangeAction;
use crate::domain::presentation::executes;
use crate::domain::resolution::{short_fingerprint, ResolutionError, Summary};
use crate::domain::schema::SignoffPolicy;
use crate::domain::{ChangeState, Effect, Schema, Side};

pub use crate::domain::change::number;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PersonView {
    pub email: String,
    pub name: String,
}

/// The operation of a change *as it executes*: a rollback is shown as the inverse it runs
/// (`label` "Restore app installations", `effect` "restore"), never as the deletion it
/// undoes. `name` is the catalogue operation whose policy applies.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OperationView {
    pub name: String,
    pub label: String,
    pub target: String,
    /// `None` when the operation is no longer in the schema.
    pub effect: Option<Effect>,
    pub effect_text: String,
    pub destructive: bool,
    /// For a rollback: the label of the operation it undoes.
    pub undoes: Option<String>,
}

impl OperationView {
    pub fn of(schema: &Schema, c: &Change) -> OperationView {
        let op = schema.operation(&c.operation);
        let ex = op.and_then(|o| executes(schema, o, c.rollback_of.is_some()));
        OperationView {
            name: c.operation.clone(),
            label: ex
                .as_ref()
                .map(|e| e.label.clone())
                .unwrap_or_else(|| c.operation.clone()),
            target: op.map(|o| o.target.clone()).unwrap_or_default(),
            effect: ex.as_ref().map(|e| e.effect),
            effect_text: ex
                .as_ref()
                .map(|e| e.effect_text.clone())
                .unwrap_or_else(|| "unknown: the operation is no longer in the schema".into()),
            destructive: ex.as_ref().is_some_and(|e| e.destructive),
            undoes: ex.and_then(|e| e.undoes),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignoffView {
    pub side: Side,
    pub by: PersonView,
    pub fingerprint: String,
    pub stale: bool,
    /// It counts now: current fingerprint and text, and the signer is still in the team.
    pub counts: bool,
    /// Why it does not count, in words.
    pub why_not: Option<String>,
    pub comment: String,
    pub at: NaiveDateTime,
    /// When it stops counting (its operation's `signoffs_expire_after` after `at`).
    pub expires_at: Option<NaiveDateTime>,
    /// `expires_at` has passed: it no longer counts.
    pub expired: bool,
    /// Given from the difference view: the difference against the list it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub difference: Option<crate::domain::difference::DifferenceCounts>,
}

/// What changed since the signers last saw the list.
#[derive(Debug, Clone, Serialize)]
pub struct DifferenceView {
    /// The list the stale sign-offs were given for, and the current one.
    pub previous_fingerprint: String,
    pub previous_fingerprint_short: String,
    pub fingerprint: String,
    #[serde(flatten)]
    pub counts: crate::domain::difference::DifferenceCounts,
    /// The roots (IDs) the current list touches and the signed one did not, and the other
    /// way round.
    pub roots_added_ids: Vec<String>,
    pub roots_removed_ids: Vec<String>,
    /// The first added and removed targets.
    pub added_sample: Vec<crate::domain::resolution::ResolvedTarget>,
    pub removed_sample: Vec<crate::domain::resolution::ResolvedTarget>,
    /// One sentence: "since a1b2c3d4 was signed: 3 targets added, 1 removed; 1 root added".
    pub text: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SideStatus {
    pub team: String,
    pub required: u32,
    pub current: u32,
    pub missing: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConflictView {
    pub id: i64,
    pub number: String,
    pub title: String,
    pub state: ChangeState,
    pub shared_targets: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeSummaryView {
    pub id: i64,
    pub number: String,
    pub title: String,
    pub state: ChangeState,
    pub operation: String,
    /// What executing it is called and does (a rollback: the restore it runs).
    pub operation_label: String,
    pub effect: Option<Effect>,
    pub destructive: bool,
    pub rollback_of: Option<String>,
    pub requesting_team: String,
    pub implementing_team: String,
    pub target_count: i64,
    pub root_count: i64,
    pub error_count: i64,
    pub fingerprint: Option<String>,
    /// The risk tier whose sign-off policy applies (see [`ChangeView::tier`]).
    pub tier: Option<String>,
    pub created_at: NaiveDateTime,
    pub submitted_at: Option<NaiveDateTime>,
    pub approved_at: Option<NaiveDateTime>,
}

/// The policy a change needs as resolved now, with the risk tier that set it
/// ([`Change::policy`]).
pub fn tier_of<'o>(
    op: &'o crate::domain::schema::Operation,
    c: &Change,
) -> crate::domain::schema::Policy<'o> {
    c.policy(op)
}

impl ChangeSummaryView {
    pub fn new(schema: &Schema, c: &Change) -> Self {
        let op = OperationView::of(schema, c);
        ChangeSummaryView {
            id: c.id,
            number: number(c.id),
            title: c.title.clone(),
            state: c.state,
            operation: c.operation.clone(),
            operation_label: op.label,
            effect: op.effect,
            destructive: op.destructive,
            rollback_of: c.rollback_of.map(number),
            requesting_team: c.requesting_team.clone(),
            implementing_team: c.implementing_team.clone(),
            target_count: c.target_count,
            root_count: c.root_count,
            error_count: c.error_count,
            fingerprint: c.fingerprint.clone(),
            tier: schema
                .operation(&c.operation)
                .and_then(|o| tier_of(o, c).describe()),
            created_at: c.created_at,
            submitted_at: c.submitted_at,
            approved_at: c.approved_at,
        }
    }
}

/// How many IDs of a selector list a change's JSON shows.
pub const SELECTOR_SAMPLE: usize = 20;

/// A stored selector with every list of IDs replaced by `{"count": N, "first": [...]}`
/// (the first [`SELECTOR_SAMPLE`]); everything else as it is.
pub fn selector_shape(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.iter().all(Value::is_string) => serde_json::json!({
            "count": a.len(),
            "first": a.iter().take(SELECTOR_SAMPLE).collect::<Vec<_>>(),
        }),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), selector_shape(x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeView {
    pub id: i64,
    pub number: String,
    pub title: String,
    pub rationale: String,
    pub state: ChangeState,
    pub requesting_team: String,
    pub implementing_team: String,
    pub author: PersonView,
    pub operation: OperationView,
    /// SHA-256 of the title and rationale: send it with a sign-off to bind the sign-off
    /// to the text you read.
    pub text_hash: String,
    /// What the viewer may do now (`GET /api/v1/changes/{id}`); pages render exactly this.
    pub allowed_actions: Vec<ChangeAction>,
    pub params: Value,
    /// The selector as stored (for the pages' edit form); never serialised whole, since a
    /// change may name 100,000 IDs.
    #[serde(skip)]
    pub targets: Value,
    /// The selector's shape: each list of IDs as its `count` and `first` 20
    /// ([`selector_shape`]); the lists themselves page from `GET …/selector`.
    pub selector: Value,
    pub expect: Option<Value>,
    pub schema_hash: String,
    /// False when the schema changed since this change was resolved.
    pub schema_current: bool,
    pub fingerprint: Option<String>,
    pub fingerprint_short: Option<String>,
    pub summary: Summary,
    pub errors: Vec<ResolutionError>,
    pub error_count: i64,
    pub signoffs: Vec<SignoffView>,
    /// How long a sign-off counts on this operation ("72 hours"; `None`: until execution).
    pub signoffs_expire_after: Option<String>,
    #[schema(value_type = Object)]
    pub policy: SignoffPolicy,
    /// The risk tier whose policy applies ("tier 2 (above 1000 targets): 2 requester and 2
    /// implementer sign-offs"); `None`: the operation's own policy.
    pub tier: Option<String>,
    /// Why the implementers need more sign-offs than the operation's policy: no rollback
    /// can undo it ("1 more implementer sign-off because no rollback can undo it").
    pub irreversible: Option<String>,
    pub requester_side: SideStatus,
    pub implementer_side: SideStatus,
    /// The third side the applying tier names (`also = { team, signoffs }`): its team,
    /// the sign-offs it needs and has; `None`: the change needs none.
    pub reviewer_side: Option<SideStatus>,
    /// The implementer must send `confirm_count` equal to the target count.
    pub confirm_count_required: bool,
    pub conflicts: Vec<ConflictView>,
    /// An approved change that starts by itself (`POST …/schedule`).
    pub scheduled_start: Option<ScheduleView>,
    pub reject_reason: Option<String>,
    /// Why the change went back to its state, when something moved it back (a stale
    /// sign-off, a signer who left the team, a schema that no longer allows its team).
    pub state_reason: Option<String>,
    /// Still `approved`, but a sign-off it needs has expired: it cannot run, and the sweep
    /// sends it back for sign-off (the execute gate does at once).
    pub approval_expired: bool,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub resolved_at: NaiveDateTime,
    pub submitted_at: Option<NaiveDateTime>,
    pub approved_at: Option<NaiveDateTime>,
    pub not_before: Option<NaiveDateTime>,
    pub not_after: Option<NaiveDateTime>,
    /// For a rollback: the change it undoes (`CHG-n`).
    pub rollback_of: Option<String>,
    /// The rollback created for this change, if any.
    pub rolled_back_by: Option<String>,
    /// The budget its execution draws from (`budget`, `budget_group`), its state now and
    /// what this change still needs from it; `None`: it draws from none.
    #[schema(value_type = Option<Object>)]
    pub budget: Option<crate::service::budget::BudgetView>,
    /// What changed since the signers last saw the list (targets and roots added and
    /// removed), when the current list is another one; signers re-sign from it.
    #[schema(value_type = Option<Object>)]
    pub difference: Option<DifferenceView>,
}

impl ChangeView {
    pub fn short(&self) -> Option<String> {
        self.fingerprint.as_deref().map(short_fingerprint)
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub change: Option<String>,
    pub detail: Value,
    pub hash: String,
}

impl From<AuditEvent> for EventView {
    fn from(e: AuditEvent) -> Self {
        EventView {
            id: e.id,
            at: e.at,
            actor: e.actor,
            action: e.action,
            change: e.change_id.map(number),
            detail: serde_json::from_str(&e.detail).unwrap_or(Value::Null),
            hash: e.hash,
        }
    }
}

pub fn verdict_json(v: &audit::Verdict) -> Value {
    match v {
        audit::Verdict::Intact { events } => serde_json::json!({"intact": true, "events": events}),
        audit::Verdict::Broken { id, reason } => {
            serde_json::json!({"intact": false, "first_broken_event": id, "reason": reason})
        }
    }
}

/// One CSV field: always quoted, and defused against spreadsheet formulas (a leading `=`,
/// `+`, `-`, `@`, tab or carriage return gets a `'`).
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("acme"), "\"acme\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_field(bad).starts_with("\"'"), "{bad:?} not defused");
        }
    }
}

/// A change's scheduled start, as the API and the page show it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub change: String,
    pub start_at: NaiveDateTime,
    pub fingerprint: String,
    pub scheduled_by: String,
    pub wait_for_conflicts: bool,
    /// While it waits for conflicting changes: which ("CHG-3, CHG-8").
    pub waiting_on: Option<String>,
    pub created_at: NaiveDateTime,
}

/// A change's scheduled start, if it has one.
pub fn schedule_view(
    conn: &mut crate::db::DbConn,
    id: i64,
) -> crate::error::AppResult<Option<ScheduleView>> {
    let Some(s) = crate::db::exec::scheduled_start(conn, id)? else {
        return Ok(None);
    };
    let by = crate::db::users::find_user(conn, s.scheduled_by)?
        .map(|u| u.email)
        .unwrap_or_else(|| format!("user {}", s.scheduled_by));
    Ok(Some(ScheduleView {
        change: number(id),
        start_at: s.start_at,
        fingerprint: s.fingerprint,
        scheduled_by: by,
        wait_for_conflicts: s.wait_for_conflicts,
        waiting_on: s.waiting_on,
        created_at: s.created_at,
    }))
}
