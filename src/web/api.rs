//! JSON API handlers: parse, call one service function, serialise.

use actix_web::error::JsonPayloadError;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::auth::Authed;
use super::{with_conn, State};
use crate::db::{audit, changes as repo, inventory};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::{self as svc, change_id, CreateChange, EditChange, SignRequest};
use crate::service::execution::{self as exe, ExecuteRequest, RollbackRequest};
use crate::service::views::{number, ChangeSummaryView, EventView};
use crate::service::{self, inventory as inv, CurrentUser};

pub fn json_error(err: JsonPayloadError) -> AppError {
    match &err {
        JsonPayloadError::OverflowKnownLength { length, limit } => AppError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the body is {length} bytes; the limit is {limit} (COUNTERSIGN_MAX_JSON_BYTES)"
            ),
        ),
        JsonPayloadError::Overflow { limit } => AppError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the body is larger than the limit of {limit} bytes (COUNTERSIGN_MAX_JSON_BYTES)"
            ),
        ),
        JsonPayloadError::Deserialize(e) => AppError::new(
            ErrorCode::InvalidJson,
            format!("the body is not a valid request: {e}"),
        ),
        JsonPayloadError::ContentType => AppError::new(
            ErrorCode::UnsupportedMediaType,
            "send JSON (Content-Type: application/json)",
        ),
        other => AppError::new(ErrorCode::InvalidJson, other.to_string()),
    }
}

pub async fn not_found() -> AppResult<HttpResponse> {
    Err(AppError::new(
        ErrorCode::NotFound,
        "no such API endpoint (see README \"API\")",
    ))
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: State) -> HttpResponse {
    let backend = state.config.database.backend_name();
    let r = with_conn(&state, |conn| {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("SELECT 1")?;
        Ok(())
    })
    .await;
    match r {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "database": backend})),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let code = ErrorCode::DatabaseUnavailable;
            HttpResponse::build(code.status()).json(json!({"status": "unavailable", "database": backend, "error": {"code": code, "message": "the database does not answer"}}))
        }
    }
}

pub async fn get_schema(state: State, _user: Authed) -> HttpResponse {
    HttpResponse::Ok().json(&*state.schema)
}

pub async fn me(Authed(user): Authed) -> HttpResponse {
    HttpResponse::Ok().json(json!({"email": user.email, "name": user.name, "teams": user.teams, "is_admin": user.is_admin}))
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    pub partial: bool,
}

/// `POST /api/v1/inventory`: NDJSON, streamed into the importer through a bounded
/// channel, so a 1M-line body never sits in memory.
pub async fn import_inventory(
    state: State,
    Authed(user): Authed,
    query: web::Query<ImportQuery>,
    mut payload: web::Payload,
) -> AppResult<HttpResponse> {
    user.require_inventory_writer(&state.schema, "inventory")?;
    // The whole body first (on disk), then the database.
    let body = super::upload::spool(
        &mut payload,
        state.config.max_import_bytes,
        "COUNTERSIGN_MAX_IMPORT_BYTES",
        std::time::Duration::from_secs(state.config.upload_idle_secs),
    )
    .await?;
    let partial = query.partial;
    let schema = state.schema.clone();
    let result = with_conn(&state, move |conn| {
        let lines = body
            .lines()
            .map_err(|e| {
                AppError::Unexpected(anyhow::anyhow!("cannot read the spooled upload: {e}"))
            })?
            .map(|l| l.map_err(|e| e.to_string()));
        service::inventory::import(conn, &schema, &user, lines, partial)
    })
    .await;
    let report = result?;
    if !report.committed {
        let msg = format!("{} of {} lines are invalid; nothing was written (fix them, or send ?partial=true to import only the valid lines)", report.rejected, report.lines);
        return Err(AppError::new(ErrorCode::InvalidLines, msg)
            .with_details(serde_json::to_value(&report).unwrap_or_default()));
    }
    Ok(HttpResponse::Ok().json(report))
}

