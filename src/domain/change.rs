//! The change state machine. Transitions are decided here; the database layer applies
//! them inside a transaction that holds the change's row lock.

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum ChangeState {
    Draft,
    AwaitingSignoff,
    Approved,
    Rejected,
    Cancelled,
    Executing,
    Completed,
    PartiallyFailed,
    Failed,
    Halted,
    Aborted,
}

text_enum!(ChangeState, "change state", {
    Draft => "draft",
    AwaitingSignoff => "awaiting_signoff",
    Approved => "approved",
    Rejected => "rejected",
    Cancelled => "cancelled",
    Executing => "executing",
    Completed => "completed",
    PartiallyFailed => "partially_failed",
    Failed => "failed",
    Halted => "halted",
    Aborted => "aborted",
});

impl ChangeState {
    /// States in which the change's targets are "claimed" (for conflict detection).
    pub fn is_open_claim(self) -> bool {
        matches!(
            self,
            ChangeState::AwaitingSignoff
                | ChangeState::Approved
                | ChangeState::Executing
                | ChangeState::Halted
        )
    }

    /// States after an execution has changed something (a rollback may be asked for).
    pub fn has_executed(self) -> bool {
        matches!(
            self,
            ChangeState::Completed
                | ChangeState::PartiallyFailed
                | ChangeState::Failed
                | ChangeState::Aborted
        )
    }

    /// States from which a change can still be cancelled.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            ChangeState::Draft | ChangeState::AwaitingSignoff | ChangeState::Approved
        )
    }
}

/// What someone tries to do to a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Edit,
    Resolve,
    Submit,
    SignOff,
    Reject,
    Cancel,
    Comment,
    Execute,
    Resume,
    Abort,
    Rollback,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Edit => "edit",
            Action::Resolve => "re-resolve",
            Action::Submit => "submit",
            Action::SignOff => "sign off",
            Action::Reject => "reject",
            Action::Cancel => "cancel",
            Action::Comment => "comment on",
            Action::Execute => "execute",
            Action::Resume => "resume",
            Action::Abort => "abort",
            Action::Rollback => "roll back",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {} a change that is {}", .action.as_str(), .state)]
pub struct IllegalTransition {
    pub state: ChangeState,
    pub action: Action,
}

/// Is `action` allowed in `state`?
pub fn check(state: ChangeState, action: Action) -> Result<(), IllegalTransition> {
    use ChangeState::*;
    let ok = match action {
        Action::Edit | Action::Resolve => matches!(state, Draft | AwaitingSignoff | Approved),
        Action::Submit => state == Draft,
        Action::SignOff => state == AwaitingSignoff,
        Action::Reject => matches!(state, AwaitingSignoff | Approved),
        Action::Cancel => state.is_open(),
        Action::Comment => true,
        Action::Execute => state == Approved,
        Action::Resume => state == Halted,
        Action::Abort => matches!(state, Executing | Halted),
        Action::Rollback => state.has_executed(),
    };
    if ok {
        Ok(())
    } else {
        Err(IllegalTransition { state, action })
    }
}

/// The state after a (re-)resolution of a change in `state`.
///
/// * A resolution with errors cannot be signed: the change goes back to `draft`.
/// * A changed fingerprint on a submitted change makes every earlier sign-off stale and
///   needs new sign-offs: `approved` returns to `awaiting_signoff`.
/// * Otherwise nothing changes.
pub fn after_resolution(
    state: ChangeState,
    fingerprint_changed: bool,
    has_errors: bool,
) -> ChangeState {
    use ChangeState::*;
    match state {
        AwaitingSignoff | Approved if has_errors => Draft,
        Approved if fingerprint_changed => AwaitingSignoff,
        s => s,
    }
}

/// How people name change `id`: `CHG-12`.
pub fn number(id: i64) -> String {
    format!("CHG-{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChangeState::*;

    #[test]
    fn round_trip_names() {
        crate::domain::text_enum::assert_round_trip(ChangeState::VALUES);
        assert_eq!(ChangeState::VALUES.len(), 11);
        assert_eq!(ChangeState::parse("nope"), None);
    }

    #[test]
    fn transitions() {
        assert!(check(Draft, Action::Submit).is_ok());
        assert!(check(AwaitingSignoff, Action::Submit).is_err());
        assert!(check(AwaitingSignoff, Action::SignOff).is_ok());
        assert!(check(Approved, Action::SignOff).is_err());
        assert!(check(Draft, Action::Reject).is_err());
        assert!(check(Rejected, Action::Cancel).is_err());
        assert!(check(Completed, Action::Edit).is_err());
        assert!(check(Approved, Action::Execute).is_ok());
        assert!(check(AwaitingSignoff, Action::Execute).is_err());
        assert!(check(Executing, Action::Execute).is_err());
        assert!(check(Halted, Action::Resume).is_ok());
        assert!(check(Executing, Action::Abort).is_ok());
        assert!(check(Completed, Action::Rollback).is_ok());
        assert!(check(Executing, Action::Rollback).is_err());
        let e = check(Cancelled, Action::Submit).unwrap_err();
        assert_eq!(e.to_string(), "cannot submit a change that is cancelled");
    }

    #[test]
    fn resolution_outcomes() {
        assert_eq!(after_resolution(Approved, true, false), AwaitingSignoff);
        assert_eq!(after_resolution(Approved, false, false), Approved);
        assert_eq!(after_resolution(Approved, true, true), Draft);
        assert_eq!(
            after_resolution(AwaitingSignoff, true, false),
            AwaitingSignoff
        );
        assert_eq!(after_resolution(Draft, true, true), Draft);
    }
}
