//! What an execution did so far: its state, counts per wave, the first failed and skipped
//! items, and a page of its items.

use serde::Serialize;

use crate::db::{changes as change_repo, exec as repo, DbConn};
use crate::domain::execution::{ExecState, ItemStatus, Wave};
use crate::domain::{ChangeState, Effect};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::views::number;

#[derive(Debug, Serialize)]
pub struct WaveView {
    pub number: u32,
    pub size: u64,
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
    pub pending: u64,
    /// Held back by the drift check before the wave (not run).
    pub drifted: u64,
}

#[derive(Debug, Serialize)]
pub struct ItemView {
    pub position: i64,
    pub wave: i64,
    pub kind: String,
    pub id: String,
    pub status: ItemStatus,
    pub attempts: i64,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ExecutionView {
    pub change: String,
    pub change_id: i64,
    pub change_state: ChangeState,
    pub execution_id: i64,
    pub state: ExecState,
    pub effect: Effect,
    pub fingerprint: String,
    pub total: i64,
    pub done: i64,
    pub failed: i64,
    pub skipped: i64,
    pub pending: i64,
    /// Targets the drift check held back: deleted, moved or changed since approval.
    pub drifted: i64,
    pub current_wave: i64,
    pub waves: Vec<WaveView>,
    pub halt_reason: Option<String>,
    /// `baking`: when the bake after the last wave ends (then the health check, if any).
    pub bake_until: Option<chrono::NaiveDateTime>,
    /// `baking`: seconds left until then (0 once due).
    pub bake_seconds_left: Option<i64>,
    /// `paused`: why it waits for an implementer (a manual gate).
    pub pause_reason: Option<String>,
    /// `baking` or `paused`: the wave that runs next.
    pub next_wave: Option<i64>,
    /// Each wave: started (wave 1), finished, baked until, health check, continued.
    pub timeline: Vec<WaveTimeline>,
    /// What the health endpoint said after each wave so far, oldest first.
    pub health_checks: Vec<HealthCheckView>,
    /// The first failed items, with their errors.
    pub failures: Vec<ItemView>,
    pub skipped_items: Vec<ItemView>,
    /// The first drifted items, each with why.
    pub drifted_items: Vec<ItemView>,
    pub started_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<chrono::NaiveDateTime>,
    pub rolled_back_by: Option<String>,
}

/// One wave's timeline, from the audit trail: when it finished, the bake after it, what
/// the health check said and when someone let it go on (continue or resume).
#[derive(Debug, Default, Serialize)]
pub struct WaveTimeline {
    pub wave: u32,
    /// Wave 1: when the execution started.
    pub started_at: Option<chrono::NaiveDateTime>,
    pub finished_at: Option<chrono::NaiveDateTime>,
    /// The bake after it ended (or ends) then.
    pub baked_until: Option<chrono::NaiveDateTime>,
    pub healthy: Option<bool>,
    pub health_answer: Option<String>,
    /// Someone continued or resumed the execution after this wave.
    pub continued_at: Option<chrono::NaiveDateTime>,
}

fn slot(out: &mut [WaveTimeline], wave: u32) -> Option<&mut WaveTimeline> {
    (wave as usize).checked_sub(1).and_then(|i| out.get_mut(i))
}

/// The waves' timelines from a change's execution events (oldest first).
fn timeline(events: &[crate::db::models::AuditEvent], waves: usize) -> Vec<WaveTimeline> {
    use crate::domain::event::Event as E;
    let mut out: Vec<WaveTimeline> = (1..=waves as u32)
        .map(|wave| WaveTimeline {
            wave,
            ..WaveTimeline::default()
        })
        .collect();
    for a in events {
        let Some(e) = a.event() else { continue };
        match e {
            E::ExecutionStarted { .. } => {
                if let Some(t) = slot(&mut out, 1) {
                    t.started_at = Some(a.at);
                }
            }
            E::WaveCompleted { wave, .. } => {
                if let Some(t) = slot(&mut out, wave) {
                    t.finished_at = Some(a.at);
                }
            }
            E::ExecutionBaking { wave, until } => {
                if let Some(t) = slot(&mut out, wave) {
                    t.baked_until = Some(until);
                }
            }
            E::HealthChecked {
                wave,
                healthy,
                answer,
            } => {
                if let Some(t) = slot(&mut out, wave) {
                    t.healthy = Some(healthy);
                    t.health_answer = Some(answer);
                }
            }
            E::ExecutionContinued { next_wave, .. } | E::ExecutionResumed { next_wave, .. } => {
                if let Some(t) = slot(&mut out, next_wave.saturating_sub(1)) {
                    t.continued_at = Some(a.at);
                }
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Serialize)]
pub struct HealthCheckView {
    pub wave: u32,
    pub healthy: bool,
    pub answer: String,
    pub at: chrono::NaiveDateTime,
}

fn item_view(i: crate::db::models::ExecutionItem) -> ItemView {
    ItemView {
        position: i.position,
        wave: i.wave,
        kind: i.kind,
        id: i.entity_id,
        status: i.status,
        attempts: i.attempts,
        error: i.error,
    }
}

/// Progress of a change's execution.
pub fn progress(conn: &mut DbConn, id: i64) -> AppResult<ExecutionView> {
    crate::db::snapshot(conn, |conn| {
        let c =
            change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let e = repo::for_change(conn, id)?.ok_or_else(|| {
            AppError::new(
                ErrorCode::NotFound,
                format!("{} has not been executed", number(id)),
            )
        })?;
        let waves: Vec<Wave> = serde_json::from_str(&e.waves).unwrap_or_default();
        let counts = repo::wave_counts(conn, e.id)?;
        let of = |w: u32, status: ItemStatus| {
            counts
                .iter()
                .filter(|(cw, s, _)| *cw == i64::from(w) && *s == status)
                .map(|(_, _, n)| *n as u64)
                .sum::<u64>()
        };
        let wave_views: Vec<WaveView> = waves
            .iter()
            .map(|w| WaveView {
                number: w.number,
                size: w.len(),
                done: of(w.number, ItemStatus::Done),
                failed: of(w.number, ItemStatus::Failed),
                skipped: of(w.number, ItemStatus::Skipped),
                pending: of(w.number, ItemStatus::Pending),
                drifted: of(w.number, ItemStatus::Drifted),
            })
            .collect();
        let pending = wave_views.iter().map(|w| w.pending as i64).sum();
        let drifted = wave_views.iter().map(|w| w.drifted as i64).sum();
        Ok(ExecutionView {
            change: number(id),
            change_id: id,
            change_state: c.state,
            execution_id: e.id,
            state: e.state,
            effect: e.effect,
            fingerprint: e.fingerprint.clone(),
            total: e.total,
            done: e.done,
            failed: e.failed,
            skipped: e.skipped,
            pending,
            drifted,
            current_wave: e.current_wave.min(waves.len() as i64),
            waves: wave_views,
            halt_reason: e.halt_reason.clone(),
            bake_until: e.bake_until.filter(|_| e.state == ExecState::Baking),
            bake_seconds_left: e
                .bake_until
                .filter(|_| e.state == ExecState::Baking)
                .map(|t| (t - crate::db::now()).num_seconds().max(0)),
            pause_reason: e
                .pause_reason
                .clone()
                .filter(|_| e.state == ExecState::Paused),
            next_wave: matches!(e.state, ExecState::Baking | ExecState::Paused)
                .then_some(e.current_wave),
            timeline: timeline(
                &crate::db::audit::for_change_actions(
                    conn,
                    id,
                    &[
                        "execution_started",
                        "wave_completed",
                        "execution_baking",
                        "health_checked",
                        "execution_continued",
                        "execution_resumed",
                    ],
                )?,
                waves.len(),
            ),
            health_checks: crate::db::audit::for_change_action(conn, id, "health_checked")?
                .into_iter()
                .filter_map(|a| match a.event() {
                    Some(crate::domain::event::Event::HealthChecked {
                        wave,
                        healthy,
                        answer,
                    }) => Some(HealthCheckView {
                        wave,
                        healthy,
                        answer,
                        at: a.at,
                    }),
                    _ => None,
                })
                .collect(),
            failures: repo::items_with_status(conn, e.id, ItemStatus::Failed, 100)?
                .into_iter()
                .map(item_view)
                .collect(),
            skipped_items: repo::items_with_status(conn, e.id, ItemStatus::Skipped, 100)?
                .into_iter()
                .map(item_view)
                .collect(),
            drifted_items: repo::items_with_status(conn, e.id, ItemStatus::Drifted, 100)?
                .into_iter()
                .map(item_view)
                .collect(),
            started_at: e.started_at,
            updated_at: e.updated_at,
            finished_at: e.finished_at,
            lease_owner: e.lease_owner.clone(),
            lease_expires_at: e.lease_expires_at,
            rolled_back_by: c.rolled_back_by.map(number),
        })
    })
}

/// An item status from a query (`status=failed`); `None` or empty: every status.
pub fn item_status(s: Option<&str>) -> AppResult<Option<ItemStatus>> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            ItemStatus::parse(s).ok_or_else(|| {
                AppError::new(
                    ErrorCode::InvalidStatus,
                    format!(
                        "status must be pending, done, failed, skipped or drifted, not `{}`",
                        crate::domain::lines::clip(s)
                    ),
                )
            })
        })
        .transpose()
}

/// A page of a change's execution items (by position), optionally of one status; with the
/// number of items that match.
pub fn items(
    conn: &mut DbConn,
    id: i64,
    status: Option<&str>,
    offset: i64,
    limit: i64,
) -> AppResult<(i64, Vec<ItemView>)> {
    let status = item_status(status)?;
    let e = repo::for_change(conn, id)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::NotFound,
            format!("{} has not been executed", number(id)),
        )
    })?;
    let (total, rows) = repo::items(conn, e.id, status, offset, limit)?;
    Ok((total, rows.into_iter().map(item_view).collect()))
}