pub async fn list_inventory(
    state: State,
    _user: Authed,
    q: web::Query<inventory::ListFilter>,
) -> AppResult<HttpResponse> {
    let st = state.clone();
    let f = q.into_inner();
    let rows = with_conn(&state, move |conn| inv::list(conn, &st.schema, &f)).await?;
    let next = if rows.len() as i64 >= 1 {
        rows.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(json!({"entities": rows, "next_after": next})))
}

pub async fn get_entity(
    state: State,
    _user: Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let st = state.clone();
    let id = path.into_inner();
    let d = with_conn(&state, move |conn| {
        crate::db::snapshot(conn, |conn| inv::detail(conn, &st.schema, &id))
    })
    .await?;
    Ok(HttpResponse::Ok().json(d))
}

/// `GET /api/v1/imports/{id}?offset=&limit=`: an inventory import and one page of its
/// diff (admins and implementing teams only).
pub async fn get_import(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    q: web::Query<inv::DiffPage>,
) -> AppResult<HttpResponse> {
    let st = state.clone();
    let id = path.into_inner();
    let page = q.into_inner();
    let v = with_conn(&state, move |conn| {
        inv::import_view(conn, &st.schema, &user, &id, page)
    })
    .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// A change as `me` sees it: with the actions they may take (`allowed_actions`).
async fn change_json(state: &State, me: &CurrentUser, id: i64) -> AppResult<serde_json::Value> {
    let st = state.clone();
    let me = me.clone();
    let v = with_conn(state, move |conn| svc::view_for(conn, &st.schema, &me, id)).await?;
    Ok(serde_json::to_value(v).unwrap_or_default())
}

pub async fn create_change(
    state: State,
    Authed(user): Authed,
    body: web::Json<CreateChange>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let st = state.clone();
    let id = with_conn(&state, move |conn| {
        svc::create(conn, &st.schema, &user, body.into_inner())
    })
    .await?;
    let v = change_json(&state, &me, id).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/changes/{id}")))
        .json(v))
}

pub async fn list_changes(
    state: State,
    _user: Authed,
    q: web::Query<repo::ListFilter>,
) -> AppResult<HttpResponse> {
    let st = state.clone();
    let f = q.into_inner();
    if let Some(s) = &f.state {
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if crate::domain::ChangeState::parse(part).is_none() {
                return Err(AppError::new(
                    ErrorCode::InvalidState,
                    format!("unknown state `{part}`"),
                ));
            }
        }
    }
    let rows = with_conn(&state, move |conn| Ok(repo::list(conn, &f)?)).await?;
    let views: Vec<ChangeSummaryView> = rows
        .iter()
        .map(|c| ChangeSummaryView::new(&st.schema, c))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"changes": views})))
}

pub async fn get_change(
    state: State,
    Authed(me): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    Ok(HttpResponse::Ok().json(change_json(&state, &me, id).await?))
}

pub async fn edit_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<EditChange>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let st = state.clone();
    let outcome = with_conn(&state, move |conn| {
        svc::edit(conn, &st.schema, &user, id, body.into_inner())
    })
    .await?;
    let mut v = change_json(&state, &me, id).await?;
    v["resolution_outcome"] = serde_json::to_value(outcome).unwrap_or_default();
    Ok(HttpResponse::Ok().json(v))
}

pub async fn resolve_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let st = state.clone();
    let outcome = with_conn(&state, move |conn| {
        svc::reresolve(conn, &st.schema, &user, id)
    })
    .await?;
    let mut v = change_json(&state, &me, id).await?;
    v["resolution_outcome"] = serde_json::to_value(outcome).unwrap_or_default();
    Ok(HttpResponse::Ok().json(v))
}

pub async fn submit_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let st = state.clone();
    with_conn(&state, move |conn| svc::submit(conn, &st.schema, &user, id)).await?;
    Ok(HttpResponse::Ok().json(change_json(&state, &me, id).await?))
}

