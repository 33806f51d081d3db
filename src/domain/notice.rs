//! Customer notices: who may draft one, approve it (the approval sends it) and discard it.
//! Anything that reaches customers takes two people, one from each team of the change
//! (DESIGN.md): a member of one team drafts, a member of the *other* team approves. This is
//! the one decision: the service calls it under the change's row lock before it writes, and
//! the notices page shows exactly the buttons it allows.

use chrono::{Duration, NaiveDateTime};
use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::change::ChangeState;
use super::text_enum::text_enum;

/// At most one notice is sent from a change within this many minutes.
pub const SEND_INTERVAL_MINUTES: i64 = 10;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum NoticeState {
    /// Written and previewed by one person; nothing sent.
    Draft,
    /// Approved by a member of the other team, and queued to every recipient.
    Sent,
    /// Withdrawn by its drafter or declined by a would-be approver; never sent.
    Discarded,
}

text_enum!(NoticeState, "notice state", {
    Draft => "draft",
    Sent => "sent",
    Discarded => "discarded",
});

/// Customers hear about a change only once both teams approved it: never about a draft, a
/// change awaiting sign-off, a rejected or a cancelled one.
pub fn change_allows_notices(s: ChangeState) -> bool {
    matches!(
        s,
        ChangeState::Approved
            | ChangeState::Executing
            | ChangeState::Completed
            | ChangeState::PartiallyFailed
            | ChangeState::Failed
            | ChangeState::Halted
            | ChangeState::Aborted
    )
}

/// The person acting and the change, read in one transaction.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub change_state: ChangeState,
    pub requesting_team: &'a str,
    pub implementing_team: &'a str,
    pub person_id: i64,
    pub in_requesting_team: bool,
    pub in_implementing_team: bool,
    /// When a notice was last sent from this change.
    pub last_sent_at: Option<NaiveDateTime>,
    pub now: NaiveDateTime,
}

/// A recorded notice, as the decision sees it.
#[derive(Debug, Clone)]
pub struct Drafted<'a> {
    pub state: NoticeState,
    pub drafted_by: i64,
    /// Who drafted it, for messages (a name or an address).
    pub drafter: &'a str,
    /// The drafter is (now) or was (when drafting) in the requesting team.
    pub drafter_in_requesting_team: bool,
    pub drafter_in_implementing_team: bool,
}

/// What the person wants to do.
#[derive(Debug, Clone, Copy)]
pub enum NoticeAction<'a> {
    /// Draft (or preview) a new notice.
    Draft,
    /// Approve a draft, which sends it.
    Approve(&'a Drafted<'a>),
    /// Withdraw (the drafter) or decline (a would-be approver) a draft.
    Discard(&'a Drafted<'a>),
}

/// How a refusal answers: never for this person, not now, or not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    Forbidden,
    Conflict,
    TooSoon,
}

/// Why a notice action is refused: the rule (`error.rs` names its API `code`) and a
/// sentence that names the rule, the team and the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeRefusal {
    #[error("you are in neither team of this change (`{requesting}`, `{implementing}`): a customer notice is drafted by a member of one of them and approved by a member of the other")]
    NotInTeams {
        requesting: String,
        implementing: String,
    },
    #[error("you are in both teams of this change (`{requesting}` and `{implementing}`), so nobody would be left to approve your notice: a notice is drafted in one team and approved by the other; ask a member of only one of them to draft it")]
    InBothTeams {
        requesting: String,
        implementing: String,
    },
    #[error("customers are told about a change only once both teams approved it (approved, executing or finished); this change is {}", .state.as_str())]
    ChangeNotApproved { state: ChangeState },
    #[error("this notice is {state}: only a draft can be approved or discarded")]
    NotDraft { state: NoticeState },
    #[error("you drafted this notice: a second person, a member of `{team}`, must approve it")]
    OwnNotice { team: String },
    #[error("{drafter} drafted this notice for `{drafter_team}`: it must be approved by a member of the other team, `{team}`, and you are not in it")]
    SameTeam {
        drafter: String,
        drafter_team: String,
        team: String,
    },
    #[error("{drafter}, who drafted this notice, is now in both teams of the change, so nobody is left to approve it: discard it and draft it again from one team")]
    DrafterInBothTeams { drafter: String },
    #[error("a customer notice was sent from this change at {} UTC and at most one is sent every {SEND_INTERVAL_MINUTES} minutes: the next can be sent at {} UTC", .last_sent_at.format("%Y-%m-%d %H:%M:%S"), .next_at.format("%Y-%m-%d %H:%M:%S"))]
    RateLimited {
        last_sent_at: NaiveDateTime,
        next_at: NaiveDateTime,
    },
    #[error("only {drafter}, who drafted this notice, or a member of `{team}`, who could approve it, can discard it")]
    CannotDiscard { drafter: String, team: String },
}

