//! Customer contacts: import (NDJSON), an entity's contacts, a change's affected
//! customers (JSON or CSV).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{csv_attachment, import_answer, lines_of, spool, wants_csv, ImportQuery};
use crate::error::AppResult;
use crate::service::changes::change_id;
use crate::service::contacts as svc;
use crate::service::views::number;
use crate::web::auth::Authed;
use crate::web::{run_as, State};

/// `POST /api/v1/contacts`: NDJSON contacts (bounded by the JSON body limit).
pub async fn import_contacts(
    state: State,
    Authed(user): Authed,
    query: web::Query<ImportQuery>,
    mut payload: web::Payload,
) -> AppResult<HttpResponse> {
    user.require_inventory_writer(&state.schema, "contacts")?;
    let limit = state.config.max_json_bytes;
    let body = spool(&state, &mut payload, limit, "COUNTERSIGN_MAX_JSON_BYTES").await?;
    let partial = query.partial;
    let report = run_as(&state, user, move |conn, _, user| {
        svc::import(conn, &user.actor(), lines_of(body)?, partial)
    })
    .await?;
    let msg = format!(
        "{} of {} lines are not valid contacts; nothing was written",
        report.rejected, report.lines
    );
    import_answer(report.committed || report.rejected == 0, report, msg)
}

pub async fn entity_contacts(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let v = run_as(&state, user, move |conn, _, user| {
        svc::entity_contacts(conn, user, &id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"contacts": v})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FormatQuery {
    format: Option<String>,
}

pub async fn change_contacts(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    q: web::Query<FormatQuery>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    if wants_csv(q.format.as_deref())? {
        let body = run_as(&state, user, move |conn, _, user| {
            svc::export_csv(conn, user, id)
        })
        .await?;
        return Ok(csv_attachment(&format!("{}-contacts.csv", number(id))).body(body));
    }
    let roots = run_as(&state, user, move |conn, _, user| {
        svc::for_change(conn, user, id)
    })
    .await?;
    let with = roots.iter().filter(|r| !r.contacts.is_empty()).count();
    Ok(HttpResponse::Ok().json(json!({"change": number(id), "roots": roots.len(), "roots_with_contacts": with, "affected": roots})))
}