pub async fn sign_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<SignRequest>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let st = state.clone();
    with_conn(&state, move |conn| {
        svc::sign(conn, &st.schema, &user, id, body.into_inner())
    })
    .await?;
    Ok(HttpResponse::Created().json(change_json(&state, &me, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn reject_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<ReasonBody>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let reason = body.into_inner().reason.unwrap_or_default();
    let schema = state.schema.clone();
    with_conn(&state, move |conn| {
        svc::reject(conn, &schema, &user, id, &reason)
    })
    .await?;
    Ok(HttpResponse::Ok().json(change_json(&state, &me, id).await?))
}

pub async fn cancel_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let reason = body.and_then(|b| b.into_inner().reason);
    let schema = state.schema.clone();
    with_conn(&state, move |conn| {
        svc::cancel(conn, &schema, &user, id, reason.as_deref())
    })
    .await?;
    Ok(HttpResponse::Ok().json(change_json(&state, &me, id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentBody {
    pub body: String,
}

pub async fn comment_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<CommentBody>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let text = body.into_inner().body;
    let schema = state.schema.clone();
    let cid = with_conn(&state, move |conn| {
        svc::comment(conn, &schema, &user, id, &text)
    })
    .await?;
    Ok(HttpResponse::Created().json(json!({"id": cid, "change": number(id)})))
}

pub async fn list_comments(
    state: State,
    _user: Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let rows = with_conn(&state, move |conn| {
        repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        Ok(repo::comments(conn, id)?)
    })
    .await?;
    let list: Vec<_> = rows.into_iter().map(|(c, email, name)| json!({"id": c.id, "by": {"email": email, "name": name}, "body": c.body, "at": c.created_at})).collect();
    Ok(HttpResponse::Ok().json(json!({"comments": list})))
}

pub async fn change_events(
    state: State,
    _user: Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let rows = with_conn(&state, move |conn| {
        repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        Ok(audit::for_change(conn, id)?)
    })
    .await?;
    let list: Vec<EventView> = rows.into_iter().map(EventView::from).collect();
    Ok(HttpResponse::Ok().json(json!({"events": list})))
}

#[derive(Debug, Deserialize)]
pub struct TargetsQuery {
    pub offset: Option<i64>,
    pub limit: Option<i64>,
    pub q: Option<String>,
    pub format: Option<String>,
}

pub async fn change_targets(
    state: State,
    _user: Authed,
    path: web::Path<String>,
    q: web::Query<TargetsQuery>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let q = q.into_inner();
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::new(
                ErrorCode::InvalidFormat,
                format!("format must be `json` or `csv`, not `{other}`"),
            ))
        }
    };
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000_000);
    let limit = if csv {
        i64::MAX
    } else {
        q.limit.unwrap_or(100).clamp(1, 10_000)
    };
    let search = q.q.clone();
    if csv {
        let st = state.clone();
        let (change, out) = with_conn(&state, move |conn| {
            svc::targets_csv(conn, &st.schema, id, search.as_deref(), offset)
        })
        .await?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"{}-targets.csv\"", number(id)),
            ))
            .insert_header((
                "X-Fingerprint",
                change.fingerprint.clone().unwrap_or_default(),
            ))
            .body(out));
    }
    let st = state.clone();
    let (change, total, rows, sets) = with_conn(&state, move |conn| {
        crate::db::snapshot(conn, |conn| {
            let c =
                repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
            let (total, rows) = repo::targets_page(conn, id, search.as_deref(), offset, limit)?;
            let ids: Vec<&str> = rows.iter().map(|r| r.entity_id.as_str()).collect();
            let sets = svc::attribute_changes(conn, &st.schema, &c, &ids)?;
            Ok((c, total, rows, sets))
        })
    })
    .await?;
    let targets: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut t = json!({"position": r.position, "kind": r.kind, "id": r.entity_id, "scope_path": r.scope_path, "name": r.name});
            if let Some(a) = sets.get(&r.entity_id) {
                t["attributes"] = json!(a);
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
        "targets": targets,
    })))
}

#[derive(Debug, Deserialize)]
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

pub async fn queue(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    let st = state.clone();
    let items = with_conn(&state, move |conn| {
        service::queue::queue(conn, &st.schema, &user)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"changes": items})))
}

pub async fn audit_verify(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    if !user.is_admin {
        return Err(AppError::new(
            ErrorCode::Forbidden,
            "only admins can verify the audit trail over the API",
        ));
    }
    let v = with_conn(&state, |conn| Ok(audit::verify(conn)?)).await?;
    Ok(HttpResponse::Ok().json(crate::service::views::verdict_json(&v)))
}

