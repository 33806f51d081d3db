//! The lists: home, the approval queue, the changes list.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde::Deserialize;

use super::{html, layout, Layout, PageResult};
use crate::db::{audit, changes as repo};
use crate::domain::Effect;
use crate::service::queue;
use crate::service::views::{number, ChangeSummaryView};
use crate::web::session::WebUser;
use crate::web::{run_as, with_conn, State};

// ---- lists ----------------------------------------------------------------------------

pub struct Row {
    pub number: String,
    pub title: String,
    pub state: String,
    pub operation: String,
    pub effect: String,
    pub targets: i64,
    pub roots: i64,
    pub teams: String,
    pub age: String,
    pub destructive: bool,
    pub big: bool,
    pub needs: String,
    /// The risk tier whose sign-off policy applies, if one does.
    pub tier: Option<String>,
    /// When a counting sign-off expires, if within a day (the queue).
    pub expires_soon: Option<String>,
    /// The budget it draws from (queue rows): a short label, whether the change fits, and
    /// the whole sentence.
    pub budget: Option<RowBudget>,
    /// The freezes its window overlaps (queue rows).
    pub freezes: Vec<String>,
}

pub struct RowBudget {
    pub label: String,
    pub fits: bool,
    pub title: String,
}

impl RowBudget {
    fn of(b: &crate::service::budget::BudgetView) -> RowBudget {
        let left: Vec<String> = [
            b.state
                .roots
                .map(|m| format!("{} of {} roots left", m.left, m.limit)),
            b.state
                .targets
                .map(|m| format!("{} of {} targets left", m.left, m.limit)),
        ]
        .into_iter()
        .flatten()
        .collect();
        RowBudget {
            label: format!(
                "budget {}: {}{}",
                b.state.group,
                left.join(", "),
                if b.fits { "" } else { " — does not fit" }
            ),
            fits: b.fits,
            title: b.summary.clone(),
        }
    }
}

/// A queue row: the change, the sides it needs, and its budget.
fn queue_row(q: &queue::QueueItem) -> Row {
    let mut r = row(&q.change, q.needs.join(" + "));
    r.budget = q.budget.as_ref().map(RowBudget::of);
    r.freezes = q.freezes.clone();
    // Marked when one of its sign-offs expires within a day.
    r.expires_soon = q
        .expires_soon
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string());
    r
}

pub(crate) fn age(t: chrono::NaiveDateTime) -> String {
    let d = crate::db::now() - t;
    if d.num_days() > 0 {
        format!("{} d", d.num_days())
    } else if d.num_hours() > 0 {
        format!("{} h", d.num_hours())
    } else {
        format!("{} min", d.num_minutes().max(0))
    }
}

pub(crate) fn row(c: &ChangeSummaryView, needs: String) -> Row {
    Row {
        number: c.number.clone(),
        title: c.title.clone(),
        state: c.state.to_string(),
        operation: c.operation_label.clone(),
        effect: c.effect.map(|e| e.as_str().to_string()).unwrap_or_default(),
        targets: c.target_count,
        roots: c.root_count,
        teams: format!("{} → {}", c.requesting_team, c.implementing_team),
        age: age(c.submitted_at.unwrap_or(c.created_at)),
        destructive: c.destructive,
        big: c.target_count > 100,
        needs,
        tier: c.tier.clone(),
        expires_soon: None,
        budget: None,
        freezes: vec![],
    }
}

#[derive(Template)]
#[template(path = "home.html")]
pub(crate) struct HomePage {
    pub(crate) l: Layout,
    pub(crate) mine: Vec<Row>,
    pub(crate) waiting: Vec<Row>,
    pub(crate) activity: Vec<Activity>,
}

pub struct Activity {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub change: String,
}

pub async fn home(req: HttpRequest, state: State, w: WebUser) -> PageResult {
    let data = run_as(&state, w.user.clone(), move |conn, schema, user| {
        let queue = queue::queue(conn, schema, user)?;
        let mine: Vec<ChangeSummaryView> = repo::list(
            conn,
            &repo::ListFilter {
                state: Some("draft,awaiting_signoff,approved,executing,halted".into()),
                limit: Some(200),
                author: Some(user.id),
                ..Default::default()
            },
        )?
        .iter()
        .map(|c| ChangeSummaryView::new(schema, c))
        .collect();
        let events = audit::recent(conn, 15)?;
        Ok((queue, mine, events))
    })
    .await;
    let (queue, mine, events) = data?;
    let page = HomePage {
        l: layout(&req, &state, &w).await,
        mine: mine.iter().map(|c| row(c, String::new())).collect(),
        waiting: queue.iter().map(queue_row).collect(),
        activity: events
            .into_iter()
            .map(|e| Activity {
                at: e.at.format("%Y-%m-%d %H:%M").to_string(),
                actor: e.actor,
                action: e.action.replace('_', " "),
                change: e.change_id.map(number).unwrap_or_default(),
            })
            .collect(),
    };
    Ok(html(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "queue.html")]
pub(crate) struct QueuePage {
    pub(crate) l: Layout,
    pub(crate) rows: Vec<Row>,
    pub(crate) effects: Vec<(&'static str, bool)>,
}

#[derive(Deserialize)]
pub struct QueueQuery {
    pub(crate) effect: Option<String>,
}

pub async fn queue(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<QueueQuery>,
) -> PageResult {
    let items = run_as(&state, w.user.clone(), move |conn, schema, user| {
        queue::queue(conn, schema, user)
    })
    .await?;
    let effect = q.effect.clone().unwrap_or_default();
    let rows = items
        .iter()
        .filter(|i| {
            effect.is_empty() || i.change.effect.map(Effect::as_str) == Some(effect.as_str())
        })
        .map(queue_row)
        .collect();
    let page = QueuePage {
        l: layout(&req, &state, &w).await,
        rows,
        effects: Effect::VALUES
            .iter()
            .map(|e| (e.as_str(), e.as_str() == effect))
            .collect(),
    };
    Ok(html(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "changes.html")]
pub(crate) struct ChangesPage {
    pub(crate) l: Layout,
    pub(crate) rows: Vec<Row>,
    pub(crate) states: Vec<(&'static str, bool)>,
}

#[derive(Deserialize)]
pub struct ChangesQuery {
    pub(crate) state: Option<String>,
}

pub async fn changes(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<ChangesQuery>,
) -> PageResult {
    let st = q
        .state
        .clone()
        .filter(|s| crate::domain::ChangeState::parse(s).is_some());
    let schema = state.schema.clone();
    let st2 = st.clone();
    let list = with_conn(&state, move |conn| {
        Ok(repo::list(
            conn,
            &repo::ListFilter {
                state: st2,
                limit: Some(200),
                ..Default::default()
            },
        )?)
    })
    .await?;
    let rows = list
        .iter()
        .map(|c| row(&ChangeSummaryView::new(&schema, c), String::new()))
        .collect();
    let page = ChangesPage {
        l: layout(&req, &state, &w).await,
        rows,
        states: crate::domain::ChangeState::VALUES
            .iter()
            .map(|s| (s.as_str(), st.as_deref() == Some(s.as_str())))
            .collect(),
    };
    Ok(html(StatusCode::OK, page.render()))
}
