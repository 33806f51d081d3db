//! Who may do what to a change: one pure decision from (person, change facts) to the set
//! of actions allowed. The services `require` an action before they act, the pages render
//! exactly the allowed set, and the API returns it as `allowed_actions`, so the three
//! cannot disagree. Input-dependent checks (the fingerprint a signer sends, the typed
//! target count, the execution window) stay with the service that receives the input.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use super::change::ChangeState;
use super::execution::ExecState;
use super::notice;

mod execution;
use execution::{
    abort, continue_paused, pause, retry_failed, rollback, run, schedule, skip_drifted, skip_wave,
    unschedule,
};

/// Something a person can do to a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    Edit,
    Resolve,
    Submit,
    SignRequester,
    SignImplementer,
    SignReviewer,
    Reject,
    Cancel,
    Comment,
    Execute,
    Resume,
    /// Continue an execution paused at a manual gate (`pause_after_waves`).
    Continue,
    /// Pause a running or baking execution at its next batch.
    Pause,
    /// Skip the pending targets of the current wave of a paused or halted execution.
    SkipWave,
    /// Skip the targets the drift check held back (then resume).
    SkipDrifted,
    /// Put the failed targets back to run again.
    RetryFailed,
    /// Start an approved change later: at its window's opening, or once the changes that
    /// share its targets finish.
    Schedule,
    /// Call a scheduled start off.
    Unschedule,
    Abort,
    Rollback,
    DraftNotice,
}

impl ChangeAction {
    pub const ALL: [ChangeAction; 21] = [
        ChangeAction::Edit,
        ChangeAction::Resolve,
        ChangeAction::Submit,
        ChangeAction::SignRequester,
        ChangeAction::SignImplementer,
        ChangeAction::SignReviewer,
        ChangeAction::Reject,
        ChangeAction::Cancel,
        ChangeAction::Comment,
        ChangeAction::Execute,
        ChangeAction::Resume,
        ChangeAction::Continue,
        ChangeAction::Pause,
        ChangeAction::SkipWave,
        ChangeAction::SkipDrifted,
        ChangeAction::RetryFailed,
        ChangeAction::Schedule,
        ChangeAction::Unschedule,
        ChangeAction::Abort,
        ChangeAction::Rollback,
        ChangeAction::DraftNotice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeAction::Edit => "edit",
            ChangeAction::Resolve => "resolve",
            ChangeAction::Submit => "submit",
            ChangeAction::SignRequester => "sign_requester",
            ChangeAction::SignImplementer => "sign_implementer",
            ChangeAction::SignReviewer => "sign_reviewer",
            ChangeAction::Reject => "reject",
            ChangeAction::Cancel => "cancel",
            ChangeAction::Comment => "comment",
            ChangeAction::Execute => "execute",
            ChangeAction::Resume => "resume",
            ChangeAction::Continue => "continue",
            ChangeAction::Pause => "pause",
            ChangeAction::SkipWave => "skip_wave",
            ChangeAction::SkipDrifted => "skip_drifted",
            ChangeAction::RetryFailed => "retry_failed",
            ChangeAction::Schedule => "schedule",
            ChangeAction::Unschedule => "unschedule",
            ChangeAction::Abort => "abort",
            ChangeAction::Rollback => "rollback",
            ChangeAction::DraftNotice => "draft_notice",
        }
    }

    /// What the action is, in words: "sign the implementer side of".
    fn words(self) -> &'static str {
        match self {
            ChangeAction::Edit => "edit",
            ChangeAction::Resolve => "re-resolve",
            ChangeAction::Submit => "submit",
            ChangeAction::SignRequester => "sign the requester side of",
            ChangeAction::SignImplementer => "sign the implementer side of",
            ChangeAction::SignReviewer => "sign the third side of",
            ChangeAction::Reject => "reject",
            ChangeAction::Cancel => "cancel",
            ChangeAction::Comment => "comment on",
            ChangeAction::Execute => "execute",
            ChangeAction::Resume => "resume",
            ChangeAction::Continue => "continue",
            ChangeAction::Pause => "pause",
            ChangeAction::SkipWave => "skip the rest of the wave of",
            ChangeAction::SkipDrifted => "skip the drifted targets of",
            ChangeAction::RetryFailed => "retry the failed targets of",
            ChangeAction::Schedule => "schedule the start of",
            ChangeAction::Unschedule => "call off the scheduled start of",
            ChangeAction::Abort => "abort",
            ChangeAction::Rollback => "roll back",
            ChangeAction::DraftNotice => "draft a customer notice for",
        }
    }
}