// ---- execution -------------------------------------------------------------------------

pub async fn execute_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<ExecuteRequest>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let st = state.clone();
    let v = with_conn(&state, move |conn| {
        exe::execute(conn, &st.schema, &user, id, &body.into_inner())
    })
    .await?;
    state.wake.notify();
    Ok(HttpResponse::Accepted().json(v))
}

pub async fn get_execution(
    state: State,
    Authed(_user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let v = with_conn(&state, move |conn| exe::progress(conn, id)).await?;
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsQuery {
    status: Option<String>,
    offset: Option<i64>,
    limit: Option<i64>,
}

pub async fn execution_items(
    state: State,
    Authed(_user): Authed,
    path: web::Path<String>,
    q: web::Query<ItemsQuery>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let q = q.into_inner();
    let offset = q.offset.unwrap_or(0).clamp(0, 1_000_000_000);
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let (total, items) = with_conn(&state, move |conn| {
        exe::items(conn, id, q.status.as_deref(), offset, limit)
    })
    .await?;
    let next = (offset + (items.len() as i64) < total).then(|| offset + items.len() as i64);
    Ok(HttpResponse::Ok().json(
        json!({"change": number(id), "total": total, "offset": offset, "next_offset": next, "items": items}),
    ))
}

pub async fn resume_execution(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let schema = state.schema.clone();
    let v = with_conn(&state, move |conn| exe::resume(conn, &schema, &user, id)).await?;
    state.wake.notify();
    Ok(HttpResponse::Ok().json(v))
}

pub async fn abort_execution(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<ReasonBody>>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let reason = body.and_then(|b| b.into_inner().reason);
    let schema = state.schema.clone();
    let v = with_conn(&state, move |conn| {
        exe::abort(conn, &schema, &user, id, reason.as_deref())
    })
    .await?;
    Ok(HttpResponse::Ok().json(v))
}

pub async fn rollback_change(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: Option<web::Json<RollbackRequest>>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let id = change_id(&path)?;
    let req = body.map(|b| b.into_inner()).unwrap_or_default();
    let st = state.clone();
    let new_id = with_conn(&state, move |conn| {
        exe::rollback(conn, &st.schema, &user, id, &req)
    })
    .await?;
    Ok(HttpResponse::Created().json(change_json(&state, &me, new_id).await?))
}

/// `POST /api/v1/restores`: a bulk restore change (see `service::restore`).
pub async fn create_restore(
    state: State,
    Authed(user): Authed,
    body: web::Json<crate::service::restore::RestoreRequest>,
) -> AppResult<HttpResponse> {
    let me = user.clone();
    let req = body.into_inner();
    let st = state.clone();
    let new_id = with_conn(&state, move |conn| {
        crate::service::restore::create(conn, &st.schema, &user, req)
    })
    .await?;
    Ok(HttpResponse::Created().json(change_json(&state, &me, new_id).await?))
}

// ---- notifications, outbox, contacts, customer notices -------------------------------

pub async fn get_preferences(state: State, Authed(user): Authed) -> AppResult<HttpResponse> {
    let v = with_conn(&state, move |conn| {
        service::notifications::preferences(conn, &user)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"preferences": v, "modes": crate::notify::MODES})))
}

pub async fn set_preferences(
    state: State,
    Authed(user): Authed,
    body: web::Json<std::collections::BTreeMap<String, String>>,
) -> AppResult<HttpResponse> {
    let changes = body.into_inner();
    let v = with_conn(&state, move |conn| {
        service::notifications::set_preferences(conn, &user, &changes)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"preferences": v, "modes": crate::notify::MODES})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    state: Option<String>,
    change: Option<String>,
    limit: Option<i64>,
}

pub async fn list_outbox(
    state: State,
    Authed(user): Authed,
    q: web::Query<OutboxQuery>,
) -> AppResult<HttpResponse> {
    let q = q.into_inner();
    let change = q.change.as_deref().map(change_id).transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let v = with_conn(&state, move |conn| {
        service::notifications::outbox(conn, &user, q.state.as_deref(), change, limit)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"mails": v})))
}

