//! Row types. Insert forms are separate structs so defaults stay in one place.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::*;
use crate::domain::{
    ChangeState, Effect, EntityState, ExecState, ItemStatus, NoticeState, OutboxState, Side,
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub created_at: NaiveDateTime,
    /// Signed in with a password the CLI printed: every page but the password page
    /// redirects there until it is replaced.
    pub must_change_password: bool,
    /// Deactivated (by an admin, or the command line): signs in no more, their sessions and
    /// tokens are refused and their sign-offs stop counting.
    pub deactivated_at: Option<NaiveDateTime>,
    /// The admin who deactivated them (`None` with `deactivated_at` set: the command line).
    pub deactivated_by: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = teams)]
pub struct Team {
    pub id: i64,
    pub name: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = entities)]
pub struct Entity {
    pub id: String,
    pub kind: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub attrs: String,
    pub state: EntityState,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
    pub deleted_by: Option<i64>,
    pub purge_after: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = entities)]
pub struct NewEntity {
    pub id: String,
    pub kind: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub attrs: String,
    pub state: EntityState,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = changes)]
pub struct Change {
    pub id: i64,
    pub title: String,
    pub rationale: String,
    pub requesting_team: String,
    pub implementing_team: String,
    pub operation: String,
    pub params: String,
    pub selector: String,
    pub expect: Option<String>,
    pub state: ChangeState,
    pub author_id: i64,
    pub schema_hash: String,
    pub fingerprint: Option<String>,
    pub summary: String,
    pub errors: String,
    pub target_count: i64,
    pub root_count: i64,
    pub selects_everything: bool,
    pub error_count: i64,
    pub lock_version: i64,
    pub reject_reason: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub resolved_at: NaiveDateTime,
    pub submitted_at: Option<NaiveDateTime>,
    pub approved_at: Option<NaiveDateTime>,
    pub not_before: Option<NaiveDateTime>,
    pub not_after: Option<NaiveDateTime>,
    pub rollback_of: Option<i64>,
    pub rolled_back_by: Option<i64>,
}

impl Change {
    /// The policy the change needs under `op` as resolved now, with the risk tier that set
    /// it: computed from the stored counts every time, so a re-resolution that moves the
    /// change to another tier makes its sign-offs count against the new one.
    pub fn policy<'o>(
        &self,
        op: &'o crate::domain::Operation,
    ) -> crate::domain::schema::Policy<'o> {
        op.policy(
            self.target_count.max(0) as u64,
            self.root_count.max(0) as u64,
            self.rollback_of.is_some(),
            self.selects_everything,
        )
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = changes)]
pub struct NewChange {
    pub title: String,
    pub rationale: String,
    pub requesting_team: String,
    pub implementing_team: String,
    pub operation: String,
    pub params: String,
    pub selector: String,
    pub expect: Option<String>,
    pub state: ChangeState,
    pub author_id: i64,
    pub schema_hash: String,
    pub fingerprint: Option<String>,
    pub summary: String,
    pub errors: String,
    pub target_count: i64,
    pub root_count: i64,
    pub selects_everything: bool,
    pub error_count: i64,
    pub lock_version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub resolved_at: NaiveDateTime,
    pub not_before: Option<NaiveDateTime>,
    pub not_after: Option<NaiveDateTime>,
    pub rollback_of: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = change_targets)]
pub struct ChangeTarget {
    pub change_id: i64,
    pub position: i64,
    pub kind: String,
    pub entity_id: String,
    pub scope_path: String,
    pub name: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = signoffs)]
pub struct Signoff {
    pub id: i64,
    pub change_id: i64,
    pub side: Side,
    pub user_id: i64,
    pub fingerprint: String,
    pub comment: String,
    pub stale: bool,
    pub created_at: NaiveDateTime,
    /// When its signer was reminded that it is about to expire (once).
    pub reminded_at: Option<NaiveDateTime>,
    /// When its expiry was recorded (the event, its mails, the change sent back; once).
    pub expiry_recorded_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = comments)]
pub struct Comment {
    pub id: i64,
    pub change_id: i64,
    pub user_id: i64,
    pub body: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: i64,
    pub at: NaiveDateTime,
    pub actor: String,
    pub action: String,
    pub change_id: Option<i64>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// `None` is written as `NULL`, not `DEFAULT`: SQLite has no `DEFAULT` in `VALUES`, so with
/// defaultable fields diesel runs one `INSERT` per row; this way a batch of version rows
/// is one multi-row statement per chunk on both backends.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = entity_versions, treat_none_as_default_value = false)]
pub struct EntityVersion {
    pub entity_id: String,
    pub version: i64,
    pub change_id: Option<i64>,
    pub at: NaiveDateTime,
    pub before_state: EntityState,
    pub before_name: String,
    pub before_attrs: String,
    pub after_state: EntityState,
    pub after_name: String,
    pub after_attrs: String,
    /// The import that wrote this row (`change_id` is then `None`).
    pub import_id: Option<i64>,
    pub before_parent: Option<String>,
    pub after_parent: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = imports)]
pub struct Import {
    pub id: i64,
    pub importer: String,
    pub started_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    pub lines: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub rejected: i64,
    pub partial: bool,
    pub changed: i64,
    pub changed_digest: String,
    pub audit_event_id: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = executions)]