impl fmt::Display for ChangeAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the decision needs to know about the person and the change. Built by the service
/// layer from one consistent read (inside the write transaction when it is acted upon).
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub state: Option<ChangeState>,
    pub requesting_team: &'a str,
    pub implementing_team: &'a str,
    pub is_admin: bool,
    pub is_author: bool,
    pub in_requesting_team: bool,
    pub in_implementing_team: bool,
    /// The third side the change's policy names as resolved now (a tier's `also` team),
    /// if any, and whether the person is a member of it.
    pub reviewing_team: Option<&'a str>,
    pub in_reviewing_team: bool,
    /// The person has a counted sign-off on the requester side for the current fingerprint.
    pub signed_requester: bool,
    pub signed_implementer: bool,
    pub signed_reviewer: bool,
    /// The person has ever signed that side of this change (stale or not): one person never
    /// takes part for two sides.
    pub ever_signed_requester: bool,
    pub ever_signed_implementer: bool,
    pub ever_signed_reviewer: bool,
    /// The change is a rollback of another change.
    pub is_rollback: bool,
    /// The change's operation is still in the schema.
    pub operation_known: bool,
    /// Executing the change has an inverse (a rollback is possible in principle).
    pub reversible: bool,
    /// The state of the change's execution, if it has one.
    pub execution: Option<ExecState>,
    /// Targets the execution changed (done items).
    pub executed_targets: u64,
    /// Targets the execution recorded as failed.
    pub failed_targets: u64,
    /// Targets the drift check held back (halted executions).
    pub drifted_targets: u64,
    /// The change waits for a scheduled start.
    pub scheduled: bool,
    /// An open (not cancelled or rejected) rollback exists already.
    pub has_open_rollback: bool,
    /// Now is inside the change's execution window (`not_before`/`not_after`).
    pub in_window: bool,
    /// The current fingerprint has every sign-off it needs from people who still count.
    pub approval_holds: bool,
    /// What the change calendar says stands in the way now: a lockdown (no execute,
    /// resume or continue), or for an approved change a hard freeze or a soft one without a
    /// counting exception (no execute).
    pub blocked_by: Option<super::calendar::BlockKind>,
}

/// Which rule refused an action. `error.rs` names the API's stable `code` of each (the
/// variants are named like those codes) and so its HTTP status; the domain knows neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A person rule with no more specific reason: the message names who may.
    Forbidden,
    NotAuthor,
    NotInTeam,
    NotImplementer,
    SeparationOfDuties,
    /// Not in this state.
    IllegalTransition,
    UnknownState,
    AlreadySigned,
    /// The change's policy names no third side: nobody signs as reviewer.
    NoThirdSide,
    OutsideWindow,
    /// The execution's state does not allow it (`Denied::execution` says which it is).
    ExecutionState,
    SignoffsNoLongerCount,
    /// The change's operation left the schema.
    OperationRemoved,
    NotReversible,
    AlreadyRolledBack,
    NothingToRollBack,
    /// The change calendar: a lockdown or a freeze (`Facts::blocked_by`).
    Blocked(super::calendar::BlockKind),
    /// The customer-notice rules refused a draft.
    Notice(notice::NoticeRefusal),
}

/// Why an action is refused: the rule and a sentence naming the rule, the team and the
/// state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub action: ChangeAction,
    pub reason: Reason,
    pub message: String,
    /// The change's state when the refusal is about the state.
    pub state: Option<ChangeState>,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn who(reason: Reason, action: ChangeAction, message: String) -> Denied {
    Denied {
        action,
        reason,
        message,
        state: None,
    }
}

fn when(state: ChangeState, action: ChangeAction) -> Denied {
    Denied {
        action,
        reason: Reason::IllegalTransition,
        state: Some(state),
        message: format!(
            "cannot {} a change that is {}",
            action.words(),
            state.as_str()
        ),
    }
}

/// A refusal by one of the action's own rules, about the change in `state`.
fn refused(action: ChangeAction, reason: Reason, state: ChangeState, message: &str) -> Denied {
    Denied {
        action,
        reason,
        state: Some(state),
        message: message.into(),
    }
}

impl Facts<'_> {
    fn in_either_team(&self) -> bool {
        self.in_requesting_team || self.in_implementing_team
    }

    /// An admin, the author or a member of either team.
    fn involved(&self) -> bool {
        self.is_admin || self.is_author || self.in_either_team()
    }

    /// A member of either team or of the third side: who may comment on and reject it.
    fn any_side(&self) -> bool {
        self.in_either_team() || self.in_reviewing_team
    }

    /// The change's two teams, in words.
    fn teams(&self) -> String {
        format!("`{}` or `{}`", self.requesting_team, self.implementing_team)
    }

    /// Every team that signs the change, in words.
    fn signing_teams(&self) -> String {
        match self.reviewing_team {
            Some(r) => format!(
                "`{}`, `{}` or `{r}`",
                self.requesting_team, self.implementing_team
            ),
            None => self.teams(),
        }
    }

    /// The person already signed a side other than `side` of this change (at any
    /// fingerprint): one person never counts on two sides.
    fn signed_other_side_than(&self, side: ChangeAction) -> Option<&'static str> {
        use ChangeAction as A;
        [
            (A::SignRequester, self.ever_signed_requester, "requester"),
            (
                A::SignImplementer,
                self.ever_signed_implementer,
                "implementer",
            ),
            (A::SignReviewer, self.ever_signed_reviewer, "third"),
        ]
        .into_iter()
        .find(|(a, signed, _)| *a != side && *signed)
        .map(|(_, _, name)| name)
    }
}