impl NoticeRefusal {
    pub fn kind(&self) -> RefusalKind {
        match self {
            NoticeRefusal::NotInTeams { .. }
            | NoticeRefusal::InBothTeams { .. }
            | NoticeRefusal::OwnNotice { .. }
            | NoticeRefusal::SameTeam { .. }
            | NoticeRefusal::CannotDiscard { .. } => RefusalKind::Forbidden,
            NoticeRefusal::ChangeNotApproved { .. }
            | NoticeRefusal::NotDraft { .. }
            | NoticeRefusal::DrafterInBothTeams { .. } => RefusalKind::Conflict,
            NoticeRefusal::RateLimited { .. } => RefusalKind::TooSoon,
        }
    }
}

/// The team a person drafts for: their one team among the change's two (`None` when they
/// are in neither or in both, and may not draft).
pub fn drafting_team<'a>(f: &Facts<'a>) -> Option<&'a str> {
    match (f.in_requesting_team, f.in_implementing_team) {
        (true, false) => Some(f.requesting_team),
        (false, true) => Some(f.implementing_team),
        _ => None,
    }
}

/// The team that approves what the person drafts: the change's other team.
pub fn approving_team<'a>(f: &Facts<'a>) -> Option<&'a str> {
    drafting_team(f).map(|t| {
        if t == f.requesting_team {
            f.implementing_team
        } else {
            f.requesting_team
        }
    })
}

/// The change's teams the drafter is not in: the approver must be in one of them.
fn approving_teams<'a>(f: &Facts<'a>, d: &Drafted<'_>) -> Vec<&'a str> {
    let mut v = Vec::new();
    if !d.drafter_in_requesting_team {
        v.push(f.requesting_team);
    }
    if !d.drafter_in_implementing_team {
        v.push(f.implementing_team);
    }
    v
}

/// The team(s) whose members may approve `d`, in words (for messages and pages).
pub fn approver_team(f: &Facts<'_>, d: &Drafted<'_>) -> String {
    let teams = approving_teams(f, d);
    if teams.is_empty() {
        "nobody (the drafter is in both teams)".into()
    } else {
        teams.join("` or `")
    }
}

/// May the person approve `d` as far as who they are goes (not counting states)?
fn approver_check(f: &Facts<'_>, d: &Drafted<'_>) -> Result<(), NoticeRefusal> {
    if f.person_id == d.drafted_by {
        return Err(NoticeRefusal::OwnNotice {
            team: approver_team(f, d),
        });
    }
    let eligible = (f.in_requesting_team && !d.drafter_in_requesting_team)
        || (f.in_implementing_team && !d.drafter_in_implementing_team);
    if eligible {
        return Ok(());
    }
    if d.drafter_in_requesting_team && d.drafter_in_implementing_team {
        return Err(NoticeRefusal::DrafterInBothTeams {
            drafter: d.drafter.to_string(),
        });
    }
    let drafter_team = if d.drafter_in_requesting_team {
        f.requesting_team
    } else {
        f.implementing_team
    };
    Err(NoticeRefusal::SameTeam {
        drafter: d.drafter.to_string(),
        drafter_team: drafter_team.to_string(),
        team: approver_team(f, d),
    })
}

