//! The access decision, rule by rule.

use super::*;
use std::collections::BTreeSet;

use ChangeAction as A;

fn facts(state: ChangeState) -> Facts<'static> {
    Facts {
        state: Some(state),
        requesting_team: "app-owners",
        implementing_team: "platform-ops",
        operation_known: true,
        reversible: true,
        in_window: true,
        approval_holds: true,
        ..Facts::default()
    }
}

#[test]
fn strangers_may_do_nothing() {
    for &s in ChangeState::VALUES {
        assert!(allowed(&facts(s)).is_empty(), "{s}");
    }
}

#[test]
fn a_member_of_both_teams_never_signs_the_requester_side() {
    let mut f = facts(ChangeState::AwaitingSignoff);
    f.in_requesting_team = true;
    f.in_implementing_team = true;
    let a = allowed(&f);
    assert!(!a.contains(&A::SignRequester));
    assert!(a.contains(&A::SignImplementer));
    let e = decide(&f, A::SignRequester).unwrap_err();
    assert_eq!(e.reason, Reason::SeparationOfDuties);
    assert!(e.message.contains("platform-ops"), "{}", e.message);
}

#[test]
fn the_author_never_signs_the_implementer_side() {
    let mut f = facts(ChangeState::AwaitingSignoff);
    f.is_author = true;
    f.in_implementing_team = true;
    assert_eq!(
        decide(&f, A::SignImplementer).unwrap_err().reason,
        Reason::SeparationOfDuties
    );
}

#[test]
fn rollbacks_are_not_rolled_back_and_need_executed_targets() {
    let mut f = facts(ChangeState::Completed);
    f.in_requesting_team = true;
    f.executed_targets = 3;
    assert!(allowed(&f).contains(&A::Rollback));
    f.is_rollback = true;
    assert_eq!(
        decide(&f, A::Rollback).unwrap_err().reason,
        Reason::NotReversible
    );
    f.is_rollback = false;
    f.executed_targets = 0;
    assert_eq!(
        decide(&f, A::Rollback).unwrap_err().reason,
        Reason::NothingToRollBack
    );
}

#[test]
fn notices_only_once_approved() {
    let mut f = facts(ChangeState::Draft);
    f.in_requesting_team = true;
    assert!(decide(&f, A::DraftNotice).is_err());
    for s in [
        ChangeState::Cancelled,
        ChangeState::Rejected,
        ChangeState::AwaitingSignoff,
    ] {
        f.state = Some(s);
        assert!(decide(&f, A::DraftNotice).is_err(), "{s}");
    }
    f.state = Some(ChangeState::Approved);
    assert!(decide(&f, A::DraftNotice).is_ok());
    // Someone in both teams would leave nobody to approve their notice.
    f.in_implementing_team = true;
    let e = decide(&f, A::DraftNotice).unwrap_err();
    assert!(matches!(
        e.reason,
        Reason::Notice(notice::NoticeRefusal::InBothTeams { .. })
    ));
    assert_eq!(e.state, None);
}

#[test]
fn state_refusals_name_the_state_person_refusals_do_not() {
    let mut f = facts(ChangeState::Completed);
    f.is_author = true;
    let e = decide(&f, A::Edit).unwrap_err();
    assert_eq!(e.reason, Reason::IllegalTransition);
    assert_eq!(e.state, Some(ChangeState::Completed));
    assert_eq!(e.message, "cannot edit a change that is completed");
    f.is_author = false;
    let e = decide(&f, A::Edit).unwrap_err();
    assert_eq!((e.reason, e.state), (Reason::NotAuthor, None));
}

/// A member of the third side only (`security`, named by the change's tier).
fn reviewer(state: ChangeState) -> Facts<'static> {
    Facts {
        reviewing_team: Some("security"),
        in_reviewing_team: true,
        ..facts(state)
    }
}

