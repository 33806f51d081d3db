//! Bulk restore (`POST /api/v1/restores`): bring a set of entities, or everything a set of
//! changes touched, back to the state before a given change or at a given time — for when
//! several changes must be undone together. The result is an ordinary change (fixed
//! targets, submitted at once) that goes through sign-off and execution like any other.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::json;

use super::changes::ChangeHead;
use super::changes::{change_id, check_rationale, check_teams, check_title, involved, point};
use super::execution::{insert_submitted, Derived};
use super::views::number;
use super::CurrentUser;
use crate::db::{exec as exec_repo, resolve, write_tx, DbConn};
use crate::domain::execution::{RestorePoint, RestoreSpec};
use crate::domain::resolution::Resolution;
use crate::domain::text::{Rationale, Title};
use crate::domain::{Effect, Operation, Schema};
use crate::error::{AppError, AppResult, ErrorCode};

/// A change named by number (`12`) or reference (`"CHG-12"`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ChangeRef {
    Number(i64),
    Text(String),
}

impl ChangeRef {
    fn id(&self) -> AppResult<i64> {
        match self {
            ChangeRef::Number(n) => Ok(*n),
            ChangeRef::Text(t) => change_id(t),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub rationale: Option<String>,
    pub requesting_team: String,
    /// The restore operation whose policy applies (default: the schema's restore operation
    /// for the highest kind involved).
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(default)]
    pub entities: Vec<String>,
    #[serde(default)]
    pub changes: Vec<ChangeRef>,
    #[serde(default)]
    pub before_change: Option<ChangeRef>,
    #[serde(default)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every kind `op` may restore: its target kind and the kinds below it.
fn covered<'s>(schema: &'s Schema, op: &'s Operation) -> BTreeSet<&'s str> {
    let mut out = BTreeSet::new();
    let mut frontier = vec![op.target.as_str()];
    while let Some(k) = frontier.pop() {
        if out.insert(k) {
            frontier.extend(schema.children_of(k).iter().map(|c| c.name.as_str()));
        }
    }
    out
}

/// The restore operation for `kinds`: the named one, or the most specific restore
/// operation that covers them all.
fn pick_operation<'s>(
    schema: &'s Schema,
    named: Option<&str>,
    kinds: &BTreeSet<String>,
) -> AppResult<&'s Operation> {
    if let Some(name) = named {
        let op = schema.operation(name).ok_or_else(|| {
            AppError::new(
                ErrorCode::UnknownOperation,
                format!("the schema has no operation `{name}`"),
            )
        })?;
        if op.effect != Effect::Restore {
            return Err(AppError::new(
                ErrorCode::NotARestore,
                format!(
                    "{} ({}) is a {} operation; a bulk restore needs a restore operation",
                    op.label,
                    op.name,
                    op.effect.as_str()
                ),
            ));
        }
        return Ok(op);
    }
    let mut fits: Vec<(&Operation, usize)> = schema
        .operations
        .values()
        .filter(|o| o.effect == Effect::Restore)
        .filter(|o| {
            let c = covered(schema, o);
            kinds.iter().all(|k| c.contains(k.as_str()))
        })
        .map(|o| (o, schema.ancestry(&o.target).len()))
        .collect();
    let deepest = fits.iter().map(|(_, d)| *d).max();
    fits.retain(|(_, d)| Some(*d) == deepest);
    match fits.as_slice() {
        [(op, _)] => Ok(op),
        [] => Err(AppError::new(ErrorCode::NoRestoreOperation,
            format!(
                "no restore operation in the schema covers {}: add one, or restore each kind separately",
                kinds.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
        several => Err(AppError::new(ErrorCode::AmbiguousOperation,
            format!(
                "several restore operations fit ({}): name one in `operation`",
                several
                    .iter()
                    .map(|(o, _)| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Create a bulk restore change; returns its id. Bad input is refused with every problem
/// (unknown, purged or wrong-kind IDs with their line in `entities`) and nothing is stored.
#[tracing::instrument(name = "restore::create", skip_all, fields(user = user.id))]
pub fn create(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    req: RestoreRequest,
) -> AppResult<i64> {
    check_request(&req)?;
    let spec = spec_of(conn, user, &req)?;
    // The kinds involved decide the operation (and so the policy and the implementing team).
    let kinds = kinds_involved(conn, &spec)?;
    let op = pick_operation(schema, req.operation.as_deref(), &kinds)?;
    check_teams(conn, user, &req.requesting_team, op)?;
    let point = point(conn, &spec)?;

    write_tx(conn, |conn| {
        let r = resolve_checked(conn, schema, op, &spec, &point)?;
        check_undone(conn, user, &r, &point)?;
        let (title, rationale) = texts(&req, &spec, &r)?;
        let c = insert_submitted(
            conn,
            schema,
            user,
            ChangeHead {
                title,
                rationale,
                requesting_team: req.requesting_team.clone(),
                implementing_team: op.implemented_by.clone(),
                operation: op.name.clone(),
                params: "{}".into(),
                selector: spec.selector().to_string(),
                expect: None,
                not_before: None,
                not_after: None,
                rollback_of: None,
            },
            &r,
            Derived::Restore(spec.clone()),
        )?;
        Ok(c.id)
    })
}

/// The request names something to restore and one point to restore it to, not in the
/// future.
fn check_request(req: &RestoreRequest) -> AppResult<()> {
    if req.entities.iter().all(|e| e.trim().is_empty()) && req.changes.is_empty() {
        return Err(AppError::new(
            ErrorCode::EmptyRestore,
            "name what to restore: `entities` (IDs) and/or `changes` (everything they touched)",
        ));
    }
    if req.before_change.is_some() && req.at.is_some() {
        return Err(AppError::new(
            ErrorCode::AmbiguousPoint,
            "give either `before_change` or `at`, not both",
        ));
    }
    if req.changes.is_empty() && req.before_change.is_none() && req.at.is_none() {
        return Err(AppError::new(
            ErrorCode::NoPoint,
            "say to which point the entities go back: `before_change` (a change) or `at` (a time)",
        ));
    }
    if let Some(at) = req.at {
        if at > chrono::Utc::now() {
            return Err(AppError::new(
                ErrorCode::FuturePoint,
                format!("`at` ({at}) is in the future"),
            ));
        }
    }
    Ok(())
}

/// What the request restores and to which point, every change it names (in `changes` or
/// `before_change`) checked with [`check_undoable`].
fn spec_of(conn: &mut DbConn, user: &CurrentUser, req: &RestoreRequest) -> AppResult<RestoreSpec> {
    let mut changes = Vec::new();
    for c in &req.changes {
        changes.push(c.id()?);
    }
    changes.sort_unstable();
    changes.dedup();
    let before_change = req.before_change.as_ref().map(ChangeRef::id).transpose()?;
    for id in changes.iter().chain(before_change.iter()) {
        check_undoable(conn, user, *id)?;
    }
    Ok(RestoreSpec {
        entities: req
            .entities
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        changes,
        before_change,
        at: req.at.map(|t| t.naive_utc()),
    })
}

/// Change `id` exists, is for this person's teams to undo (undoing a change, or going back
/// to before one, is for its teams, as a rollback is) and ran.
fn check_undoable(conn: &mut DbConn, user: &CurrentUser, id: i64) -> AppResult<()> {
    let Some(c) = crate::db::changes::get(conn, id)? else {
        return Err(AppError::not_found("change", number(id)));
    };
    if !involved(user, &c) {
        return Err(AppError::new(
            ErrorCode::Forbidden,
            format!(
                "only the teams of {} (`{}` and `{}`) can undo it; you are in {}",
                number(id),
                c.requesting_team,
                c.implementing_team,
                if user.teams.is_empty() {
                    "no team".to_string()
                } else {
                    user.teams.join(", ")
                }
            ),
        ));
    }
    if exec_repo::for_change(conn, id)?.is_none() {
        return Err(AppError::new(
            ErrorCode::NotExecuted,
            format!("{} never ran, so it changed nothing to restore", number(id)),
        ));
    }
    Ok(())
}

/// The kinds of the entities the restore names and of those its changes touched.
fn kinds_involved(conn: &mut DbConn, spec: &RestoreSpec) -> AppResult<BTreeSet<String>> {
    let mut ids: Vec<String> = spec.entities.clone();
    ids.extend(exec_repo::touched_by(conn, &spec.changes)?);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    Ok(crate::db::inventory::fetch_lite(conn, &refs)?
        .into_iter()
        .map(|e| e.kind)
        .collect())
}

/// The restore's resolution, refused (422 `invalid_restore`, every problem in the details)
/// when it has errors.
fn resolve_checked(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    spec: &RestoreSpec,
    point: &RestorePoint,
) -> AppResult<Resolution> {
    let r = resolve::resolve_restore(conn, schema, op, spec, point)?;
    if r.error_count > 0 {
        let first = r
            .errors
            .first()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        return Err(AppError::new(
            ErrorCode::InvalidRestore,
            format!(
                "{} problem(s) with what to restore; the first: {first}",
                r.error_count
            ),
        )
        .with_details(json!({"error_count": r.error_count, "errors": r.errors})));
    }
    Ok(r)
}

/// A restore undoes every change after its point on these entities, not only the ones
/// named: each is for its teams, as its rollback would be.
fn check_undone(
    conn: &mut DbConn,
    user: &CurrentUser,
    r: &Resolution,
    point: &RestorePoint,
) -> AppResult<()> {
    let ids: Vec<&str> = r.targets.iter().map(|t| t.id.as_str()).collect();
    for undone in exec_repo::changes_undone(conn, &ids, point)? {
        let Some(c) = crate::db::changes::get(conn, undone)? else {
            continue;
        };
        if !involved(user, &c) {
            return Err(AppError::new(ErrorCode::Forbidden,
                format!(
                    "this restore would also undo {} (`{}` and `{}`), and only its teams can undo it; restore to a later point or ask them",
                    number(undone),
                    c.requesting_team,
                    c.implementing_team
                ),
            ));
        }
    }
    Ok(())
}

/// The restore's title and rationale: the requester's, or written from what it restores
/// and to which point.
fn texts(
    req: &RestoreRequest,
    spec: &RestoreSpec,
    r: &Resolution,
) -> AppResult<(Title, Rationale)> {
    let to = match (&spec.at, spec.before_change) {
        (Some(t), _) => format!("as at {} UTC", t.format("%Y-%m-%d %H:%M:%S")),
        (None, Some(c)) => format!("as before {}", number(c)),
        (None, None) => "as before the changes that touched them".to_string(),
    };
    let from_changes = spec
        .changes
        .iter()
        .map(|c| number(*c))
        .collect::<Vec<_>>()
        .join(", ");
    let title = match req.title.as_deref().filter(|t| !t.trim().is_empty()) {
        Some(t) => check_title(t)?,
        None => {
            let t = if from_changes.is_empty() {
                format!("Restore {} entities {to}", r.targets.len())
            } else {
                format!("Restore what {from_changes} changed")
            };
            Title::generated(&t)
        }
    };
    let rationale = match req.rationale.as_deref() {
        Some(r) => check_rationale(r)?,
        None => Rationale::generated(&format!(
            "Bulk restore of {} entities {to}: {}.",
            r.targets.len(),
            r.summary.text
        )),
    };
    Ok((title, rationale))
}