pub struct Execution {
    pub id: i64,
    pub change_id: i64,
    pub fingerprint: String,
    pub effect: Effect,
    pub state: ExecState,
    pub waves: String,
    pub current_wave: i64,
    pub total: i64,
    pub done: i64,
    pub failed: i64,
    pub skipped: i64,
    pub halt_reason: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub started_by: i64,
    pub started_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
    /// `baking`: when the bake after the last wave ends (then the health check runs).
    pub bake_until: Option<NaiveDateTime>,
    /// `paused`: why it waits for an implementer to continue it.
    pub pause_reason: Option<String>,
    /// The last wave whose targets were checked for drift before it ran.
    pub drift_checked_wave: i64,
    /// After a retry of failed targets: waves up to this one already passed their
    /// between-wave gates and re-run without waiting at them again.
    pub rerun_through_wave: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = execution_items)]
pub struct ExecutionItem {
    pub execution_id: i64,
    pub position: i64,
    pub wave: i64,
    pub kind: String,
    pub entity_id: String,
    pub status: ItemStatus,
    pub attempts: i64,
    pub error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub finished_at: Option<NaiveDateTime>,
    /// How many times an implementer retried this failed target (part of its
    /// idempotency key, so a receiver does not replay the failed answer).
    pub retries: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub event_key: String,
    pub event_kind: String,
    pub change_id: Option<i64>,
    pub user_id: Option<i64>,
    pub recipient: String,
    pub payload: String,
    pub message_id: String,
    pub state: OutboxState,
    pub attempts: i64,
    pub next_attempt_at: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<NaiveDateTime>,
    pub last_error: Option<String>,
    pub digest_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
    pub channel: crate::domain::hook::OutboxChannel,
    pub hook_id: Option<i64>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutbox {
    pub event_key: String,
    pub event_kind: String,
    pub change_id: Option<i64>,
    pub user_id: Option<i64>,
    pub recipient: String,
    pub payload: String,
    pub message_id: String,
    pub state: OutboxState,
    pub next_attempt_at: NaiveDateTime,
    pub digest_id: Option<i64>,
    pub created_at: NaiveDateTime,
    pub channel: crate::domain::hook::OutboxChannel,
    pub hook_id: Option<i64>,
}

/// A team's chat or event hook.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = hooks)]
pub struct Hook {
    pub id: i64,
    pub team_id: i64,
    pub name: String,
    pub format: crate::domain::hook::HookFormat,
    pub url: String,
    pub secret: Option<String>,
    /// A JSON array of `HookKind` spellings.
    pub events: String,
    pub created_by: i64,
    pub created_at: NaiveDateTime,
    pub deleted_at: Option<NaiveDateTime>,
}

impl Hook {
    /// The events it subscribes to (a spelling this build does not know is left out).
    pub fn kinds(&self) -> Vec<crate::domain::hook::HookKind> {
        serde_json::from_str::<Vec<String>>(&self.events)
            .unwrap_or_default()
            .iter()
            .filter_map(|k| crate::domain::hook::HookKind::parse(k))
            .collect()
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = hooks)]
pub struct NewHook {
    pub team_id: i64,
    pub name: String,
    pub format: crate::domain::hook::HookFormat,
    pub url: String,
    pub secret: Option<String>,
    pub events: String,
    pub created_by: i64,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = contacts)]
pub struct Contact {
    pub id: i64,
    pub entity_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = contacts)]
pub struct NewContact {
    pub entity_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = customer_notices)]
pub struct CustomerNotice {
    pub id: i64,
    pub change_id: i64,
    pub subject: String,
    pub body: String,
    pub roles: String,
    pub recipients: String,
    pub recipient_count: i64,
    pub drafted_by: i64,
    pub created_at: NaiveDateTime,
    pub state: NoticeState,
    /// The change's team the drafter drafted for (`None`: sent before approvals existed).
    pub drafter_team: Option<String>,
    pub body_sha256: Option<String>,
    pub approved_by: Option<i64>,
    pub sent_at: Option<NaiveDateTime>,
    pub discarded_by: Option<i64>,
    pub discarded_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = customer_notices)]
pub struct NewCustomerNotice {
    pub change_id: i64,
    pub subject: String,
    pub body: String,
    pub roles: String,
    pub recipients: String,
    pub recipient_count: i64,
    pub drafted_by: i64,
    pub created_at: NaiveDateTime,
    pub state: NoticeState,
    pub drafter_team: Option<String>,
    pub body_sha256: Option<String>,
}

/// An approved change that starts by itself: at `start_at` (its window's opening), or as
/// soon as the changes sharing its targets finish (`wait_for_conflicts`).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = crate::db::schema::scheduled_starts)]
pub struct ScheduledStart {
    pub change_id: i64,
    pub start_at: NaiveDateTime,
    /// The fingerprint it was scheduled for: the start executes exactly that.
    pub fingerprint: String,
    /// Whose authority the start runs under (still checked when it is due).
    pub scheduled_by: i64,
    pub wait_for_conflicts: bool,
    /// While it waits for conflicting changes: which ("CHG-3, CHG-8").
    pub waiting_on: Option<String>,
    pub created_at: NaiveDateTime,
}
