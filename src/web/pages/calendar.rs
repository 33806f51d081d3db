//! The change calendar page: a month view (a grid of weeks, Monday first) and a list view
//! of freezes and change windows, the lockdown, and — for admins — the forms that propose
//! and confirm calendar acts (a second admin confirms each). No JavaScript.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use serde::Deserialize;

use super::{html, layout, see_other, CsrfForm, Layout, PageResult};
use crate::domain::calendar::{FreezeSpec, Severity};
use crate::error::{AppError, ErrorCode};
use crate::service::calendar::{self as svc, CalendarState, CalendarView, ProposalRequest, Range};
use crate::web::session::WebUser;
use crate::web::{run_as, State};

pub struct DayItem {
    pub class: &'static str,
    pub text: String,
    pub link: String,
}

pub struct Day {
    pub date: String,
    pub day: u32,
    pub in_month: bool,
    pub today: bool,
    pub items: Vec<DayItem>,
}

pub struct ListItem {
    pub start: String,
    pub end: String,
    pub class: &'static str,
    pub what: String,
    pub link: String,
    pub note: String,
}

#[derive(Template)]
#[template(path = "calendar.html")]
pub(crate) struct CalendarPage {
    pub(crate) l: Layout,
    pub(crate) list_view: bool,
    pub(crate) title: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) prev: String,
    pub(crate) next: String,
    pub(crate) weeks: Vec<Vec<Day>>,
    pub(crate) items: Vec<ListItem>,
    pub(crate) truncated: bool,
    pub(crate) cal: CalendarState,
    pub(crate) admin: bool,
    pub(crate) me: String,
    pub(crate) feed_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    view: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// The flash message (read by the layout).
    #[allow(dead_code)]
    done: Option<String>,
}

