//! Change use cases. Every mutation runs in one write transaction that first takes the
//! change's row lock ([`db::changes::lock`]), so edits, re-resolutions and sign-offs of
//! one change are serialised on both backends and the rules below cannot be raced:
//!
//! * a sign-off is recorded only for the change's current fingerprint;
//! * a fingerprint change marks every earlier sign-off stale and un-approves;
//! * the change becomes `approved` in the transaction that records the last sign-off
//!   needed, counting distinct people, nobody on both sides, the author never as
//!   implementer.
//!
//! One module per use case: `create` and `edit` (what the author writes),
//! `resolve` (re-resolution and submission), `decide` (sign, reject, cancel,
//! comment), `view`, `targets` and `effects` (what readers see); `permissions` (who may do
//! what) and `shared` (checks and facts of a stored change) sit below them.

mod create;
mod decide;
pub mod difference;
mod edit;
mod effects;
mod permissions;
mod resolve;
mod shared;
mod targets;
mod view;

pub(crate) use create::{check_teams, draft_row, ChangeHead};
pub use create::{create, CreateChange};
pub use decide::{cancel, comment, reject, sign, SignRequest};
pub use edit::{edit, EditChange};
pub use effects::{planned_effects, target_effects, Effects, TargetRef};
pub use permissions::allowed_actions;
pub(super) use permissions::{facts_with, records_with};
pub(crate) use permissions::{records, require};
pub(crate) use resolve::{point, reresolve_locked};
pub use resolve::{reresolve, reresolve_for_schema, submit, ResolveOutcome};
pub use shared::{
    change_id, check_params, check_selector, effect_for, policy_for, text_hash_of, tier_of,
};
pub(crate) use shared::{check_rationale, check_title, involved, locked, move_state, submitted};
pub use targets::{targets_csv, write_targets_csv};
pub use view::{view, view_for};