/// Decide one action. Person rules come first (a stranger learns nothing about states),
/// then the state, then the action's own rules. One function per action (execute and
/// resume share theirs), each reading like that action's row of a table.
pub fn decide(f: &Facts<'_>, action: ChangeAction) -> Result<(), Denied> {
    use ChangeAction as A;
    let state = f.state.ok_or_else(|| Denied {
        action,
        reason: Reason::UnknownState,
        state: f.state,
        message: "the change's stored state is not one countersign knows".into(),
    })?;
    match action {
        A::Edit => edit(f, state),
        A::Resolve => resolve(f, state),
        A::Submit => submit(f, state),
        A::SignRequester => sign_requester(f, state),
        A::SignImplementer => sign_implementer(f, state),
        A::SignReviewer => sign_reviewer(f, state),
        A::Reject => reject(f, state),
        A::Cancel => cancel(f, state),
        A::Comment => comment(f),
        A::Execute | A::Resume => run(f, state, action),
        A::Continue => continue_paused(f, state),
        A::Pause => pause(f, state),
        A::SkipWave => skip_wave(f, state),
        A::SkipDrifted => skip_drifted(f, state),
        A::RetryFailed => retry_failed(f, state),
        A::Schedule => schedule(f, state),
        A::Unschedule => unschedule(f, state),
        A::Abort => abort(f, state),
        A::Rollback => rollback(f, state),
        A::DraftNotice => draft_notice(f, state),
    }
}

/// Edit: the author, before execution.
fn edit(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Edit;
    if !f.is_author {
        return Err(who(
            Reason::NotAuthor,
            action,
            "only the author of a change can edit it".into(),
        ));
    }
    if !matches!(
        state,
        ChangeState::Draft | ChangeState::AwaitingSignoff | ChangeState::Approved
    ) {
        return Err(when(state, action));
    }
    Ok(())
}

/// Re-resolve: the change's people, before execution.
fn resolve(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Resolve;
    if !f.involved() {
        return Err(who(
            Reason::Forbidden,
            action,
            format!(
                "only the teams of the change ({}) can re-resolve it",
                f.teams()
            ),
        ));
    }
    if !matches!(
        state,
        ChangeState::Draft | ChangeState::AwaitingSignoff | ChangeState::Approved
    ) {
        return Err(when(state, action));
    }
    Ok(())
}

/// Submit: the author or the requesting team, a draft.
fn submit(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Submit;
    if !(f.is_author || f.in_requesting_team) {
        return Err(who(
            Reason::Forbidden,
            action,
            format!(
                "only the author or the requesting team `{}` can submit a change",
                f.requesting_team
            ),
        ));
    }
    if state != ChangeState::Draft {
        return Err(when(state, action));
    }
    Ok(())
}

/// The requester side: a member of the requesting team who is not in the implementing
/// team and never signed the implementer side, once per fingerprint.
fn sign_requester(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::SignRequester;
    if !f.in_requesting_team {
        return Err(who(
            Reason::NotInTeam,
            action,
            format!(
                "only members of team `{}` can sign the requester side",
                f.requesting_team
            ),
        ));
    }
    if f.in_implementing_team {
        return Err(who(Reason::SeparationOfDuties, action, format!("you are a member of the implementing team `{}`: a member of the implementing team never counts on the requester side", f.implementing_team)));
    }
    if let Some(other) = f.signed_other_side_than(action) {
        return Err(two_sides(action, other));
    }
    if state != ChangeState::AwaitingSignoff {
        return Err(when(state, action));
    }
    if f.signed_requester {
        return Err(refused(
            action,
            Reason::AlreadySigned,
            state,
            "you already signed the requester side for this fingerprint",
        ));
    }
    Ok(())
}

/// The implementer side: a member of the implementing team who is not the author and
/// never signed the requester side, once per fingerprint.
fn sign_implementer(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::SignImplementer;
    if !f.in_implementing_team {
        return Err(who(
            Reason::NotInTeam,
            action,
            format!(
                "only members of team `{}` can sign the implementer side",
                f.implementing_team
            ),
        ));
    }
    if f.is_author {
        return Err(who(
            Reason::SeparationOfDuties,
            action,
            "the author of a change cannot sign its implementer side".into(),
        ));
    }
    if let Some(other) = f.signed_other_side_than(action) {
        return Err(two_sides(action, other));
    }
    if state != ChangeState::AwaitingSignoff {
        return Err(when(state, action));
    }
    if f.signed_implementer {
        return Err(refused(
            action,
            Reason::AlreadySigned,
            state,
            "you already signed the implementer side for this fingerprint",
        ));
    }
    Ok(())
}