fn day(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// The month view's range: the month `from` falls in (this month by default).
fn month_of(from: Option<&str>) -> Result<(NaiveDate, Range), AppError> {
    let r = Range::parse(from, None)?;
    let first = NaiveDate::from_ymd_opt(r.from.year(), r.from.month(), 1).expect("first");
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("next month");
    let range = Range::parse(
        Some(&first.format("%Y-%m-%d").to_string()),
        Some(&next.format("%Y-%m-%d").to_string()),
    )?;
    Ok((first, range))
}

fn build(v: &CalendarView, month: Option<NaiveDate>) -> (Vec<Vec<Day>>, Vec<ListItem>) {
    let mut items: Vec<(NaiveDateTime, NaiveDateTime, ListItem)> = Vec::new();
    for f in &v.freezes {
        let class = match f.severity {
            Severity::Hard => "freeze-hard",
            Severity::Soft => "freeze-soft",
        };
        let ops = if f.operations.is_empty() {
            "every operation".to_string()
        } else {
            f.operations.join(", ")
        };
        for o in &f.occurrences {
            items.push((
                o.start,
                o.end,
                ListItem {
                    start: day(o.start),
                    end: day(o.end),
                    class,
                    what: format!("Freeze ({}): {}", f.severity.as_str(), f.name),
                    link: String::new(),
                    note: format!("{ops} · {}", f.when),
                },
            ));
        }
    }
    for c in &v.changes {
        let s = c.not_before.unwrap_or(v.from);
        let e = c.not_after.unwrap_or(v.to);
        items.push((
            s,
            e,
            ListItem {
                start: c.not_before.map(day).unwrap_or_else(|| "—".into()),
                end: c.not_after.map(day).unwrap_or_else(|| "—".into()),
                class: "window",
                what: format!("{} {} ({})", c.change, c.title, c.state),
                link: format!("/changes/{}", c.change),
                note: if c.freezes.is_empty() {
                    c.operation.clone()
                } else {
                    format!("{} · overlaps {}", c.operation, c.freezes.join(", "))
                },
            },
        ));
    }
    items.sort_by_key(|(s, _, _)| *s);
    let mut weeks = Vec::new();
    if let Some(first) = month {
        let today = crate::db::now().date();
        let mut d = first - Duration::days(first.weekday().num_days_from_monday() as i64);
        loop {
            let mut week = Vec::new();
            for _ in 0..7 {
                let (ds, de) = (
                    d.and_hms_opt(0, 0, 0).expect("midnight"),
                    (d + Duration::days(1))
                        .and_hms_opt(0, 0, 0)
                        .expect("midnight"),
                );
                week.push(Day {
                    date: d.format("%Y-%m-%d").to_string(),
                    day: d.day(),
                    in_month: d.month() == first.month(),
                    today: d == today,
                    items: items
                        .iter()
                        .filter(|(s, e, _)| *s < de && *e > ds)
                        .take(6)
                        .map(|(_, _, i)| DayItem {
                            class: i.class,
                            text: i.what.clone(),
                            link: i.link.clone(),
                        })
                        .collect(),
                });
                d += Duration::days(1);
            }
            weeks.push(week);
            if d.month() != first.month() || weeks.len() >= 6 {
                break;
            }
        }
    }
    (weeks, items.into_iter().map(|(_, _, i)| i).collect())
}

async fn page(
    req: &HttpRequest,
    state: &State,
    w: &WebUser,
    q: &CalendarQuery,
    feed_url: Option<String>,
) -> PageResult {
    let list_view = q.view.as_deref() == Some("list");
    // Whatever the view, a bad range is refused (`invalid_range`).
    Range::parse(q.from.as_deref(), q.to.as_deref())?;
    let (month, range) = if list_view {
        (None, Range::parse(q.from.as_deref(), q.to.as_deref())?)
    } else {
        let (m, r) = month_of(q.from.as_deref())?;
        (Some(m), r)
    };
    let (v, cal) = run_as(state, w.user.clone(), move |conn, _, _| {
        Ok((svc::calendar(conn, range)?, svc::state(conn)?))
    })
    .await?;
    let (weeks, items) = build(&v, month);
    let (title, prev, next) = match month {
        Some(m) => {
            let p = m.checked_sub_months(chrono::Months::new(1)).expect("prev");
            let n = m.checked_add_months(chrono::Months::new(1)).expect("next");
            (
                m.format("%B %Y").to_string(),
                format!("/calendar?from={}", p.format("%Y-%m-%d")),
                format!("/calendar?from={}", n.format("%Y-%m-%d")),
            )
        }
        None => {
            let len = range.to - range.from;
            let f = |t: NaiveDateTime| t.format("%Y-%m-%d").to_string();
            (
                format!("{} to {}", f(range.from), f(range.to)),
                format!(
                    "/calendar?view=list&from={}&to={}",
                    f(range.from - len),
                    f(range.from)
                ),
                format!(
                    "/calendar?view=list&from={}&to={}",
                    f(range.to),
                    f(range.to + len)
                ),
            )
        }
    };
    let l = layout(req, state, w).await;
    let p = CalendarPage {
        l,
        list_view,
        title,
        from: range.from.format("%Y-%m-%d").to_string(),
        to: range.to.format("%Y-%m-%d").to_string(),
        prev,
        next,
        weeks,
        items,
        truncated: v.truncated,
        cal,
        admin: w.user.is_admin,
        me: w.user.email.clone(),
        feed_url,
    };
    Ok(html(StatusCode::OK, p.render()))
}

/// `GET /calendar?view=month|list&from=&to=`
pub async fn calendar_page(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<CalendarQuery>,
) -> PageResult {
    page(&req, &state, &w, &q, None).await
}

/// `POST /calendar/feed-token`: a new feed token, shown once on the page.
pub async fn new_feed_token(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<CsrfForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let base = state.config.mail.public_url.clone();
    let token = run_as(&state, w.user.clone(), |conn, _, user| {
        svc::feed_token(conn, user)
    })
    .await?;
    let url = format!("{}/calendar.ics?token={token}", base.trim_end_matches('/'));
    let q = CalendarQuery {
        view: None,
        from: None,
        to: None,
        done: None,
    };
    page(&req, &state, &w, &q, Some(url)).await
}

#[derive(Deserialize)]
pub struct FreezeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default)]
    recurrence: String,
    #[serde(default)]
    operations: String,
    #[serde(default)]
    reason: String,
}

