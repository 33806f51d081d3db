//! The change page and its targets as CSV (its forms are `actions`).

use actix_web::http::header::CONTENT_TYPE;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::lists::Activity;
use super::{html, layout, Layout, PageResult};
use crate::db::{audit, changes as repo};
use crate::domain::access::ChangeAction;
use crate::domain::execution::ItemStatus;
use crate::domain::resolution::short_fingerprint;
use crate::domain::{ExecState, Side};
use crate::error::AppError;
use crate::service::changes::{self as svc, change_id};
use crate::service::execution::{self as exe, ExecutionView};
use crate::service::views::{number, ChangeView, SideStatus};
use crate::web::session::WebUser;
use crate::web::{run_as, State};

// ---- the change page ------------------------------------------------------------------

pub struct SignoffLine {
    pub who: String,
    pub fp: String,
    pub stale: bool,
    /// Why it does not count (stale list or text, signer left the team).
    pub why: String,
    pub comment: String,
    pub at: String,
    /// It expired (shown struck through with `why`).
    pub expired: bool,
    /// When a counting sign-off expires ("2026-12-04 12:00"; empty: never).
    pub expires: String,
    /// Given from the difference view: what it was given ("3 targets added, 1 removed
    /// since a1b2c3d4").
    pub difference: Option<String>,
}

pub struct SidePanel {
    pub side: &'static str,
    pub label: &'static str,
    pub team: String,
    pub required: u32,
    pub current: u32,
    pub missing: u32,
    pub signoffs: Vec<SignoffLine>,
    pub can_sign: bool,
}

pub struct WaveRow {
    pub n: usize,
    pub size: u64,
    pub done: u64,
    pub failed: u64,
    pub skipped: u64,
    pub pct_done: i64,
    pub pct_failed: i64,
    pub pct_skipped: i64,
    /// "started 10:00:01 · finished 10:00:02 · baked until 10:10:02 · healthy · continued
    /// 10:12:40" (UTC), from the audit trail.
    pub timeline: String,
}

