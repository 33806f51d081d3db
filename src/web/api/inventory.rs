//! The inventory: import (NDJSON), list, one entity, one import and its diff.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{import_answer, lines_of, reply, spool, ImportQuery};
use crate::db::inventory::ListFilter;
use crate::error::AppResult;
use crate::service::inventory as inv;
use crate::web::auth::Authed;
use crate::web::{run_as, State};

/// `POST /api/v1/inventory`: NDJSON, spooled to disk before the import (see
/// `web::upload`), so a 1M-line body never sits in memory.
pub async fn import_inventory(
    state: State,
    Authed(user): Authed,
    query: web::Query<ImportQuery>,
    mut payload: web::Payload,
) -> AppResult<HttpResponse> {
    user.require_inventory_writer(&state.schema, "inventory")?;
    // The whole body first (on disk), then the database.
    let limit = state.config.max_import_bytes;
    let body = spool(&state, &mut payload, limit, "COUNTERSIGN_MAX_IMPORT_BYTES").await?;
    let partial = query.partial;
    let report = run_as(&state, user, move |conn, schema, user| {
        let lines = lines_of(body)?.map(|l| l.map_err(|e| e.to_string()));
        inv::import(conn, schema, user, lines, partial)
    })
    .await?;
    let msg = format!("{} of {} lines are invalid; nothing was written (fix them, or send ?partial=true to import only the valid lines)", report.rejected, report.lines);
    import_answer(report.committed, report, msg)
}

pub async fn list_inventory(
    state: State,
    Authed(user): Authed,
    q: web::Query<ListFilter>,
) -> AppResult<HttpResponse> {
    let f = q.into_inner();
    let rows = run_as(&state, user, move |conn, schema, _| {
        inv::list(conn, schema, &f)
    })
    .await?;
    let next = rows.last().map(|e| e.id.clone());
    Ok(HttpResponse::Ok().json(json!({"entities": rows, "next_after": next})))
}

pub async fn get_entity(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    reply(&state, user, StatusCode::OK, move |conn, schema, _| {
        crate::db::snapshot(conn, |conn| inv::detail(conn, schema, &id))
    })
    .await
}

/// `GET /api/v1/imports/{id}?offset=&limit=`: an inventory import and one page of its
/// diff (admins and implementing teams only).
pub async fn get_import(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    q: web::Query<inv::DiffPage>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let page = q.into_inner();
    reply(&state, user, StatusCode::OK, move |conn, schema, user| {
        inv::import_view(conn, schema, user, &id, page)
    })
    .await
}
