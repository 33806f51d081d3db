//! Audit events as one typed enum. Each variant knows its action name (the `action`
//! column), its detail (the `detail` column, a JSON object whose shape is the variant's
//! fields) and the notification it causes, if any. Events are stored by `db::audit` and
//! recorded — stored and turned into mails in the same transaction — by
//! `service::events::record`; mails are rendered by matching on the enum read back from
//! the outbox row (`Event::from_stored`).
//!
//! The detail shapes are the ones the audit trail has always held, so events written
//! before this enum existed read back as the same variants.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::calendar::ProposalAction;
use super::execution::RestoreSpec;
use super::{ChangeState, Effect, ExecState, Side};

/// What happened. `#[serde(tag = "action", content = "detail")]`: serialised as
/// `{"action": "signed", "detail": {…}}`, which is exactly the two stored columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", content = "detail", rename_all = "snake_case")]
pub enum Event {
    // ---- a change's life ----
    Created(Created),
    Edited {
        fields: Vec<String>,
    },
    Resolved {
        reason: String,
        fingerprint: String,
        changed: bool,
        targets: u64,
        roots: u64,
        errors: u64,
        schema: String,
    },
    Submitted {
        fingerprint: Option<String>,
        targets: u64,
        roots: u64,
    },
    StateChanged {
        from: ChangeState,
        to: ChangeState,
        reason: String,
    },
    SignoffsStale(Stale),
    Signed {
        side: Side,
        fingerprint: String,
        comment: String,
        #[serde(default)]
        confirm_count: Option<u64>,
        /// Given from the difference view: the difference against the list it replaces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        difference: Option<crate::domain::difference::DifferenceCounts>,
    },
    Approved {
        fingerprint: String,
        requester: Vec<String>,
        implementer: Vec<String>,
        /// The third side's signers (a tier's `also`), when the policy named one.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reviewer: Vec<String>,
    },
    /// Sign-offs older than their operation's `signoffs_expire_after` stopped counting.
    SignoffsExpired {
        signoffs: Vec<SignoffExpiry>,
        /// The change was approved and went back to `awaiting_signoff`.
        unapproved: bool,
    },
    /// A sign-off is about to expire: its signer is reminded (once).
    SignoffExpiring(SignoffExpiry),
    Rejected {
        from: ChangeState,
        reason: String,
    },
    Cancelled {
        from: ChangeState,
        #[serde(default)]
        reason: Option<String>,
    },
    Commented {
        comment_id: i64,
        body: String,
    },
    // ---- execution ----
    ExecutionStarted {
        execution_id: i64,
        fingerprint: String,
        effect: Effect,
        targets: u64,
        waves: Vec<u64>,
    },
    WaveCompleted {
        wave: u32,
        of: u32,
        done: u64,
        failed: u64,
        skipped: u64,
    },
    ExecutionHalted {
        wave: u32,
        done: u64,
        failed: u64,
        reason: String,
        /// The budget group whose budget is spent, when that is why (else the wave's
        /// failures halted it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget: Option<String>,
    },
    /// A wave ended and the next waits: until `until` (the operation's `bake`), then the
    /// health check and any manual gate.
    ExecutionBaking {
        wave: u32,
        until: chrono::NaiveDateTime,
    },
    /// The operation's health endpoint answered after wave `wave`'s bake.
    HealthChecked {
        wave: u32,
        healthy: bool,
        /// What it said, or why there was no usable answer.
        answer: String,
    },
    /// A manual gate (`pause_after_waves`): an implementer continues it.
    ExecutionPaused {
        wave: u32,
        reason: String,
    },
    /// Someone paused a running or baking execution; it stops at its next batch.
    ExecutionPausedByOperator {
        execution_id: i64,
        wave: u32,
        reason: String,
    },
    /// Someone skipped the pending targets of a wave of a paused or halted execution.
    WaveSkipped {
        execution_id: i64,
        wave: u32,
        skipped: u64,
        reason: String,
    },
    /// An implementer skipped the targets the drift check held back.
    DriftedSkipped {
        execution_id: i64,
        wave: u32,
        skipped: u64,
        reason: String,
    },
    /// An implementer put failed targets back to run again (a new attempt on each item).
    FailedRetried {
        execution_id: i64,
        targets: u64,
        from_wave: u32,
        reason: String,
    },
    /// An implementer scheduled an approved change to start at a time (the window's
    /// opening) or as soon as the changes sharing its targets finish.
    StartScheduled {
        at: chrono::NaiveDateTime,
        fingerprint: String,
        wait_for_conflicts: bool,
    },
    /// A scheduled start was called off: by a person, or because it was refused when due.
    StartUnscheduled {
        reason: String,
        /// It was due and the gate refused it (mailed), rather than called off.
        refused: bool,
    },
    /// An implementer continued a paused execution.
    ExecutionContinued {
        execution_id: i64,
        next_wave: u32,
    },
    ExecutionResumed {
        execution_id: i64,
        #[serde(default)]
        halt_reason: Option<String>,
        next_wave: u32,
    },
    ExecutionAborted {
        execution_id: i64,
        skipped: u64,
        reason: String,
    },
    ExecutionFinished {
        state: ExecState,
        done: u64,
        failed: u64,
        skipped: u64,
        total: u64,
    },
    RollbackCreated {
        /// The rollback's number (`CHG-12`).
        rollback: String,
        targets: u64,
    },
    // ---- customer contacts and notices ----
    ContactsImported {
        lines: u64,
        inserted: u64,
        updated: u64,
        rejected: u64,
    },
    ContactsExported {
        format: String,
        roots: u64,
        contacts: u64,
        sha256: String,
    },
    CustomerNoticeDrafted {
        notice: i64,
        subject: String,
        subject_sha256: String,
        body_sha256: Option<String>,
        recipients: u64,
        roles: Value,
        drafter_team: Option<String>,
        approver_team: Option<String>,
    },
    CustomerNoticeSent {
        notice: i64,
        subject: String,
        subject_sha256: String,
        body_sha256: Option<String>,
        recipients: u64,
        roles: Value,
        #[serde(default)]
        drafted_by: Option<String>,
        approved_by: String,
    },
    CustomerNoticeDiscarded {
        notice: i64,
        subject_sha256: String,
        body_sha256: Option<String>,
        by_drafter: bool,
        #[serde(default)]
        drafted_by: Option<String>,
    },
    // ---- the change calendar ----
    /// An admin proposed a calendar act; it takes effect when another admin confirms it.
    CalendarProposed {
        proposal: i64,
        calendar_action: ProposalAction,
        summary: String,
        reason: String,
    },
    /// A second admin confirmed a proposal: it took effect.
    CalendarConfirmed {
        proposal: i64,
        calendar_action: ProposalAction,
        proposed_by: String,
        summary: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        freeze: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lockdown: Option<i64>,
    },
    /// A proposal was withdrawn by its proposer or declined by another admin.
    CalendarDeclined {
        proposal: i64,
        calendar_action: ProposalAction,
        withdrawn: bool,
        #[serde(default)]
        reason: Option<String>,
    },
    /// A lockdown came into force (recorded on every approved or executing change, whose
    /// people are mailed).
    LockdownDeclared {
        lockdown: i64,
        reason: String,
        proposed_by: String,
        confirmed_by: String,
    },
    /// The lockdown was lifted (recorded on the same changes).
    LockdownLifted {
        lockdown: i64,
        reason: String,
        proposed_by: String,
        confirmed_by: String,
    },
    /// The runner paused an execution at its next batch because of a lockdown.
    ExecutionPausedByLockdown {
        execution_id: i64,
        wave: u32,
        lockdown: i64,
        reason: String,
    },
    /// The lift of a lockdown resumed an execution it had paused.
    ExecutionResumedAfterLockdown {
        execution_id: i64,
        lockdown: i64,
        state: ExecState,
    },
    /// An implementer gave a soft freeze's exception (one more sign-off) for the change.
    FreezeExceptionGiven {
        freeze: i64,
        freeze_name: String,
        fingerprint: String,
        comment: String,
    },
    /// A person created (or replaced) their calendar feed token.
    CalendarFeedTokenCreated {},
    // ---- inventory and schema ----
    InventoryImported {
        import: i64,
        lines: u64,
        inserted: u64,
        updated: u64,
        unchanged: u64,
        rejected: u64,
        partial: bool,
        changed: u64,
        changed_ids_digest: String,
        /// The changed IDs themselves, up to a bound (beyond it the digest and the diff).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        changed_ids: Option<Vec<String>>,
    },
    SchemaLoaded {
        hash: String,
        kinds: Vec<String>,
        operations: Vec<String>,
    },
    // ---- people, teams, sessions, tokens ----
    TeamCreated {
        team: String,
    },
    TeamMemberAdded {
        team: String,
        email: String,
    },
    TeamMemberRemoved {
        team: String,
        email: String,
    },
    UserSaved {
        email: String,
        #[serde(default)]
        name: Option<String>,
        teams: Vec<String>,
        #[serde(default)]
        admin: bool,
    },
    SignedIn {},
    PasswordChanged {
        other_sessions_ended: u64,
    },
    PasswordReset {
        email: String,
        must_change_password: bool,
        sessions_ended: u64,
    },
    SessionRevoked {
        session: String,
        current: bool,
    },
    OtherSessionsRevoked {
        sessions: u64,
    },
    TokenCreated {
        /// Set when someone else (the command line) created it for this person.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
        label: String,
        #[serde(default)]
        expires_at: Option<chrono::NaiveDateTime>,
    },
    TokenRevoked {
        token: i64,
        /// Set when an admin (or the command line) revoked someone else's token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
    /// A person can no longer sign in, their sessions ended and their API tokens and
    /// sign-offs stopped counting (changes sent back have their own `state_changed`).
    PersonDeactivated {
        email: String,
        sessions_ended: u64,
        /// Their tokens that were usable and are refused while they are deactivated.
        tokens_suspended: u64,
    },
    PersonReactivated {
        email: String,
    },
    NotificationPreferencesSet(std::collections::BTreeMap<String, String>),
    MailRetried {
        mail: i64,
        recipient: String,
    },
    // ---- chat and event hooks ----
    /// A team subscribed a hook (its address is stored masked here: Slack's and Teams'
    /// carry a credential).
    HookCreated {
        hook: i64,
        team: String,
        name: String,
        format: crate::domain::hook::HookFormat,
        url: String,
        events: Vec<String>,
    },
    HookDeleted {
        hook: i64,
        team: String,
        name: String,
        /// Its deliveries not sent yet, given up.
        abandoned: u64,
    },
    HookTested {
        hook: i64,
        team: String,
        delivery: String,
    },
    // ---- single sign-on ----
    /// A sign-in through the OpenID provider (the actor is the person): whether the person
    /// was created or an existing one linked to the identity, and what the groups changed.
    /// Each membership change is its own `team_member_added` / `team_member_removed` too.
    SsoSignedIn {
        issuer: String,
        subject: String,
        #[serde(default)]
        created: bool,
        #[serde(default)]
        linked: bool,
        #[serde(default)]
        joined: Vec<String>,
        #[serde(default)]
        left: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        admin: Option<bool>,
    },
    /// The provider vouched for someone countersign's rules refuse (nothing was created).
    SsoRefused {
        email: Option<String>,
        subject: String,
        reason: String,
    },
}

/// How a change came to exist: asked for by a person, or derived (a rollback, a restore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Created {
    Requested {
        title: String,
        operation: String,
        requesting_team: String,
        implementing_team: String,
        params: Value,
        selector: SelectorShape,
        fingerprint: String,
        target_count: u64,
        roots: u64,
        errors: u64,
        schema: String,
    },
    Rollback {
        /// The change it undoes (`CHG-12`).
        rollback_of: String,
        operation: String,
        effect: Effect,
        fingerprint: String,
        target_count: u64,
        #[serde(default)]
        warnings: Vec<String>,
    },
    Restore {
        restore: RestoreSpec,
        operation: String,
        effect: Effect,
        fingerprint: String,
        target_count: u64,
        #[serde(default)]
        warnings: Vec<String>,
    },
}

