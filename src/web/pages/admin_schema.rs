//! Admins: the schema's version history (`/admin/schema`): every recorded version, the one
//! in use marked, what each added, removed and changed against the one before, and each
//! version's source with its line difference (`/admin/schema/{hash}`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;

use super::{html, layout, Layout, PageResult};
use crate::domain::schema::history::{Changes, DiffLine, LineChange};
use crate::service::schemas::{self as svc, VersionRow};
use crate::web::session::WebUser;
use crate::web::{run_as, State};

/// A version as the pages show it.
pub(crate) struct VersionItem {
    pub(crate) hash: String,
    pub(crate) short: String,
    pub(crate) loaded: String,
    pub(crate) in_use: bool,
    /// "3 kinds, 9 operations", or that the source no longer parses.
    pub(crate) size: String,
    /// (what, names) lines: "operations added", ["x", "y"].
    pub(crate) changes: Vec<(String, String)>,
    /// No version before it.
    pub(crate) first: bool,
    pub(crate) previous: Option<(String, String)>,
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

fn item(r: VersionRow) -> VersionItem {
    let mut changes = Vec::new();
    if let Some(d) = &r.difference {
        let mut add = |what: &str, c: &Changes| {
            for (verb, names) in [
                ("added", &c.added),
                ("removed", &c.removed),
                ("changed", &c.changed),
            ] {
                if !names.is_empty() {
                    changes.push((format!("{what} {verb}"), names.join(", ")));
                }
            }
        };
        add("kinds", &d.kinds);
        add("operations", &d.operations);
    }
    VersionItem {
        short: short(&r.hash),
        loaded: r.loaded_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        in_use: r.in_use,
        size: match r.counts {
            Some((k, o)) => format!("{k} kinds, {o} operations"),
            None => "no longer parses with this version of countersign".to_string(),
        },
        changes,
        first: r.previous.is_none(),
        previous: r.previous.map(|p| (short(&p), p)),
        hash: r.hash,
    }
}

#[derive(Template)]
#[template(path = "admin_schema.html")]
pub(crate) struct HistoryPage {
    pub(crate) l: Layout,
    pub(crate) versions: Vec<VersionItem>,
}

/// `GET /admin/schema`
pub async fn history(req: HttpRequest, state: State, w: WebUser) -> PageResult {
    let rows = run_as(&state, w.user.clone(), |conn, schema, user| {
        svc::history(conn, user, schema)
    })
    .await?;
    let page = HistoryPage {
        l: layout(&req, &state, &w).await,
        versions: rows.into_iter().map(item).collect(),
    };
    Ok(html(StatusCode::OK, page.render()))
}

/// One line of the source difference, for the template.
pub(crate) struct Line {
    /// `same`, `added` or `removed` (its CSS class).
    pub(crate) class: &'static str,
    pub(crate) sign: &'static str,
    pub(crate) old: String,
    pub(crate) new: String,
    pub(crate) text: String,
}

fn line(l: DiffLine) -> Line {
    let (class, sign) = match l.change {
        LineChange::Same => ("same", " "),
        LineChange::Added => ("added", "+"),
        LineChange::Removed => ("removed", "−"),
    };
    let n = |x: Option<usize>| x.map(|n| n.to_string()).unwrap_or_default();
    Line {
        class,
        sign,
        old: n(l.old),
        new: n(l.new),
        text: l.text,
    }
}

#[derive(Template)]
#[template(path = "admin_schema_version.html")]
pub(crate) struct VersionPage {
    pub(crate) l: Layout,
    pub(crate) v: VersionItem,
    pub(crate) hunks: Vec<Vec<Line>>,
    /// Numbered lines of the source.
    pub(crate) source: Vec<(usize, String)>,
}

/// `GET /admin/schema/{hash}`
pub async fn version(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> PageResult {
    let hash = path.into_inner();
    let v = run_as(&state, w.user.clone(), move |conn, schema, user| {
        svc::version(conn, user, schema, &hash)
    })
    .await?;
    let page = VersionPage {
        l: layout(&req, &state, &w).await,
        hunks: v
            .lines
            .into_iter()
            .map(|h| h.into_iter().map(line).collect())
            .collect(),
        source: v
            .source
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect(),
        v: item(v.row),
    };
    Ok(html(StatusCode::OK, page.render()))
}
