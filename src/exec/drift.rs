//! The drift check before each wave (issue #13). Before the first batch of a wave, its
//! pending targets are read again in the fenced transaction that decides: each must be in
//! a state the effect acts on, under its signed scope path, and unchanged by anyone else
//! since the first sign-off on what runs (`domain::drift`). Drifted targets are not run: they are
//! marked `drifted` with the reason and the execution halts, naming them; an implementer
//! skips them (`skip-drifted`) and resumes, or aborts. A resume checks them again.

use std::collections::BTreeSet;

use super::{fence_batch, halt, waves_of, Ctx, Step};
use crate::db::models::Execution;
use crate::db::{exec as repo, write_tx, DbConn};
use crate::domain::drift::{self, Drift, Signed};
use crate::domain::execution::ExecState;
use crate::domain::resolution::{scope, usable_states};
use crate::domain::Effect;
use crate::error::AppResult;

/// Targets read per query round (bounds the memory a wave of 100,000 needs).
const PAGE: i64 = 5_000;

/// Most drifted targets held in memory for the reason (all are marked on their items).
const KEPT: usize = drift::NAMED_IN_REASON;

/// Does the current wave still need its drift check?
pub(super) fn due(e: &Execution) -> bool {
    e.state == ExecState::Running
        && e.drift_checked_wave < e.current_wave
        && (e.current_wave as usize) <= waves_of(e).len()
}

/// Check the current wave; `Continue` when it may run, `Stop` when it halted.
pub(super) fn check(ctx: &Ctx, conn: &mut DbConn, exec_id: i64) -> AppResult<Step> {
    write_tx(conn, |conn| {
        let Some((e, c)) = fence_batch(ctx, conn, exec_id)? else {
            return Ok(Step::Stop);
        };
        if !due(&e) {
            return Ok(Step::Continue);
        }
        let wave = e.current_wave;
        // Since the first sign-off on what runs (then the approval; old rows: the start).
        let since = repo::first_signed(conn, c.id, &e.fingerprint)?
            .or(c.approved_at)
            .unwrap_or(e.started_at);
        // A restore to a point may take active entities back too: any state will do (a
        // state someone else changed since approval is still a change, below).
        let usable = match e.effect {
            Effect::Restore => &[],
            other => usable_states(other),
        };
        let (mut checked, mut count) = (0usize, 0usize);
        let mut kept: Vec<Drift> = Vec::new();
        let mut after = -1;
        loop {
            let page = repo::pending_targets(conn, e.id, c.id, wave, after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.0;
            checked += page.len();
            let signed: Vec<Signed<'_>> = page
                .iter()
                .map(|(position, kind, id, path)| Signed {
                    position: *position,
                    kind,
                    id,
                    scope_path: path,
                })
                .collect();
            let targets: Vec<&str> = signed.iter().map(|t| t.id).collect();
            let mut wanted: BTreeSet<&str> = targets.iter().copied().collect();
            for t in &signed {
                wanted.extend(scope::segments(t.scope_path));
            }
            let wanted: Vec<&str> = wanted.into_iter().collect();
            let now = repo::entities_now(conn, &wanted)?;
            let changed = repo::changed_since(conn, &targets, since, c.id)?;
            let drifted = drift::check(&signed, &now, &changed, usable);
            if drifted.is_empty() {
                continue;
            }
            let marks: Vec<(i64, String)> = drifted
                .iter()
                .map(|d| (d.position, d.why.clone()))
                .collect();
            count += repo::mark_drifted(conn, e.id, &marks)?;
            kept.extend(drifted.into_iter().take(KEPT.saturating_sub(kept.len())));
        }
        if count == 0 {
            repo::set_drift_checked(conn, e.id, wave)?;
            return Ok(Step::Continue);
        }
        let reason = drift::reason(wave as u32, waves_of(&e).len(), &kept, count, checked);
        tracing::warn!(wave, drifted = count, "execution halted: targets drifted");
        halt(conn, &e, &c, (e.done as u64, e.failed as u64), reason, None)?;
        Ok(Step::Stop)
    })
}