/// A selector's size, as the audit trail keeps it (not its IDs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectorShape {
    pub ids: u64,
    pub within: Option<WithinShape>,
    #[serde(rename = "where")]
    pub filter: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WithinShape {
    pub kind: String,
    pub ids: u64,
}

/// One sign-off that expires: who gave it, on which side, when, and when it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignoffExpiry {
    pub signoff: i64,
    pub email: String,
    pub side: Side,
    pub signed_at: chrono::NaiveDateTime,
    pub expires_at: chrono::NaiveDateTime,
    /// The operation's `signoffs_expire_after`, in words ("72 hours").
    pub lifetime: String,
}

/// Sign-offs that stopped counting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stale {
    pub count: u64,
    /// The fingerprint the stale sign-offs were given for.
    pub previous_fingerprint: Option<String>,
    pub fingerprint: Option<String>,
    pub reason: String,
    #[serde(flatten)]
    pub why: Staleness,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Staleness {
    /// The title or rationale was rewritten (the targets did not change).
    Text {
        text_changed: bool,
        fields: Vec<String>,
    },
    /// The resolved target list changed.
    Targets {
        added: u64,
        removed: u64,
        added_sample: Vec<String>,
        removed_sample: Vec<String>,
        /// The roots the new list touches and the signed one did not, and the other way
        /// round (the first 20 IDs; events stored before had none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roots_added: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roots_removed: Vec<String>,
    },
}