#[test]
fn the_third_side_signs_comments_and_rejects_and_nothing_else() {
    use ChangeState as S;
    for &s in ChangeState::VALUES {
        let want: BTreeSet<ChangeAction> = match s {
            S::AwaitingSignoff => [A::SignReviewer, A::Reject, A::Comment].into(),
            S::Approved => [A::Reject, A::Comment].into(),
            _ => [A::Comment].into(),
        };
        assert_eq!(allowed(&reviewer(s)), want, "{s}");
    }
    // The queue shows it to nobody else: a requester or an implementer never signs it.
    let mut f = facts(S::AwaitingSignoff);
    f.reviewing_team = Some("security");
    f.in_requesting_team = true;
    assert!(!allowed(&f).contains(&A::SignReviewer));
    assert_eq!(
        decide(&f, A::SignReviewer).unwrap_err().reason,
        Reason::NotInTeam
    );
}

#[test]
fn the_third_side_is_signed_by_people_outside_both_teams() {
    let s = ChangeState::AwaitingSignoff;
    let refused = |f: &Facts<'_>| decide(f, A::SignReviewer).unwrap_err();
    // No third side in the policy as resolved now: nobody signs as reviewer, not even an
    // admin who is in the team.
    let mut f = reviewer(s);
    f.reviewing_team = None;
    f.in_reviewing_team = false;
    f.is_admin = true;
    assert_eq!(refused(&f).reason, Reason::NoThirdSide);
    let mut f = reviewer(s);
    f.in_requesting_team = true;
    let e = refused(&f);
    assert_eq!(e.reason, Reason::SeparationOfDuties);
    assert!(e.message.contains("app-owners"), "{}", e.message);
    let mut f = reviewer(s);
    f.in_implementing_team = true;
    assert!(refused(&f).message.contains("platform-ops"));
    let mut f = reviewer(s);
    f.is_author = true;
    assert_eq!(refused(&f).reason, Reason::SeparationOfDuties);
    let mut f = reviewer(s);
    f.ever_signed_requester = true;
    let e = refused(&f);
    assert_eq!(e.reason, Reason::SeparationOfDuties);
    assert!(e.message.contains("requester side"), "{}", e.message);
    let mut f = reviewer(s);
    f.signed_reviewer = true;
    f.ever_signed_reviewer = true;
    assert_eq!(refused(&f).reason, Reason::AlreadySigned);
}

#[test]
fn a_third_side_signer_never_signs_another_side() {
    let mut f = facts(ChangeState::AwaitingSignoff);
    f.reviewing_team = Some("security");
    f.in_requesting_team = true;
    f.ever_signed_reviewer = true;
    let e = decide(&f, A::SignRequester).unwrap_err();
    assert_eq!(e.reason, Reason::SeparationOfDuties);
    assert!(e.message.contains("third side"), "{}", e.message);
    f.in_requesting_team = false;
    f.in_implementing_team = true;
    assert_eq!(
        decide(&f, A::SignImplementer).unwrap_err().reason,
        Reason::SeparationOfDuties
    );
}