/// Decide one notice action. Who the person is comes first (the answer they can act on),
/// then the notice's and the change's state, then the send rate.
pub fn decide(f: &Facts<'_>, action: NoticeAction<'_>) -> Result<(), NoticeRefusal> {
    let not_in_teams = || NoticeRefusal::NotInTeams {
        requesting: f.requesting_team.to_string(),
        implementing: f.implementing_team.to_string(),
    };
    let in_a_team = f.in_requesting_team || f.in_implementing_team;
    match action {
        NoticeAction::Draft => {
            if !in_a_team {
                return Err(not_in_teams());
            }
            if drafting_team(f).is_none() {
                return Err(NoticeRefusal::InBothTeams {
                    requesting: f.requesting_team.to_string(),
                    implementing: f.implementing_team.to_string(),
                });
            }
            if !change_allows_notices(f.change_state) {
                return Err(NoticeRefusal::ChangeNotApproved {
                    state: f.change_state,
                });
            }
        }
        NoticeAction::Approve(d) => {
            if !in_a_team {
                return Err(not_in_teams());
            }
            approver_check(f, d)?;
            if d.state != NoticeState::Draft {
                return Err(NoticeRefusal::NotDraft { state: d.state });
            }
            if !change_allows_notices(f.change_state) {
                return Err(NoticeRefusal::ChangeNotApproved {
                    state: f.change_state,
                });
            }
            if let Some(next_at) = next_send_at(f) {
                return Err(NoticeRefusal::RateLimited {
                    last_sent_at: f.last_sent_at.unwrap_or(f.now),
                    next_at,
                });
            }
        }
        NoticeAction::Discard(d) => {
            // The drafter may always withdraw their own draft, even after leaving the team.
            if f.person_id != d.drafted_by && (!in_a_team || approver_check(f, d).is_err()) {
                return Err(NoticeRefusal::CannotDiscard {
                    drafter: d.drafter.to_string(),
                    team: approver_team(f, d),
                });
            }
            if d.state != NoticeState::Draft {
                return Err(NoticeRefusal::NotDraft { state: d.state });
            }
        }
    }
    Ok(())
}

