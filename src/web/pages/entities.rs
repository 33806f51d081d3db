//! The glossary of kinds and operations, and the inventory pages.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{html, layout, Layout, PageResult};
use crate::db::{changes as repo, inventory};
use crate::domain::resolution::short_fingerprint;
use crate::service::views::number;
use crate::web::session::WebUser;
use crate::web::{run_as, with_conn, State};

// ---- glossary, inventory --------------------------------------------------------------

pub struct KindView {
    pub name: String,
    pub label: String,
    pub description: String,
    pub pattern: String,
    pub example: String,
    pub parent: String,
    pub attributes: String,
    pub operations: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "glossary.html")]
pub(crate) struct GlossaryPage {
    pub(crate) l: Layout,
    pub(crate) kinds: Vec<KindView>,
    pub(crate) version: String,
}

pub async fn glossary(req: HttpRequest, state: State, w: WebUser) -> HttpResponse {
    let s = &state.schema;
    let kinds = s
        .kinds
        .values()
        .map(|k| KindView {
            name: k.name.clone(),
            label: k.label.clone(),
            description: k.description.clone(),
            pattern: [
                k.prefix.as_deref().map(|p| format!("starts with {p}")),
                k.pattern.clone(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
            example: k.example.clone().unwrap_or_default(),
            parent: k
                .parent
                .as_deref()
                .and_then(|p| s.kind(p))
                .map(|p| format!("{} ({})", p.label, p.name))
                .unwrap_or_default(),
            attributes: k.attributes.join(", "),
            operations: s
                .operations
                .values()
                .filter(|o| o.target == k.name)
                .map(|o| {
                    let words = match s.webhook_called(o, true) {
                        Some(undo) => {
                            format!("{}, undone by {}", o.effect.plain_words(), undo.label)
                        }
                        None => o.effect.plain_words().to_string(),
                    };
                    (o.name.clone(), o.label.clone(), words)
                })
                .collect(),
        })
        .collect();
    let page = GlossaryPage {
        l: layout(&req, &state, &w).await,
        kinds,
        version: short_fingerprint(&s.hash),
    };
    html(StatusCode::OK, page.render())
}

#[derive(Template)]
#[template(path = "inventory.html")]
pub(crate) struct InventoryPage {
    pub(crate) l: Layout,
    pub(crate) q: String,
    pub(crate) rows: Vec<(String, String, String, String)>,
}

#[derive(Deserialize)]
pub struct InventoryQuery {
    pub(crate) q: Option<String>,
}

pub async fn inventory_page(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<InventoryQuery>,
) -> PageResult {
    let text = q.q.clone().unwrap_or_default();
    let t2 = text.trim().to_string();
    let rows = with_conn(&state, move |conn| {
        if t2.is_empty() {
            return Ok(vec![]);
        }
        Ok(inventory::list(
            conn,
            &inventory::ListFilter {
                q: Some(t2),
                limit: Some(100),
                ..Default::default()
            },
        )?)
    })
    .await?;
    let page = InventoryPage {
        l: layout(&req, &state, &w).await,
        q: text,
        rows: rows
            .into_iter()
            .map(|e| (e.kind, e.id, e.name, e.state.to_string()))
            .collect(),
    };
    Ok(html(StatusCode::OK, page.render()))
}

#[derive(Template)]
#[template(path = "entity.html")]
pub(crate) struct EntityPage {
    pub(crate) l: Layout,
    pub(crate) e: crate::service::inventory::EntityDetail,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) changes: Vec<(String, String, String)>,
    /// `None`: the viewer may not see this entity's contacts.
    pub(crate) contacts: Option<Vec<crate::db::models::Contact>>,
}

pub async fn entity_page(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> PageResult {
    let id = path.into_inner();
    let data = run_as(&state, w.user.clone(), move |conn, schema, viewer| {
        crate::db::snapshot(conn, |conn| {
            let e = crate::service::inventory::detail(conn, schema, &id)?;
            let changes = repo::changes_touching(conn, &id, 50)?;
            let contacts = crate::service::contacts::of_entity(conn, viewer, &id)?;
            Ok((e, changes, contacts))
        })
    })
    .await;
    let (e, changes, contacts) = data?;
    let attrs = e
        .entity
        .attrs
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let page = EntityPage {
        l: layout(&req, &state, &w).await,
        attrs,
        changes: changes
            .into_iter()
            .map(|c| (number(c.id), c.title, c.state.to_string()))
            .collect(),
        contacts,
        e,
    };
    Ok(html(StatusCode::OK, page.render()))
}