/// The form's `datetime-local` (UTC) as a time.
fn form_time(field: &str, v: &str) -> Result<Option<NaiveDateTime>, AppError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
        .map(Some)
        .map_err(|_| {
            AppError::new(
                ErrorCode::InvalidFreeze,
                format!(
                    "{field}: `{}` is not a date and time",
                    crate::domain::lines::clip_to(v, 40)
                ),
            )
        })
}

async fn propose(state: &State, w: &WebUser, csrf: &str, req: ProposalRequest) -> PageResult {
    w.check_csrf(csrf)?;
    run_as(state, w.user.clone(), move |conn, schema, user| {
        svc::propose(conn, schema, user, req)
    })
    .await?;
    Ok(see_other("/calendar?done=proposed"))
}

/// The form's freeze.
fn spec_of(f: FreezeForm) -> Result<(String, FreezeSpec), AppError> {
    let severity = match f.severity.as_str() {
        "soft" => Severity::Soft,
        _ => Severity::Hard,
    };
    let starts_at = form_time("Starts", &f.starts_at)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::InvalidFreeze,
            "Starts: give a date and time (UTC)",
        )
    })?;
    let spec = FreezeSpec {
        name: f.name,
        severity,
        starts_at,
        ends_at: form_time("Ends", &f.ends_at)?,
        recurrence: Some(f.recurrence).filter(|r| !r.trim().is_empty()),
        operations: f
            .operations
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect(),
        reason: f.reason,
    };
    Ok((f.csrf, spec))
}

/// `POST /calendar/freezes`: propose a freeze.
pub async fn propose_freeze(state: State, w: WebUser, form: web::Form<FreezeForm>) -> PageResult {
    let (csrf, spec) = spec_of(form.into_inner())?;
    propose(&state, &w, &csrf, ProposalRequest::CreateFreeze(spec)).await
}

/// `POST /calendar/freezes/{id}/edit`: propose new fields for a freeze.
pub async fn propose_edit(
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<FreezeForm>,
) -> PageResult {
    let (csrf, spec) = spec_of(form.into_inner())?;
    let req = ProposalRequest::EditFreeze(path.into_inner(), spec);
    propose(&state, &w, &csrf, req).await
}

#[derive(Deserialize)]
pub struct ReasonForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /calendar/freezes/{id}/lift`
pub async fn propose_lift(
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    let f = form.into_inner();
    let req = ProposalRequest::LiftFreeze {
        freeze: path.into_inner(),
        reason: f.reason,
    };
    propose(&state, &w, &f.csrf, req).await
}

/// `POST /calendar/lockdown`
pub async fn propose_lockdown(state: State, w: WebUser, form: web::Form<ReasonForm>) -> PageResult {
    let f = form.into_inner();
    propose(
        &state,
        &w,
        &f.csrf,
        ProposalRequest::DeclareLockdown { reason: f.reason },
    )
    .await
}

/// `POST /calendar/lockdown/lift`
pub async fn propose_lockdown_lift(
    state: State,
    w: WebUser,
    form: web::Form<ReasonForm>,
) -> PageResult {
    let f = form.into_inner();
    propose(
        &state,
        &w,
        &f.csrf,
        ProposalRequest::LiftLockdown { reason: f.reason },
    )
    .await
}

/// `POST /calendar/proposals/{id}/confirm`
pub async fn confirm(
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> PageResult {
    w.check_csrf(&form.csrf)?;
    let id = path.into_inner();
    run_as(&state, w.user.clone(), move |conn, schema, user| {
        svc::confirm(conn, schema, user, id)
    })
    .await?;
    state.wake.notify();
    Ok(see_other("/calendar?done=confirmed"))
}

/// `POST /calendar/proposals/{id}/decline`
pub async fn decline(
    state: State,
    w: WebUser,
    path: web::Path<i64>,
    form: web::Form<ReasonForm>,
) -> PageResult {
    let f = form.into_inner();
    w.check_csrf(&f.csrf)?;
    let id = path.into_inner();
    run_as(&state, w.user.clone(), move |conn, _, user| {
        svc::decline(conn, user, id, Some(&f.reason))
    })
    .await?;
    Ok(see_other("/calendar?done=declined"))
}