impl Event {
    /// The `action` column.
    pub fn action(&self) -> &'static str {
        match self {
            Event::Created(_) => "created",
            Event::Edited { .. } => "edited",
            Event::Resolved { .. } => "resolved",
            Event::Submitted { .. } => "submitted",
            Event::StateChanged { .. } => "state_changed",
            Event::SignoffsStale(_) => "signoffs_stale",
            Event::Signed { .. } => "signed",
            Event::Approved { .. } => "approved",
            Event::SignoffsExpired { .. } => "signoffs_expired",
            Event::SignoffExpiring(_) => "signoff_expiring",
            Event::Rejected { .. } => "rejected",
            Event::Cancelled { .. } => "cancelled",
            Event::Commented { .. } => "commented",
            Event::ExecutionStarted { .. } => "execution_started",
            Event::WaveCompleted { .. } => "wave_completed",
            Event::ExecutionHalted { .. } => "execution_halted",
            Event::ExecutionBaking { .. } => "execution_baking",
            Event::HealthChecked { .. } => "health_checked",
            Event::ExecutionPaused { .. } => "execution_paused",
            Event::ExecutionPausedByOperator { .. } => "execution_paused_by_operator",
            Event::WaveSkipped { .. } => "wave_skipped",
            Event::DriftedSkipped { .. } => "drifted_skipped",
            Event::FailedRetried { .. } => "failed_retried",
            Event::StartScheduled { .. } => "start_scheduled",
            Event::StartUnscheduled { .. } => "start_unscheduled",
            Event::ExecutionContinued { .. } => "execution_continued",
            Event::ExecutionResumed { .. } => "execution_resumed",
            Event::ExecutionAborted { .. } => "execution_aborted",
            Event::ExecutionFinished { .. } => "execution_finished",
            Event::RollbackCreated { .. } => "rollback_created",
            Event::ContactsImported { .. } => "contacts_imported",
            Event::ContactsExported { .. } => "contacts_exported",
            Event::CustomerNoticeDrafted { .. } => "customer_notice_drafted",
            Event::CustomerNoticeSent { .. } => "customer_notice_sent",
            Event::CustomerNoticeDiscarded { .. } => "customer_notice_discarded",
            Event::CalendarProposed { .. } => "calendar_proposed",
            Event::CalendarConfirmed { .. } => "calendar_confirmed",
            Event::CalendarDeclined { .. } => "calendar_declined",
            Event::LockdownDeclared { .. } => "lockdown_declared",
            Event::LockdownLifted { .. } => "lockdown_lifted",
            Event::ExecutionPausedByLockdown { .. } => "execution_paused_by_lockdown",
            Event::ExecutionResumedAfterLockdown { .. } => "execution_resumed_after_lockdown",
            Event::FreezeExceptionGiven { .. } => "freeze_exception_given",
            Event::CalendarFeedTokenCreated {} => "calendar_feed_token_created",
            Event::InventoryImported { .. } => "inventory_imported",
            Event::SchemaLoaded { .. } => "schema_loaded",
            Event::TeamCreated { .. } => "team_created",
            Event::TeamMemberAdded { .. } => "team_member_added",
            Event::TeamMemberRemoved { .. } => "team_member_removed",
            Event::UserSaved { .. } => "user_saved",
            Event::SignedIn {} => "signed_in",
            Event::PasswordChanged { .. } => "password_changed",
            Event::PasswordReset { .. } => "password_reset",
            Event::SessionRevoked { .. } => "session_revoked",
            Event::OtherSessionsRevoked { .. } => "other_sessions_revoked",
            Event::TokenCreated { .. } => "token_created",
            Event::TokenRevoked { .. } => "token_revoked",
            Event::PersonDeactivated { .. } => "person_deactivated",
            Event::PersonReactivated { .. } => "person_reactivated",
            Event::NotificationPreferencesSet(_) => "notification_preferences_set",
            Event::MailRetried { .. } => "mail_retried",
            Event::HookCreated { .. } => "hook_created",
            Event::HookDeleted { .. } => "hook_deleted",
            Event::HookTested { .. } => "hook_tested",
            Event::SsoSignedIn { .. } => "sso_signed_in",
            Event::SsoRefused { .. } => "sso_refused",
        }
    }

    /// The notification people get about this event, if any (only for events of a change).
    pub fn notification(&self) -> Option<NotificationKind> {
        use NotificationKind as K;
        Some(match self {
            Event::Submitted { .. } => K::NeedsSignoff,
            Event::Signed { .. } => K::Signed,
            Event::Approved { .. } => K::Approved,
            Event::SignoffsStale(_) => K::Stale,
            Event::Rejected { .. } => K::Rejected,
            Event::Cancelled { .. } => K::Cancelled,
            Event::Commented { .. } => K::Commented,
            Event::ExecutionStarted { .. } => K::ExecutionStarted,
            // A gate waiting for an implementer is told like a halt: someone must act.
            Event::ExecutionHalted { .. }
            | Event::ExecutionPaused { .. }
            | Event::ExecutionPausedByOperator { .. }
            | Event::LockdownDeclared { .. }
            | Event::LockdownLifted { .. } => K::ExecutionHalted,
            Event::FreezeExceptionGiven { .. } => K::Signed,
            Event::ExecutionFinished { .. } | Event::ExecutionAborted { .. } => {
                K::ExecutionFinished
            }
            Event::RollbackCreated { .. } => K::RollbackCreated,
            // A start that was due and did not happen: the implementers must act.
            Event::StartUnscheduled { refused: true, .. } => K::ExecutionHalted,
            Event::CustomerNoticeDrafted { .. } => K::NoticeDrafted,
            Event::SignoffExpiring(_) => K::SignoffExpiring,
            Event::SignoffsExpired { .. } => K::SignoffsExpired,
            _ => return None,
        })
    }

    /// The `detail` column: the variant's fields as a JSON object.
    pub fn detail(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut o)) => o
                .remove("detail")
                .unwrap_or_else(|| Value::Object(Default::default())),
            // Serialising plain data into a `Value` cannot fail.
            _ => Value::Null,
        }
    }

    /// Read a stored event back (`action` and `detail` columns). `None` for an action this
    /// build does not know or a detail of another shape.
    pub fn from_stored(action: &str, detail: &Value) -> Option<Event> {
        serde_json::from_value(serde_json::json!({"action": action, "detail": detail})).ok()
    }
}

mod hook_kind;
mod notification;

pub use notification::NotificationKind;
#[cfg(test)]
mod tests;