pub async fn retry_mail(
    state: State,
    Authed(user): Authed,
    path: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let v = with_conn(&state, move |conn| {
        service::notifications::retry(conn, &user, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// `POST /api/v1/contacts`: NDJSON contacts (bounded by the JSON body limit).
pub async fn import_contacts(
    state: State,
    Authed(user): Authed,
    query: web::Query<ImportQuery>,
    mut payload: web::Payload,
) -> AppResult<HttpResponse> {
    user.require_inventory_writer(&state.schema, "contacts")?;
    let body = super::upload::spool(
        &mut payload,
        state.config.max_json_bytes,
        "COUNTERSIGN_MAX_JSON_BYTES",
        std::time::Duration::from_secs(state.config.upload_idle_secs),
    )
    .await?;
    let partial = query.partial;
    let report = with_conn(&state, move |conn| {
        let lines = body.lines().map_err(|e| {
            AppError::Unexpected(anyhow::anyhow!("cannot read the spooled upload: {e}"))
        })?;
        service::contacts::import(conn, &user.actor(), lines, partial)
    })
    .await?;
    if report.rejected > 0 && !report.committed {
        let msg = format!(
            "{} of {} lines are not valid contacts; nothing was written",
            report.rejected, report.lines
        );
        return Err(AppError::new(ErrorCode::InvalidLines, msg)
            .with_details(serde_json::to_value(&report).unwrap_or_default()));
    }
    Ok(HttpResponse::Ok().json(report))
}

pub async fn entity_contacts(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = path.into_inner();
    let v = with_conn(&state, move |conn| {
        service::contacts::entity_contacts(conn, &user, &id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"contacts": v})))
}

#[derive(Debug, Deserialize)]
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
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(AppError::new(
                ErrorCode::InvalidFormat,
                format!("format must be `json` or `csv`, not `{other}`"),
            ))
        }
    };
    if csv {
        let body = with_conn(&state, move |conn| {
            service::contacts::export_csv(conn, &user, id)
        })
        .await?;
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"{}-contacts.csv\"", number(id)),
            ))
            .body(body));
    }
    let roots = with_conn(&state, move |conn| {
        service::contacts::for_change(conn, &user, id)
    })
    .await?;
    let with = roots.iter().filter(|r| !r.contacts.is_empty()).count();
    Ok(HttpResponse::Ok().json(json!({"change": number(id), "roots": roots.len(), "roots_with_contacts": with, "affected": roots})))
}

/// `POST /api/v1/changes/{id}/notices`: preview (`"preview": true`) or draft a notice.
pub async fn draft_notice(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
    body: web::Json<service::contacts::NoticeRequest>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let req = body.into_inner();
    let preview = req.preview;
    let v = with_conn(&state, move |conn| {
        service::contacts::draft(conn, &user, id, req)
    })
    .await?;
    Ok(if preview {
        HttpResponse::Ok().json(v)
    } else {
        HttpResponse::Created().json(v)
    })
}

/// `POST /api/v1/changes/{id}/notices/{nid}/approve` (sends it) and `…/discard`.
pub async fn notice_action(
    state: State,
    Authed(user): Authed,
    path: web::Path<(String, i64, String)>,
) -> AppResult<HttpResponse> {
    let (raw, nid, action) = path.into_inner();
    let id = change_id(&raw)?;
    let v = with_conn(&state, move |conn| match action.as_str() {
        "approve" => service::contacts::approve(conn, &user, id, nid),
        "discard" => service::contacts::discard(conn, &user, id, nid),
        other => Err(AppError::new(
            ErrorCode::NotFound,
            format!("a notice has no action `{other}` (approve, discard)"),
        )),
    })
    .await?;
    Ok(HttpResponse::Ok().json(v))
}

pub async fn list_notices(
    state: State,
    Authed(user): Authed,
    path: web::Path<String>,
) -> AppResult<HttpResponse> {
    let id = change_id(&path)?;
    let v = with_conn(&state, move |conn| {
        service::contacts::notices(conn, &user, id)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"notices": v})))
}
