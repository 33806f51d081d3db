//! Which events reach chat and event hooks.

use super::Event;
use crate::domain::calendar::ProposalAction;

impl Event {
    /// The chat and event hook delivery this event causes, if any. A lockdown is announced
    /// once, by its confirmation (not once per change it pauses).
    pub fn hook_kind(&self) -> Option<crate::domain::hook::HookKind> {
        use crate::domain::hook::HookKind as K;
        Some(match self {
            Event::Submitted { .. } => K::NeedsSignoff,
            Event::Signed { .. } => K::Signed,
            Event::Approved { .. } => K::Approved,
            Event::SignoffsStale(_) | Event::SignoffsExpired { .. } => K::Stale,
            Event::Rejected { .. } => K::Rejected,
            Event::Cancelled { .. } => K::Cancelled,
            Event::ExecutionStarted { .. } => K::ExecutionStarted,
            Event::ExecutionHalted { .. }
            | Event::ExecutionPaused { .. }
            | Event::ExecutionPausedByOperator { .. }
            | Event::StartUnscheduled { refused: true, .. } => K::ExecutionHalted,
            Event::ExecutionFinished { .. } | Event::ExecutionAborted { .. } => {
                K::ExecutionFinished
            }
            Event::RollbackCreated { .. } => K::RollbackCreated,
            Event::CalendarConfirmed {
                calendar_action, ..
            } => match calendar_action {
                ProposalAction::CreateFreeze
                | ProposalAction::EditFreeze
                | ProposalAction::LiftFreeze => K::Freeze,
                ProposalAction::DeclareLockdown | ProposalAction::LiftLockdown => K::Lockdown,
            },
            _ => return None,
        })
    }
}
