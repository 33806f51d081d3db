//! The change page's forms, one route each: submit, sign, edit the text, resolve again,
//! reject, cancel, comment, execute, resume, abort, roll back. Each checks the form's
//! CSRF token, makes one service call and goes back to the change page with its message.

use actix_web::web;
use serde::Deserialize;

use super::{see_other, CsrfForm, PageResult};
use crate::db::DbConn;
use crate::domain::{Schema, Side};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::{self as svc, change_id, EditChange, SignRequest};
use crate::service::execution::{self as exe, ExecuteRequest, RollbackRequest};
use crate::service::views::number;
use crate::service::CurrentUser;
use crate::web::session::WebUser;
use crate::web::{run_as, State};

/// What every form here does: check the CSRF token, read the change's number, run `f` on
/// the blocking pool (it answers the change to show: this one, or the rollback it
/// created) and go back to that change's page with the message `done`.
async fn act<F>(state: &State, w: &WebUser, raw: &str, csrf: &str, done: &str, f: F) -> PageResult
where
    F: FnOnce(&mut DbConn, &Schema, &CurrentUser, i64) -> AppResult<i64> + Send + 'static,
{
    w.check_csrf(csrf)?;
    let id = change_id(raw)?;
    let target = run_as(state, w.user.clone(), move |conn, schema, user| {
        f(conn, schema, user, id)
    })
    .await?;
    Ok(see_other(&format!(
        "/changes/{}?done={done}",
        number(target)
    )))
}

/// An operator control with an optional reason from its form, then the change page with
/// `done`; wakes this process's worker (a retry has work for it).
async fn control(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
    done: &str,
    action: exe::Control,
) -> PageResult {
    let f = form.into_inner();
    let r = act(
        &state,
        &w,
        &path,
        &f.csrf,
        done,
        move |conn, schema, user, id| action(conn, schema, user, id, given(&f.reason)).map(|_| id),
    )
    .await?;
    state.wake.notify();
    Ok(r)
}

#[derive(Deserialize)]
pub struct ExceptionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    freeze: i64,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    comment: String,
}

/// `POST /changes/{id}/freeze-exception`: a soft freeze's exception.
pub async fn freeze_exception(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ExceptionForm>,
) -> PageResult {
    let f = form.into_inner();
    let req = crate::service::calendar::ExceptionRequest {
        freeze: f.freeze,
        fingerprint: f.fingerprint,
        comment: f.comment,
    };
    act(
        &state,
        &w,
        &path,
        &f.csrf,
        "saved",
        move |conn, schema, user, id| {
            crate::service::calendar::give_exception(conn, schema, user, id, &req).map(|_| id)
        },
    )
    .await
}

/// An optional reason: blank is none.
fn given(reason: &str) -> Option<&str> {
    Some(reason).filter(|r| !r.trim().is_empty())
}

/// `POST /changes/{id}/submit`
pub async fn submit_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    act(
        &state,
        &w,
        &path,
        &form.csrf,
        "submitted",
        |conn, schema, user, id| svc::submit(conn, schema, user, id).map(|_| id),
    )
    .await
}

#[derive(Deserialize)]
pub struct SignForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    side: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    confirm_count: String,
    #[serde(default)]
    text_hash: String,
    /// Signing from the difference view: the fingerprint the difference was against.
    #[serde(default)]
    replaces: String,
}

/// `POST /changes/{id}/sign`
pub async fn sign_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<SignForm>,
) -> PageResult {
    let f = form.into_inner();
    let csrf = f.csrf.clone();
    act(
        &state,
        &w,
        &path,
        &csrf,
        "signed",
        move |conn, schema, user, id| {
            let Some(side) = Side::parse(&f.side) else {
                return Err(AppError::new(ErrorCode::InvalidSide, "Choose a side."));
            };
            let confirm = match f.confirm_count.trim() {
                "" => None,
                n => Some(n.parse::<u64>().map_err(|_| {
                    AppError::new(
                        ErrorCode::ConfirmCountMismatch,
                        format!("`{n}` is not a number: type the number of targets"),
                    )
                })?),
            };
            let request = SignRequest {
                side,
                fingerprint: f.fingerprint,
                comment: f.comment,
                confirm_count: confirm,
                text_hash: Some(f.text_hash).filter(|h| !h.trim().is_empty()),
                replaces: Some(f.replaces).filter(|r| !r.trim().is_empty()),
            };
            svc::sign(conn, schema, user, id, request).map(|_| id)
        },
    )
    .await
}

#[derive(Deserialize)]
pub struct TextForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    rationale: String,
}

/// `POST /changes/{id}/edit_text`: the title and rationale of a change whose targets are
/// fixed (a rollback, a bulk restore); other changes use the edit page.
pub async fn edit_text(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<TextForm>,
) -> PageResult {
    let f = form.into_inner();
    let csrf = f.csrf.clone();
    act(
        &state,
        &w,
        &path,
        &csrf,
        "saved",
        move |conn, schema, user, id| {
            let edit = EditChange {
                title: Some(f.title),
                rationale: Some(f.rationale),
                ..Default::default()
            };
            svc::edit(conn, schema, user, id, edit).map(|_| id)
        },
    )
    .await
}

/// `POST /changes/{id}/resolve`
pub async fn resolve_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    act(
        &state,
        &w,
        &path,
        &form.csrf,
        "resolved",
        |conn, schema, user, id| svc::reresolve(conn, schema, user, id).map(|_| id),
    )
    .await
}