#[test]
fn failed_targets_are_retried_by_implementers_until_a_rollback_exists() {
    use ChangeState as S;
    for s in [S::Halted, S::PartiallyFailed, S::Failed] {
        let mut f = facts(s);
        f.in_implementing_team = true;
        f.failed_targets = 2;
        assert!(allowed(&f).contains(&A::RetryFailed), "{s}");
        f.failed_targets = 0;
        assert_eq!(
            decide(&f, A::RetryFailed).unwrap_err().reason,
            Reason::ExecutionState,
            "{s}: nothing failed"
        );
        f.failed_targets = 2;
        f.has_open_rollback = true;
        assert_eq!(
            decide(&f, A::RetryFailed).unwrap_err().reason,
            Reason::AlreadyRolledBack
        );
        f.has_open_rollback = false;
        f.in_window = false;
        assert_eq!(
            decide(&f, A::RetryFailed).unwrap_err().reason,
            Reason::OutsideWindow
        );
        f.in_window = true;
        f.in_implementing_team = false;
        f.in_requesting_team = true;
        assert_eq!(
            decide(&f, A::RetryFailed).unwrap_err().reason,
            Reason::NotImplementer
        );
    }
    for s in [S::Completed, S::Aborted, S::Executing, S::Approved] {
        let mut f = facts(s);
        f.in_implementing_team = true;
        f.failed_targets = 2;
        assert!(!allowed(&f).contains(&A::RetryFailed), "{s}");
    }
    // An ended execution starts again only with sign-offs that still count.
    let mut f = facts(S::PartiallyFailed);
    f.in_implementing_team = true;
    f.failed_targets = 1;
    f.approval_holds = false;
    assert_eq!(
        decide(&f, A::RetryFailed).unwrap_err().reason,
        Reason::SignoffsNoLongerCount
    );
    f.state = Some(S::Halted);
    assert!(
        allowed(&f).contains(&A::RetryFailed),
        "a halted one goes on"
    );
    // The calendar: a lockdown stops every retry, a freeze the retry of an ended one.
    use crate::domain::calendar::BlockKind as B;
    for (s, block, ok) in [
        (S::Halted, B::HardFreeze, true),
        (S::Halted, B::Lockdown, false),
        (S::PartiallyFailed, B::HardFreeze, false),
        (S::Failed, B::SoftFreeze, false),
    ] {
        let mut f = facts(s);
        f.in_implementing_team = true;
        f.failed_targets = 1;
        f.blocked_by = Some(block);
        assert_eq!(allowed(&f).contains(&A::RetryFailed), ok, "{s} {block:?}");
    }
}

#[test]
fn drifted_targets_are_skipped_only_while_halted_with_some() {
    let mut f = facts(ChangeState::Halted);
    f.in_implementing_team = true;
    assert!(!allowed(&f).contains(&A::SkipDrifted));
    f.drifted_targets = 3;
    assert!(allowed(&f).contains(&A::SkipDrifted));
    f.is_admin = true;
    f.in_implementing_team = false;
    assert!(
        !allowed(&f).contains(&A::SkipDrifted),
        "admins abort, not skip"
    );
}

#[test]
fn a_start_is_scheduled_once_by_implementers_and_called_off_by_them_or_an_admin() {
    let mut f = facts(ChangeState::Approved);
    f.in_implementing_team = true;
    assert!(allowed(&f).contains(&A::Schedule));
    assert!(!allowed(&f).contains(&A::Unschedule));
    f.approval_holds = false;
    assert_eq!(
        decide(&f, A::Schedule).unwrap_err().reason,
        Reason::SignoffsNoLongerCount
    );
    f.approval_holds = true;
    f.scheduled = true;
    assert!(!allowed(&f).contains(&A::Schedule));
    assert!(allowed(&f).contains(&A::Unschedule));
    let mut admin = facts(ChangeState::Approved);
    admin.is_admin = true;
    admin.scheduled = true;
    assert!(allowed(&admin).contains(&A::Unschedule));
    assert!(!allowed(&admin).contains(&A::Schedule));
}

#[test]
fn the_calendar_blocks_starting_and_a_lockdown_going_on() {
    use crate::domain::calendar::BlockKind as B;
    let mut f = facts(ChangeState::Approved);
    f.in_implementing_team = true;
    assert!(allowed(&f).contains(&A::Execute));
    for k in [B::HardFreeze, B::SoftFreeze, B::Lockdown] {
        f.blocked_by = Some(k);
        assert_eq!(
            decide(&f, A::Execute).unwrap_err().reason,
            Reason::Blocked(k)
        );
    }
    // A running execution: a lockdown stops continue (pause and abort stay).
    let mut f = facts(ChangeState::Executing);
    f.in_implementing_team = true;
    f.execution = Some(ExecState::Paused);
    assert!(allowed(&f).contains(&A::Continue));
    f.blocked_by = Some(B::Lockdown);
    let a = allowed(&f);
    assert!(
        !a.contains(&A::Continue) && a.contains(&A::Abort) && a.contains(&A::SkipWave),
        "{a:?}"
    );
    let mut f = facts(ChangeState::Halted);
    f.in_implementing_team = true;
    f.blocked_by = Some(B::Lockdown);
    assert_eq!(
        decide(&f, A::Resume).unwrap_err().reason,
        Reason::Blocked(B::Lockdown)
    );
}