/// When the next notice may be sent from the change, if not now.
pub fn next_send_at(f: &Facts<'_>) -> Option<NaiveDateTime> {
    let next = f.last_sent_at? + Duration::minutes(SEND_INTERVAL_MINUTES);
    (f.now < next).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_state_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(NoticeState::VALUES);
        assert_eq!(NoticeState::VALUES.len(), 3);
    }

    const ANA: i64 = 1; // app-owners (requesting)
    const BEN: i64 = 2; // app-owners
    const CARLA: i64 = 3; // platform-ops (implementing)
    const OLGA: i64 = 4; // no team

    fn t(min: i64) -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_800_000_000 + min * 60, 0)
            .unwrap()
            .naive_utc()
    }

    fn facts(person: i64, state: ChangeState) -> Facts<'static> {
        Facts {
            change_state: state,
            requesting_team: "app-owners",
            implementing_team: "platform-ops",
            person_id: person,
            in_requesting_team: matches!(person, ANA | BEN),
            in_implementing_team: person == CARLA,
            last_sent_at: None,
            now: t(0),
        }
    }

    fn drafted_by_ana() -> Drafted<'static> {
        Drafted {
            state: NoticeState::Draft,
            drafted_by: ANA,
            drafter: "Ana",
            drafter_in_requesting_team: true,
            drafter_in_implementing_team: false,
        }
    }

    #[test]
    fn drafting_needs_one_team_and_an_approved_change() {
        for &s in ChangeState::VALUES {
            let r = decide(&facts(ANA, s), NoticeAction::Draft);
            assert_eq!(r.is_ok(), change_allows_notices(s), "{s:?}");
        }
        for s in [
            ChangeState::Draft,
            ChangeState::AwaitingSignoff,
            ChangeState::Cancelled,
            ChangeState::Rejected,
        ] {
            let e = decide(&facts(ANA, s), NoticeAction::Draft).unwrap_err();
            assert!(matches!(e, NoticeRefusal::ChangeNotApproved { .. }));
            assert!(e.to_string().contains(s.as_str()), "{e}");
            assert_eq!(e.kind(), RefusalKind::Conflict);
        }
        let e = decide(&facts(OLGA, ChangeState::Completed), NoticeAction::Draft).unwrap_err();
        assert!(matches!(e, NoticeRefusal::NotInTeams { .. }));
        assert!(e.to_string().contains("`platform-ops`"), "{e}");
        let mut both = facts(CARLA, ChangeState::Completed);
        both.in_requesting_team = true;
        let e = decide(&both, NoticeAction::Draft).unwrap_err();
        assert!(matches!(e, NoticeRefusal::InBothTeams { .. }));
        assert_eq!(
            drafting_team(&facts(CARLA, ChangeState::Approved)),
            Some("platform-ops")
        );
    }

    #[test]
    fn only_a_member_of_the_other_team_approves() {
        let d = drafted_by_ana();
        let own = decide(
            &facts(ANA, ChangeState::Completed),
            NoticeAction::Approve(&d),
        );
        let own = own.unwrap_err();
        assert!(matches!(own, NoticeRefusal::OwnNotice { .. }));
        assert!(own.to_string().contains("`platform-ops`"), "{own}");
        let same = decide(
            &facts(BEN, ChangeState::Completed),
            NoticeAction::Approve(&d),
        );
        let same = same.unwrap_err();
        assert!(matches!(same, NoticeRefusal::SameTeam { .. }));
        assert!(
            same.to_string()
                .contains("Ana drafted this notice for `app-owners`"),
            "{same}"
        );
        assert!(matches!(
            decide(
                &facts(OLGA, ChangeState::Completed),
                NoticeAction::Approve(&d)
            )
            .unwrap_err(),
            NoticeRefusal::NotInTeams { .. }
        ));
        assert!(decide(
            &facts(CARLA, ChangeState::Completed),
            NoticeAction::Approve(&d)
        )
        .is_ok());
        // An approver in both teams is in one the drafter is not in.
        let mut both = facts(BEN, ChangeState::Completed);
        both.in_implementing_team = true;
        assert!(decide(&both, NoticeAction::Approve(&d)).is_ok());
        // A drafter who joined the other team since leaves nobody to approve.
        let mut d2 = drafted_by_ana();
        d2.drafter_in_implementing_team = true;
        assert!(matches!(
            decide(
                &facts(CARLA, ChangeState::Completed),
                NoticeAction::Approve(&d2)
            )
            .unwrap_err(),
            NoticeRefusal::DrafterInBothTeams { .. }
        ));
    }

    #[test]
    fn approval_needs_a_draft_an_approved_change_and_ten_quiet_minutes() {
        let mut d = drafted_by_ana();
        let mut f = facts(CARLA, ChangeState::Cancelled);
        assert!(matches!(
            decide(&f, NoticeAction::Approve(&d)).unwrap_err(),
            NoticeRefusal::ChangeNotApproved { .. }
        ));
        f.change_state = ChangeState::Executing;
        f.last_sent_at = Some(t(-3));
        let e = decide(&f, NoticeAction::Approve(&d)).unwrap_err();
        assert!(matches!(e, NoticeRefusal::RateLimited { .. }));
        assert_eq!(e.kind(), RefusalKind::TooSoon);
        assert_eq!(
            e,
            NoticeRefusal::RateLimited {
                last_sent_at: t(-3),
                next_at: t(7)
            }
        );
        assert!(e.to_string().contains("10 minutes"), "{e}");
        f.last_sent_at = Some(t(-10));
        assert!(decide(&f, NoticeAction::Approve(&d)).is_ok());
        d.state = NoticeState::Sent;
        assert!(matches!(
            decide(&f, NoticeAction::Approve(&d)).unwrap_err(),
            NoticeRefusal::NotDraft { .. }
        ));
    }

    #[test]
    fn the_drafter_or_a_would_be_approver_discards() {
        let d = drafted_by_ana();
        let mut ana = facts(ANA, ChangeState::Cancelled);
        assert!(decide(&ana, NoticeAction::Discard(&d)).is_ok());
        // Even after leaving the team.
        ana.in_requesting_team = false;
        assert!(decide(&ana, NoticeAction::Discard(&d)).is_ok());
        assert!(decide(
            &facts(CARLA, ChangeState::Completed),
            NoticeAction::Discard(&d)
        )
        .is_ok());
        for who in [BEN, OLGA] {
            let e = decide(
                &facts(who, ChangeState::Completed),
                NoticeAction::Discard(&d),
            )
            .unwrap_err();
            assert!(matches!(e, NoticeRefusal::CannotDiscard { .. }));
            assert!(e.to_string().contains("only Ana"), "{e}");
        }
        let sent = Drafted {
            state: NoticeState::Sent,
            ..drafted_by_ana()
        };
        assert!(matches!(
            decide(
                &facts(ANA, ChangeState::Completed),
                NoticeAction::Discard(&sent)
            )
            .unwrap_err(),
            NoticeRefusal::NotDraft { .. }
        ));
    }
}