#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /changes/{id}/reject`
pub async fn reject_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    let f = form.into_inner();
    act(
        &state,
        &w,
        &path,
        &f.csrf,
        "rejected",
        move |conn, schema, user, id| svc::reject(conn, schema, user, id, &f.reason).map(|_| id),
    )
    .await
}

/// `POST /changes/{id}/cancel`
pub async fn cancel_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    let f = form.into_inner();
    act(
        &state,
        &w,
        &path,
        &f.csrf,
        "cancelled",
        move |conn, schema, user, id| {
            svc::cancel(conn, schema, user, id, given(&f.reason)).map(|_| id)
        },
    )
    .await
}

#[derive(Deserialize)]
pub struct CommentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
}

/// `POST /changes/{id}/comment`
pub async fn comment_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<CommentForm>,
) -> PageResult {
    let f = form.into_inner();
    act(
        &state,
        &w,
        &path,
        &f.csrf,
        "commented",
        move |conn, schema, user, id| svc::comment(conn, schema, user, id, &f.body).map(|_| id),
    )
    .await
}

#[derive(Deserialize)]
pub struct ExecuteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    fingerprint: String,
}

/// `POST /changes/{id}/execute`: starts it and wakes this process's worker.
pub async fn execute_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ExecuteForm>,
) -> PageResult {
    let f = form.into_inner();
    let csrf = f.csrf.clone();
    let request = ExecuteRequest {
        fingerprint: f.fingerprint,
    };
    let r = act(
        &state,
        &w,
        &path,
        &csrf,
        "executing",
        move |conn, schema, user, id| exe::execute(conn, schema, user, id, &request).map(|_| id),
    )
    .await?;
    state.wake.notify();
    Ok(r)
}

/// `POST /changes/{id}/resume`: and wakes this process's worker.
pub async fn resume_execution(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    let r = act(
        &state,
        &w,
        &path,
        &form.csrf,
        "resumed",
        |conn, schema, user, id| exe::resume(conn, schema, user, id).map(|_| id),
    )
    .await?;
    state.wake.notify();
    Ok(r)
}

/// `POST /changes/{id}/continue`: past a manual gate; wakes this process's worker.
pub async fn continue_execution(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    let r = act(
        &state,
        &w,
        &path,
        &form.csrf,
        "continued",
        |conn, schema, user, id| exe::continue_paused(conn, schema, user, id).map(|_| id),
    )
    .await?;
    state.wake.notify();
    Ok(r)
}

/// `POST /changes/{id}/abort`
pub async fn abort_execution(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    control(state, w, path, form, "aborted", exe::abort).await
}

/// `POST /changes/{id}/pause`
pub async fn pause_execution(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    control(state, w, path, form, "paused", exe::pause).await
}

/// `POST /changes/{id}/skip-wave`
pub async fn skip_wave(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    control(state, w, path, form, "wave_skipped", exe::skip_wave).await
}

/// `POST /changes/{id}/skip-drifted`
pub async fn skip_drifted(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    control(state, w, path, form, "drifted_skipped", exe::skip_drifted).await
}

/// `POST /changes/{id}/retry-failed`
pub async fn retry_failed(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    control(state, w, path, form, "retried", exe::retry_failed).await
}

#[derive(Debug, Deserialize)]
pub struct ScheduleForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    fingerprint: String,
    /// `window`, `now` or `time` (then `time`, a `datetime-local` value in UTC).
    #[serde(default)]
    at: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    wait_for_conflicts: Option<String>,
}

/// The `at` of a schedule request from the form: a `datetime-local` value is UTC.
fn schedule_at(f: &ScheduleForm) -> String {
    match f.at.as_str() {
        "time" => {
            let t = f.time.trim();
            match chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M") {
                Ok(n) => format!("{}Z", n.format("%Y-%m-%dT%H:%M:%S")),
                Err(_) => t.chars().take(64).collect(),
            }
        }
        other => other.chars().take(16).collect(),
    }
}

/// `POST /changes/{id}/schedule`
pub async fn schedule_start(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ScheduleForm>,
) -> PageResult {
    let f = form.into_inner();
    let request = exe::ScheduleRequest {
        fingerprint: f.fingerprint.clone(),
        at: Some(schedule_at(&f)),
        wait_for_conflicts: f.wait_for_conflicts.is_some(),
    };
    act(
        &state,
        &w,
        &path,
        &f.csrf,
        "scheduled",
        move |conn, schema, user, id| exe::schedule(conn, schema, user, id, &request).map(|_| id),
    )
    .await
}

/// `POST /changes/{id}/unschedule`
pub async fn unschedule_start(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    let f = form.into_inner();
    act(
        &state,
        &w,
        &path,
        &f.csrf,
        "unscheduled",
        move |conn, schema, user, id| {
            exe::unschedule(conn, schema, user, id, given(&f.reason)).map(|_| id)
        },
    )
    .await
}

/// `POST /changes/{id}/rollback`: to the rollback it creates.
pub async fn rollback_change(
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    act(
        &state,
        &w,
        &path,
        &form.csrf,
        "rollback",
        |conn, schema, user, id| exe::rollback(conn, schema, user, id, &RollbackRequest::default()),
    )
    .await
}
