//! The undo plan a signer sees beside the blast radius (issue #12): whether one more
//! change can undo this one, for how long, and what it would do — or why nothing can.

use serde::{Deserialize, Serialize};

use super::ResolvedTarget;
use crate::domain::schema::{Effect, Operation, Schema};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoPlan {
    /// One rollback restores every target.
    pub reversible: bool,
    /// A soft delete stays restorable this many days after it runs (retention); `None`:
    /// no limit, or nothing to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// One sentence, e.g. "Fully reversible for 30 days after execution (retention): one
    /// rollback restores all 883 App installations".
    pub text: String,
}

/// The undo plan of `targets` (a resolution of `op`, cascaded descendants included).
pub fn undo_plan(schema: &Schema, op: &Operation, targets: &[ResolvedTarget]) -> UndoPlan {
    let n = targets.iter().filter(|t| t.kind == op.target).count();
    let below = targets.len() - n;
    let what = match schema.kind(&op.target) {
        Some(k) if n == 1 => format!("the 1 {}", k.label),
        Some(k) => format!("all {n} {}", k.plural),
        None => format!("all {n} targets"),
    };
    let with_below = if below > 0 {
        format!(" and the {below} entities below them")
    } else {
        String::new()
    };
    let (reversible, retention_days, text) = match op.effect {
        Effect::SoftDelete => (
            true,
            Some(op.retention_days),
            format!(
                "Fully reversible for {} days after execution (retention): one rollback restores {what}{with_below}",
                op.retention_days
            ),
        ),
        Effect::SetAttributes => (
            true,
            None,
            format!("Fully reversible: one rollback sets {what} back to their previous values"),
        ),
        Effect::Restore => (
            true,
            None,
            format!("Reversible: one rollback soft-deletes {what} again"),
        ),
        Effect::Purge => (
            false,
            None,
            format!("Irreversible: purging erases {what} permanently; no rollback can bring them back"),
        ),
        Effect::Webhook if op.is_reversible() => (
            true,
            None,
            format!(
                "Reversible: one rollback calls {} for the {} that were done",
                schema
                    .webhook_called(op, true)
                    .map_or(op.undo.as_deref().unwrap_or_default(), |u| u.label.as_str()),
                done_of(schema, op, n)
            ),
        ),
        Effect::Webhook => (
            false,
            None,
            format!(
                "Irreversible: the external executor acts on {what} and the schema gives it no undo; a rollback cannot call it back"
            ),
        ),
    };
    debug_assert_eq!(reversible, op.is_reversible(), "{}", op.name);
    UndoPlan {
        reversible,
        retention_days,
        text,
    }
}

/// "3 App installations", "1 App installation": the targets a webhook rollback calls for.
fn done_of(schema: &Schema, op: &Operation, n: usize) -> String {
    match schema.kind(&op.target) {
        Some(k) if n == 1 => format!("1 {}", k.label),
        Some(k) => format!("{n} {}", k.plural),
        None => format!("{n} targets"),
    }
}