/// A wave's timeline in words.
fn timeline_words(t: &crate::service::execution::WaveTimeline) -> String {
    let hms = |d: chrono::NaiveDateTime| d.format("%H:%M:%S").to_string();
    let mut parts: Vec<String> = Vec::new();
    if let Some(d) = t.started_at {
        parts.push(format!("started {}", hms(d)));
    }
    if let Some(d) = t.finished_at {
        parts.push(format!("finished {}", hms(d)));
    }
    if let Some(d) = t.baked_until {
        parts.push(format!("baked until {}", hms(d)));
    }
    match (t.healthy, &t.health_answer) {
        (Some(true), _) => parts.push("health check: healthy".into()),
        (Some(false), Some(a)) => parts.push(format!("health check failed: {a}")),
        _ => {}
    }
    if let Some(d) = t.continued_at {
        parts.push(format!("let go on {}", hms(d)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{} UTC", parts.join(" · "))
    }
}

#[derive(Template)]
#[template(path = "change.html")]
pub(crate) struct ChangePage {
    pub(crate) l: Layout,
    /// The freezes its window overlaps, and what blocks it now (open changes).
    pub(crate) freezes: Vec<String>,
    /// The soft freeze this person may give an exception for (id, name).
    pub(crate) exception_offer: Option<(i64, String)>,
    pub(crate) v: ChangeView,
    pub(crate) effect_words: String,
    pub(crate) destructive: bool,
    pub(crate) fp_short: String,
    pub(crate) fp_full: String,
    pub(crate) sides: Vec<SidePanel>,
    pub(crate) targets: Vec<TargetRow>,
    pub(crate) target_total: i64,
    pub(crate) q: String,
    pub(crate) shown_from: i64,
    pub(crate) shown_to: i64,
    pub(crate) next_offset: Option<i64>,
    /// The status the targets are filtered by (`""`: all).
    pub(crate) status: String,
    /// The statuses the filter offers, the chosen one marked.
    pub(crate) statuses: Vec<(&'static str, bool)>,
    pub(crate) prev_offset: Option<i64>,
    pub(crate) comments: Vec<(String, String, String)>,
    pub(crate) events: Vec<Activity>,
    pub(crate) exec: Option<ExecutionView>,
    pub(crate) waves: Vec<WaveRow>,
    pub(crate) running: bool,
    /// The operation asks a health endpoint between waves.
    pub(crate) health_check: bool,
    /// Exactly the actions the service allows this person now (`domain::access`).
    pub(crate) can: Allowed,
    /// Targets fixed by what it undoes or restores: the browser edits only its text.
    pub(crate) fixed_targets: bool,
    pub(crate) params: String,
    /// This person may download the evidence bundle (`service::evidence::may_take`).
    pub(crate) evidence: bool,
}

/// One row of a target table (the change page's, the new-change preview's).
pub struct TargetRow {
    pub kind: String,
    pub id: String,
    pub name: String,
    pub scope: String,
    /// What happens to it ("soft-deleted; purged after 2027-01-01 unless restored").
    pub happens: String,
    /// `applies`, `done`, `skipped`, `fails`, `failed` (its CSS class).
    pub outcome: &'static str,
}

impl TargetRow {
    pub fn new(
        kind: String,
        id: String,
        name: String,
        scope: String,
        effect: Option<&crate::domain::effect::TargetEffect>,
    ) -> TargetRow {
        TargetRow {
            kind,
            id,
            name,
            scope,
            happens: effect.map(|e| e.text.clone()).unwrap_or_default(),
            outcome: effect.map(|e| e.outcome.as_str()).unwrap_or("applies"),
        }
    }
}

/// The allowed actions of a change page, for the template.
pub struct Allowed(Vec<ChangeAction>);

impl Allowed {
    pub fn has(&self, action: &str) -> bool {
        self.0.iter().any(|a| a.as_str() == action)
    }
}

#[derive(Deserialize)]
pub struct ChangeQuery {
    pub(crate) q: Option<String>,
    pub(crate) offset: Option<i64>,
    /// Only the targets whose execution item has this status.
    pub(crate) status: Option<String>,
}

/// `?q=&status=` of the targets' search (for `targets.csv`).
#[derive(Debug, Deserialize)]
pub struct CsvQuery {
    pub(crate) q: Option<String>,
    pub(crate) status: Option<String>,
}

pub(crate) fn pct(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        0
    } else {
        (part * 100 + whole / 2) / whole
    }
}

/// One side's sign-off panel: its team, the counts, the sign-offs, whether this person may sign.
fn side_panel(
    v: &ChangeView,
    can: &Allowed,
    side: Side,
    label: &'static str,
    st: &SideStatus,
) -> SidePanel {
    SidePanel {
        side: side.as_str(),
        label,
        team: st.team.clone(),
        required: st.required,
        current: st.current,
        missing: st.missing,
        signoffs: v
            .signoffs
            .iter()
            .filter(|s| s.side == side)
            .map(|s| SignoffLine {
                who: s.by.name.clone(),
                fp: short_fingerprint(&s.fingerprint),
                stale: !s.counts,
                why: s.why_not.clone().unwrap_or_default(),
                comment: s.comment.clone(),
                at: s.at.format("%Y-%m-%d %H:%M").to_string(),
                expired: s.expired && !s.stale,
                expires: s
                    .expires_at
                    .filter(|_| s.counts)
                    .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default(),
                difference: s.difference.as_ref().map(|d| {
                    format!(
                        "{} since {}",
                        d.text(),
                        short_fingerprint(&d.previous_fingerprint)
                    )
                }),
            })
            .collect(),
        can_sign: can.has(&format!("sign_{side}")),
    }
}

/// An execution's waves as progress bars.
fn wave_rows(e: &ExecutionView) -> Vec<WaveRow> {
    e.waves
        .iter()
        .enumerate()
        .map(|(i, wv)| WaveRow {
            n: i + 1,
            size: wv.size,
            done: wv.done,
            failed: wv.failed,
            skipped: wv.skipped,
            pct_done: pct(wv.done as i64, wv.size as i64),
            pct_failed: pct(wv.failed as i64, wv.size as i64),
            pct_skipped: pct(wv.skipped as i64, wv.size as i64),
            timeline: e.timeline.get(i).map(timeline_words).unwrap_or_default(),
        })
        .collect()
}

/// What the calendar says about an open change: the freezes its window overlaps, and the
/// freeze or lockdown that would block its execution now.
fn calendar_notes(
    conn: &mut crate::db::DbConn,
    schema: &crate::domain::Schema,
    c: &crate::db::models::Change,
) -> Result<Vec<String>, AppError> {
    use crate::domain::ChangeState as S;
    if !matches!(
        c.state,
        S::Draft | S::AwaitingSignoff | S::Approved | S::Executing | S::Halted
    ) {
        return Ok(vec![]);
    }
    let all = crate::service::calendar::freezes(conn)?;
    let mut notes: Vec<String> = crate::service::calendar::marks(&all, c)
        .into_iter()
        .map(|m| format!("Its window overlaps the freeze {m}."))
        .collect();
    if c.state == S::Approved {
        if let Some(b) = crate::service::calendar::blocking(conn, schema, c, crate::db::now())? {
            notes.push(format!("It cannot run now: {}.", b.describe()));
        }
    }
    Ok(notes)
}

pub async fn change(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    q: web::Query<ChangeQuery>,
) -> PageResult {
    let id = change_id(&path)?;
    let search = q.q.clone().filter(|s| !s.trim().is_empty());
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000_000);
    let s2 = search.clone();
    let status = crate::service::execution::item_status(q.status.as_deref())?;
    let data = run_as(&state, w.user.clone(), move |conn, schema, viewer| {
        crate::db::snapshot(conn, |conn| {
            let v = svc::view_for(conn, schema, viewer, id)?;
            let (total, rows) = repo::targets_page(conn, id, s2.as_deref(), status, offset, 50)?;
            let c =
                repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
            let refs: Vec<svc::TargetRef<'_>> = rows.iter().map(svc::TargetRef::from).collect();
            let sets = svc::target_effects(conn, schema, &c, &refs)?;
            let comments = repo::comments(conn, id)?;
            let events = audit::for_change(conn, id)?;
            let exec = crate::db::exec::for_change(conn, id)?
                .map(|_| exe::progress(conn, id))
                .transpose()?;
            let health_check = schema
                .operation(&c.operation)
                .is_some_and(|o| o.between_waves.health_check.is_some());
            let freezes = calendar_notes(conn, schema, &c)?;
            let offer = crate::service::calendar::offer(conn, schema, viewer, &c)?;
            let freezes = (freezes, offer);
            Ok((
                v,
                total,
                rows,
                sets,
                comments,
                events,
                (exec, health_check, freezes),
            ))
        })
    })
    .await;
    let (v, total, rows, sets, comments, events, (exec, health_check, freezes)) = data?;
    let can = Allowed(v.allowed_actions.clone());
    let current = v.fingerprint.clone().unwrap_or_default();
    let mut sides = vec![
        side_panel(
            &v,
            &can,
            Side::Requester,
            "Requesting team",
            &v.requester_side,
        ),
        side_panel(
            &v,
            &can,
            Side::Implementer,
            "Implementing team",
            &v.implementer_side,
        ),
    ];
    if let Some(r) = &v.reviewer_side {
        sides.push(side_panel(&v, &can, Side::Reviewer, "Third side", r));
    }
    let exec_state = exec.as_ref().map(|e| e.state);
    let waves = exec.as_ref().map(wave_rows).unwrap_or_default();
    let (freezes, exception_offer) = freezes;
    let page = ChangePage {
        freezes,
        exception_offer,
        l: layout(&req, &state, &w).await,
        effect_words: v.operation.effect_text.clone(),
        destructive: v.operation.destructive,
        fp_short: v
            .fingerprint
            .as_deref()
            .map(short_fingerprint)
            .unwrap_or_default(),
        fp_full: current.clone(),
        sides,
        targets: rows
            .into_iter()
            .map(|t| {
                let effect = sets.get(&t.entity_id);
                TargetRow::new(t.kind, t.entity_id, t.name, t.scope_path, effect)
            })
            .collect(),
        shown_from: if total == 0 { 0 } else { offset + 1 },
        shown_to: (offset + 50).min(total),
        target_total: total,
        q: search.unwrap_or_default(),
        status: status.map(|s| s.as_str().to_string()).unwrap_or_default(),
        statuses: ItemStatus::VALUES
            .iter()
            .map(|s| (s.as_str(), Some(*s) == status))
            .collect(),
        next_offset: (offset + 50 < total).then_some(offset + 50),
        prev_offset: (offset > 0).then(|| (offset - 50).max(0)),
        comments: comments
            .into_iter()
            .map(|(c, _email, name)| {
                (
                    name,
                    c.created_at.format("%Y-%m-%d %H:%M").to_string(),
                    c.body,
                )
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| Activity {
                at: e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                actor: e.actor,
                action: e.action.replace('_', " "),
                change: String::new(),
            })
            .collect(),
        // The page refreshes itself while the execution runs or bakes.
        running: matches!(exec_state, Some(ExecState::Running | ExecState::Baking)),
        health_check,
        can,
        fixed_targets: v.rollback_of.is_some() || v.targets.get("restore").is_some(),
        params: if v.params.as_object().is_some_and(|o| !o.is_empty()) {
            v.params.to_string()
        } else {
            String::new()
        },
        waves,
        exec,
        evidence: crate::service::evidence::may_take(&w.user, &v),
        v,
    };
    Ok(html(StatusCode::OK, page.render()))
}

/// `GET /changes/{id}/targets.csv` (for the signed-in only).
pub async fn change_targets_csv(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    q: web::Query<CsvQuery>,
) -> PageResult {
    let id = change_id(&path)?;
    let q = q.into_inner();
    let status = crate::service::execution::item_status(q.status.as_deref())?;
    let search = q.q.filter(|s| !s.trim().is_empty());
    let rows = run_as(&state, w.user.clone(), move |conn, schema, _| {
        crate::service::changes::targets_csv(conn, schema, id, search.as_deref(), status, 0)
    })
    .await?;
    let out = rows.1;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}-targets.csv\"", number(id)),
        ))
        .body(out))
}

/// `GET /changes/{id}/evidence.tar.gz`: the evidence bundle the API gives, for a session.
pub async fn change_evidence(state: State, w: WebUser, path: web::Path<String>) -> PageResult {
    let id = change_id(&path)?;
    Ok(crate::web::download::evidence(&state, w.user.clone(), id).await?)
}

/// `GET /changes/{id}/difference.csv`: what changed since the list was signed.
pub async fn change_difference_csv(
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> PageResult {
    let id = change_id(&path)?;
    let out = run_as(&state, w.user.clone(), move |conn, _, _| {
        crate::service::changes::difference::csv(conn, id)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}-difference.csv\"", number(id)),
        ))
        .body(out))
}
