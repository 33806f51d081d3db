//! What a change acts on: its stored target list (paged JSON or the whole list as CSV)
//! and its stored selector, one list at a time.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{csv_attachment, wants_csv};
use crate::db::changes as repo;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::{self as svc, change_id};
use crate::service::views::number;
use crate::web::auth::Authed;
use crate::web::{run_as, with_conn, State};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TargetsQuery {
    pub offset: Option<i64>,
    pub limit: Option<i64>,
    pub q: Option<String>,
    /// Only the targets whose execution item has this status.
    pub status: Option<String>,
    pub format: Option<String>,
}

pub async fn change_targets(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    q: web::Query<TargetsQuery>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let q = q.into_inner();
    let csv = wants_csv(q.format.as_deref())?;
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000_000);
    let search = q.q;
    let status = crate::service::execution::item_status(q.status.as_deref())?;
    if csv {
        let (change, out) = run_as(&state, user, move |conn, schema, _| {
            svc::targets_csv(conn, schema, id, search.as_deref(), status, offset)
        })
        .await?;
        return Ok(csv_attachment(&format!("{}-targets.csv", number(id)))
            .insert_header(("X-Fingerprint", change.fingerprint.unwrap_or_default()))
            .body(out));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let (change, total, rows, effects) = run_as(&state, user, move |conn, schema, _| {
        crate::db::snapshot(conn, |conn| {
            let c =
                repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
            let (total, rows) =
                repo::targets_page(conn, id, search.as_deref(), status, offset, limit)?;
            let refs: Vec<svc::TargetRef<'_>> = rows.iter().map(svc::TargetRef::from).collect();
            let effects = svc::target_effects(conn, schema, &c, &refs)?;
            Ok((c, total, rows, effects))
        })
    })
    .await?;
    let targets: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut t = json!({"position": r.position, "kind": r.kind, "id": r.entity_id, "scope_path": r.scope_path, "name": r.name});
            if let Some(e) = effects.get(&r.entity_id) {
                // What happens to it (README "What happens to each target").
                t["effect"] = json!(e);
                if let Some(a) = e.attributes() {
                    t["attributes"] = json!(a);
                }
            }
            t
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "change": number(id),
        "fingerprint": change.fingerprint,
        "schema_hash": change.schema_hash,
        "operation": change.operation,
        "params": serde_json::from_str::<serde_json::Value>(&change.params).unwrap_or_default(),
        "total": total,
        "offset": offset,
        "limit": limit,
        "next_offset": (offset + (rows.len() as i64) < total).then_some(offset + rows.len() as i64),
        "targets": targets,
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SelectorQuery {
    pub part: Option<String>,
    pub offset: Option<i64>,
    pub limit: Option<i64>,
}

/// One list of a change's stored selector, paged: `part=ids` (default) or `part=within`
/// (the scope IDs). `GET /api/v1/changes/{id}` shows only each list's count and first IDs.
pub async fn change_selector(
    state: State,
    _user: Authed,
    path: web::Path<String>,
    q: web::Query<SelectorQuery>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let q = q.into_inner();
    let part = q.part.unwrap_or_else(|| "ids".into());
    if part != "ids" && part != "within" {
        return Err(AppError::new(
            ErrorCode::InvalidPart,
            format!(
                "part must be `ids` or `within`, not `{}`",
                crate::domain::lines::clip(&part)
            ),
        ));
    }
    let offset = q.offset.unwrap_or(0).clamp(0, i64::MAX) as usize;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000) as usize;
    let change = with_conn(&state, move |conn| {
        repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))
    })
    .await?;
    let stored: serde_json::Value = serde_json::from_str(&change.selector).unwrap_or_default();
    let (list, kind) = if part == "ids" {
        (&stored["ids"], None)
    } else {
        (&stored["within"]["ids"], stored["within"]["kind"].as_str())
    };
    let all = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let page: Vec<_> = all.iter().skip(offset).take(limit).collect();
    let next = offset + page.len();
    Ok(HttpResponse::Ok().json(json!({
        "change": number(id),
        "part": part,
        "kind": kind,
        "where": stored.get("where"),
        "total": all.len(),
        "offset": offset,
        "limit": limit,
        "ids": page,
        "next_offset": (next < all.len()).then_some(next),
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DifferenceQuery {
    pub offset: Option<i64>,
    pub limit: Option<i64>,
}

/// What changed since the signers last saw the list: the targets added, then those
/// removed (paged), and the roots added and removed. 404 when the list is the signed one.
pub async fn change_difference(
    state: State,
    _user: Authed,
    path: web::Path<String>,
    q: web::Query<DifferenceQuery>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let offset = q.offset.unwrap_or(0).clamp(0, i64::MAX) as usize;
    let limit = q.limit.unwrap_or(1000).clamp(1, 1000) as usize;
    let v = with_conn(&state, move |conn| {
        crate::db::snapshot(conn, |conn| {
            let c =
                repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
            svc::difference::page(conn, &c, offset, limit)
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// `GET /api/v1/changes/{id}/evidence`: the change's evidence bundle (`.tar.gz`; README
/// "Evidence for auditors"), for admins and the teams with a side on the change.
pub async fn change_evidence(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    crate::web::download::evidence(&state, user, id).await
}