/// "You already signed the requester side of this change; …".
fn two_sides(action: ChangeAction, other: &str) -> Denied {
    who(
        Reason::SeparationOfDuties,
        action,
        format!("you already signed the {other} side of this change; one person never counts on two sides"),
    )
}

/// The third side (a tier's `also` team): a member of that team who is in neither of the
/// change's teams, is not its author and never signed another side, once per
/// fingerprint, while the policy as resolved now names a third side.
fn sign_reviewer(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::SignReviewer;
    let Some(team) = f.reviewing_team else {
        return Err(who(
            Reason::NoThirdSide,
            action,
            "this change's sign-off policy names no third side: only the requester and implementer sides sign it".into(),
        ));
    };
    if !f.in_reviewing_team {
        return Err(who(
            Reason::NotInTeam,
            action,
            format!("only members of team `{team}` can sign the third side"),
        ));
    }
    if f.in_either_team() {
        return Err(who(
            Reason::SeparationOfDuties,
            action,
            format!(
                "you are a member of {}, a team of the change: a third side is signed by people outside both teams",
                if f.in_requesting_team { f.requesting_team } else { f.implementing_team }
            ),
        ));
    }
    if f.is_author {
        return Err(who(
            Reason::SeparationOfDuties,
            action,
            "the author of a change cannot sign its third side".into(),
        ));
    }
    if let Some(other) = f.signed_other_side_than(action) {
        return Err(two_sides(action, other));
    }
    if state != ChangeState::AwaitingSignoff {
        return Err(when(state, action));
    }
    if f.signed_reviewer {
        return Err(refused(
            action,
            Reason::AlreadySigned,
            state,
            "you already signed the third side for this fingerprint",
        ));
    }
    Ok(())
}

/// Reject: any signing team (the third side too) or an admin, while sign-off is asked or
/// given.
fn reject(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Reject;
    if !(f.is_admin || f.any_side()) {
        return Err(who(
            Reason::Forbidden,
            action,
            format!(
                "only the teams that sign the change ({}) or an admin can reject it",
                f.signing_teams()
            ),
        ));
    }
    if !matches!(state, ChangeState::AwaitingSignoff | ChangeState::Approved) {
        return Err(when(state, action));
    }
    Ok(())
}

/// Cancel: the author, the requesting team or an admin, while the change is open.
fn cancel(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::Cancel;
    if !(f.is_admin || f.is_author || f.in_requesting_team) {
        return Err(who(
            Reason::Forbidden,
            action,
            format!(
                "only the author, the requesting team `{}` or an admin can cancel a change",
                f.requesting_team
            ),
        ));
    }
    if !state.is_open() {
        return Err(when(state, action));
    }
    Ok(())
}

/// Comment: the change's people (the third side too), in any state.
fn comment(f: &Facts<'_>) -> Result<(), Denied> {
    if !(f.involved() || f.in_reviewing_team) {
        return Err(who(
            Reason::Forbidden,
            ChangeAction::Comment,
            format!(
                "only the teams of the change ({}) can comment on it",
                f.signing_teams()
            ),
        ));
    }
    Ok(())
}

/// Customer notices have their own rules (two people, one of each team), decided in one
/// place: the same decision the notices service and page use.
fn draft_notice(f: &Facts<'_>, state: ChangeState) -> Result<(), Denied> {
    let action = ChangeAction::DraftNotice;
    let nf = notice::Facts {
        change_state: state,
        requesting_team: f.requesting_team,
        implementing_team: f.implementing_team,
        // Drafting depends on the person's teams and the state only.
        person_id: 0,
        in_requesting_team: f.in_requesting_team,
        in_implementing_team: f.in_implementing_team,
        last_sent_at: None,
        now: chrono::NaiveDateTime::default(),
    };
    notice::decide(&nf, notice::NoticeAction::Draft).map_err(|r| {
        // A person refusal says nothing about the state.
        let about_state = r.kind() != notice::RefusalKind::Forbidden;
        Denied {
            action,
            state: about_state.then_some(state),
            message: r.to_string(),
            reason: Reason::Notice(r),
        }
    })
}

/// Every action the person may take on the change now.
pub fn allowed(f: &Facts<'_>) -> BTreeSet<ChangeAction> {
    ChangeAction::ALL
        .into_iter()
        .filter(|a| decide(f, *a).is_ok())
        .collect()
}

#[cfg(test)]
mod tests;
