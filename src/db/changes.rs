//! Changes, their stored target lists, sign-offs and comments.

use diesel::prelude::*;

use super::models::{Change, ChangeTarget, Comment, NewChange, Signoff};

use super::schema::{change_targets, changes, comments, signoffs, users};
use super::{now, DbConn};
use crate::domain::execution::ItemStatus;
use crate::domain::resolution::ResolvedTarget;
use crate::domain::ChangeState;

pub fn insert(conn: &mut DbConn, c: &NewChange) -> QueryResult<Change> {
    diesel::insert_into(changes::table)
        .values(c)
        .returning(changes::all_columns)
        .get_result(conn)
}

pub fn get(conn: &mut DbConn, id: i64) -> QueryResult<Option<Change>> {
    changes::table
        .find(id)
        .select(Change::as_select())
        .first(conn)
        .optional()
}

/// Take the change's row lock for the rest of the transaction and return the row.
/// Every mutation of a change starts here, so they are serialised per change on
/// PostgreSQL (row lock) and SQLite (the write transaction already holds the lock).
pub fn lock(conn: &mut DbConn, id: i64) -> QueryResult<Option<Change>> {
    let n = diesel::update(changes::table.find(id))
        .set(changes::lock_version.eq(changes::lock_version + 1))
        .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    get(conn, id)
}

pub struct ResolutionFields<'a> {
    pub schema_hash: &'a str,
    pub fingerprint: Option<&'a str>,
    pub summary: String,
    pub errors: String,
    pub target_count: i64,
    pub root_count: i64,
    pub selects_everything: bool,
    pub error_count: i64,
}

pub fn store_resolution(conn: &mut DbConn, id: i64, f: &ResolutionFields<'_>) -> QueryResult<()> {
    let t = now();
    diesel::update(changes::table.find(id))
        .set((
            changes::schema_hash.eq(f.schema_hash),
            changes::fingerprint.eq(f.fingerprint),
            changes::summary.eq(&f.summary),
            changes::errors.eq(&f.errors),
            changes::target_count.eq(f.target_count),
            changes::root_count.eq(f.root_count),
            changes::selects_everything.eq(f.selects_everything),
            changes::error_count.eq(f.error_count),
            changes::resolved_at.eq(t),
            changes::updated_at.eq(t),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn update_text(
    conn: &mut DbConn,
    id: i64,
    title: &str,
    rationale: &str,
    params: &str,
    selector: &str,
    expect: Option<&str>,
) -> QueryResult<()> {
    diesel::update(changes::table.find(id))
        .set((
            changes::title.eq(title),
            changes::rationale.eq(rationale),
            changes::params.eq(params),
            changes::selector.eq(selector),
            changes::expect.eq(expect),
            changes::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_state(conn: &mut DbConn, id: i64, state: ChangeState) -> QueryResult<()> {
    let t = now();
    match state {
        ChangeState::AwaitingSignoff => diesel::update(changes::table.find(id))
            .set((
                changes::state.eq(state),
                changes::updated_at.eq(t),
                changes::submitted_at.eq(Some(t)),
                changes::approved_at.eq(None::<chrono::NaiveDateTime>),
            ))
            .execute(conn)?,
        ChangeState::Approved => diesel::update(changes::table.find(id))
            .set((
                changes::state.eq(state),
                changes::updated_at.eq(t),
                changes::approved_at.eq(Some(t)),
            ))
            .execute(conn)?,
        ChangeState::Draft => diesel::update(changes::table.find(id))
            .set((
                changes::state.eq(state),
                changes::updated_at.eq(t),
                changes::approved_at.eq(None::<chrono::NaiveDateTime>),
            ))
            .execute(conn)?,
        _ => diesel::update(changes::table.find(id))
            .set((changes::state.eq(state), changes::updated_at.eq(t)))
            .execute(conn)?,
    };
    // A scheduled start belongs to the approval it was made under: a change that leaves
    // `approved` (back for sign-off, rejected, cancelled, started) loses it, in the same
    // transaction, so a later approval never fires an old schedule.
    if state != ChangeState::Approved {
        diesel::delete(crate::db::schema::scheduled_starts::table.find(id)).execute(conn)?;
    }
    Ok(())
}

pub fn set_reject_reason(conn: &mut DbConn, id: i64, reason: &str) -> QueryResult<()> {
    diesel::update(changes::table.find(id))
        .set(changes::reject_reason.eq(Some(reason)))
        .execute(conn)
        .map(|_| ())
}

pub fn set_rolled_back_by(conn: &mut DbConn, id: i64, rollback: i64) -> QueryResult<()> {
    diesel::update(changes::table.find(id))
        .set(changes::rolled_back_by.eq(Some(rollback)))
        .execute(conn)
        .map(|_| ())
}

/// Replace the stored target list (positions follow the sorted order).
pub fn replace_targets(
    conn: &mut DbConn,
    change_id: i64,
    targets: &[ResolvedTarget],
) -> QueryResult<()> {
    diesel::delete(change_targets::table.filter(change_targets::change_id.eq(change_id)))
        .execute(conn)?;
    let row = |i: usize, t| target_row(change_id, i, t);
    match conn {
        // SQLite runs in-process: one cached single-row INSERT per target is fastest (no
        // re-rendering of a 12000-parameter statement per chunk).
        DbConn::Sqlite(c) => {
            for (i, t) in targets.iter().enumerate() {
                diesel::insert_into(change_targets::table)
                    .values(row(i, t))
                    .execute(c)?;
            }
        }
        // PostgreSQL is a round trip per statement: 100,000 single-row INSERTs took ~5 s
        // of a 100,000-target change; multi-row INSERTs of 1000 rows take a fraction.
        DbConn::Pg(c) => {
            for (n, chunk) in targets.chunks(PG_INSERT_ROWS).enumerate() {
                let rows: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, t)| row(n * PG_INSERT_ROWS + j, t))
                    .collect();
                diesel::insert_into(change_targets::table)
                    .values(rows)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

type TargetRow<'a> = (
    diesel::dsl::Eq<change_targets::change_id, i64>,
    diesel::dsl::Eq<change_targets::position, i64>,
    diesel::dsl::Eq<change_targets::kind, &'a String>,
    diesel::dsl::Eq<change_targets::entity_id, &'a String>,
    diesel::dsl::Eq<change_targets::scope_path, &'a String>,
    diesel::dsl::Eq<change_targets::name, &'a String>,
);

/// A stored target row bound straight from the resolved list (no copies).
fn target_row(change_id: i64, i: usize, t: &ResolvedTarget) -> TargetRow<'_> {
    (
        change_targets::change_id.eq(change_id),
        change_targets::position.eq(i as i64),
        change_targets::kind.eq(&t.kind),
        change_targets::entity_id.eq(&t.id),
        change_targets::scope_path.eq(&t.scope_path),
        change_targets::name.eq(&t.name),
    )
}

/// Rows per multi-row INSERT on PostgreSQL (6 parameters each, far below its 65535).
const PG_INSERT_ROWS: usize = 1000;

/// The stored target IDs of a change, in order.
pub fn target_ids(conn: &mut DbConn, change_id: i64) -> QueryResult<Vec<String>> {
    change_targets::table
        .filter(change_targets::change_id.eq(change_id))
        .order(change_targets::position.asc())
        .select(change_targets::entity_id)
        .load(conn)
}

pub fn targets_page(
    conn: &mut DbConn,
    change_id: i64,
    q: Option<&str>,
    status: Option<ItemStatus>,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<ChangeTarget>)> {
    use super::schema::{execution_items, executions};
    let base = || {
        let mut b = change_targets::table
            .filter(change_targets::change_id.eq(change_id))
            .into_boxed();
        // Only the targets whose execution item has this status (an item has its target's
        // position).
        if let Some(st) = status {
            b = b.filter(
                change_targets::position.eq_any(
                    execution_items::table
                        .filter(
                            execution_items::execution_id.eq_any(
                                executions::table
                                    .filter(executions::change_id.eq(change_id))
                                    .select(executions::id),
                            ),
                        )
                        .filter(execution_items::status.eq(st))
                        .select(execution_items::position),
                ),
            );
        }
        if let Some(q) = q.map(str::trim).filter(|s| !s.is_empty()) {
            let esc = q
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pat = format!("%{esc}%");
            b = b.filter(
                change_targets::entity_id
                    .like(pat.clone())
                    .escape('\\')
                    .or(change_targets::name.like(pat.clone()).escape('\\'))
                    .or(change_targets::scope_path.like(pat).escape('\\')),
            );
        }
        b
    };
    let total = base().count().get_result(conn)?;
    let rows = base()
        .order(change_targets::position.asc())
        .offset(offset)
        .limit(limit)
        .select(ChangeTarget::as_select())
        .load(conn)?;
    Ok((total, rows))
}

pub fn signoffs(conn: &mut DbConn, change_id: i64) -> QueryResult<Vec<(Signoff, String, String)>> {
    signoffs::table
        .inner_join(users::table)
        .filter(signoffs::change_id.eq(change_id))
        .order(signoffs::id.asc())
        .select((Signoff::as_select(), users::email, users::name))
        .load(conn)
}

/// A sign-off with its signer's email and name.
pub type SignoffRow = (Signoff, String, String);

/// The sign-offs of many changes in one query per chunk, by change.
pub fn signoffs_of(
    conn: &mut DbConn,
    change_ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, Vec<SignoffRow>>> {
    let mut out: std::collections::HashMap<i64, Vec<_>> = std::collections::HashMap::new();
    for chunk in change_ids.chunks(super::CHUNK) {
        let rows: Vec<(Signoff, String, String)> = signoffs::table
            .inner_join(users::table)
            .filter(signoffs::change_id.eq_any(chunk))
            .order(signoffs::id.asc())
            .select((Signoff::as_select(), users::email, users::name))
            .load(conn)?;
        for r in rows {
            out.entry(r.0.change_id).or_default().push(r);
        }
    }
    Ok(out)
}

pub fn insert_signoff(
    conn: &mut DbConn,
    change_id: i64,
    side: &str,
    user_id: i64,
    fingerprint: &str,
    comment: &str,
) -> QueryResult<i64> {
    diesel::insert_into(signoffs::table)
        .values((
            signoffs::change_id.eq(change_id),
            signoffs::side.eq(side),
            signoffs::user_id.eq(user_id),
            signoffs::fingerprint.eq(fingerprint),
            signoffs::comment.eq(comment),
            signoffs::stale.eq(false),
            signoffs::created_at.eq(now()),
        ))
        .returning(signoffs::id)
        .get_result(conn)
}

/// Mark every sign-off not on `current` as stale; returns how many became stale.
/// Approved changes on which `user_id` has a sign-off that is not stale.
pub fn approved_signed_by(conn: &mut DbConn, user_id: i64) -> QueryResult<Vec<i64>> {
    signoffs::table
        .inner_join(changes::table)
        .filter(signoffs::user_id.eq(user_id))
        .filter(signoffs::stale.eq(false))
        .filter(changes::state.eq(ChangeState::Approved))
        .select(changes::id)
        .distinct()
        .load(conn)
}

pub fn mark_stale(conn: &mut DbConn, change_id: i64, current: Option<&str>) -> QueryResult<usize> {
    let q = signoffs::table
        .filter(signoffs::change_id.eq(change_id))
        .filter(signoffs::stale.eq(false));
    match current {
        Some(fp) => diesel::update(q.filter(signoffs::fingerprint.ne(fp)))
            .set(signoffs::stale.eq(true))
            .execute(conn),
        None => diesel::update(q)
            .set(signoffs::stale.eq(true))
            .execute(conn),
    }
}

pub fn insert_comment(
    conn: &mut DbConn,
    change_id: i64,
    user_id: i64,
    body: &str,
) -> QueryResult<Comment> {
    diesel::insert_into(comments::table)
        .values((
            comments::change_id.eq(change_id),
            comments::user_id.eq(user_id),
            comments::body.eq(body),
            comments::created_at.eq(now()),
        ))
        .returning(comments::all_columns)
        .get_result(conn)
}

pub fn comments(conn: &mut DbConn, change_id: i64) -> QueryResult<Vec<(Comment, String, String)>> {
    comments::table
        .inner_join(users::table)
        .filter(comments::change_id.eq(change_id))
        .order(comments::id.asc())
        .select((Comment::as_select(), users::email, users::name))
        .load(conn)
}

/// Other open changes (awaiting sign-off, approved, executing) sharing targets with this
/// one, with how many targets they share.
pub fn conflicts(conn: &mut DbConn, change_id: i64) -> QueryResult<Vec<(Change, i64)>> {
    let open: Vec<ChangeState> = ChangeState::VALUES
        .iter()
        .copied()
        .filter(|s| s.is_open_claim())
        .collect();
    let mine_t = diesel::alias!(change_targets as mine_t);
    let mine = mine_t
        .filter(mine_t.field(change_targets::change_id).eq(change_id))
        .select(mine_t.field(change_targets::entity_id));
    let open_ids = changes::table
        .filter(changes::state.eq_any(open))
        .filter(changes::id.ne(change_id))
        .select(changes::id);
    let shared: Vec<(i64, i64)> = change_targets::table
        .filter(change_targets::change_id.eq_any(open_ids))
        .filter(change_targets::entity_id.eq_any(mine))
        .group_by(change_targets::change_id)
        .select((change_targets::change_id, diesel::dsl::count_star()))
        .load(conn)?;
    let mut out = Vec::new();
    for (id, n) in shared {
        if let Some(c) = get(conn, id)? {
            out.push((c, n));
        }
    }
    out.sort_by_key(|(c, _)| c.id);
    Ok(out)
}

#[derive(Debug, Default, Clone, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    pub state: Option<String>,
    pub team: Option<String>,
    pub operation: Option<String>,
    /// Changes with a number lower than this (pagination, newest first).
    pub before: Option<i64>,
    pub limit: Option<i64>,
    /// Only changes by this person (the web app's home page).
    #[serde(skip)]
    pub author: Option<i64>,
}

pub fn list(conn: &mut DbConn, f: &ListFilter) -> QueryResult<Vec<Change>> {
    let mut q = changes::table.into_boxed();
    if let Some(states) = &f.state {
        // An unknown state matches nothing, as it always has.
        let states: Vec<ChangeState> = states
            .split(',')
            .filter_map(|s| ChangeState::parse(s.trim()))
            .collect();
        q = q.filter(changes::state.eq_any(states));
    }
    if let Some(t) = &f.team {
        q = q.filter(
            changes::requesting_team
                .eq(t.clone())
                .or(changes::implementing_team.eq(t.clone())),
        );
    }
    if let Some(o) = &f.operation {
        q = q.filter(changes::operation.eq(o.clone()));
    }
    if let Some(b) = f.before {
        q = q.filter(changes::id.lt(b));
    }
    if let Some(a) = f.author {
        q = q.filter(changes::author_id.eq(a));
    }
    q.order(changes::id.desc())
        .limit(f.limit.unwrap_or(50).clamp(1, 500))
        .select(Change::as_select())
        .load(conn)
}

/// Changes awaiting sign-off that involve any of `teams`, oldest submission first.
pub fn awaiting_for_teams(
    conn: &mut DbConn,
    teams: &[String],
    reviewed_operations: &[String],
) -> QueryResult<Vec<Change>> {
    changes::table
        .filter(changes::state.eq(ChangeState::AwaitingSignoff))
        .filter(
            changes::requesting_team
                .eq_any(teams)
                .or(changes::implementing_team.eq_any(teams))
                .or(changes::operation.eq_any(reviewed_operations)),
        )
        .order((changes::submitted_at.asc(), changes::id.asc()))
        .select(Change::as_select())
        .load(conn)
}

/// Open changes resolved under a schema other than `hash`.
pub fn open_with_other_schema(conn: &mut DbConn, hash: &str) -> QueryResult<Vec<i64>> {
    changes::table
        .filter(changes::state.eq_any([
            ChangeState::Draft,
            ChangeState::AwaitingSignoff,
            ChangeState::Approved,
        ]))
        .filter(changes::schema_hash.ne(hash))
        .select(changes::id)
        .order(changes::id.asc())
        .load(conn)
}

/// Changes whose resolved list includes `entity`, newest first.
pub fn changes_touching(conn: &mut DbConn, entity: &str, limit: i64) -> QueryResult<Vec<Change>> {
    changes::table
        .filter(
            changes::id.eq_any(
                change_targets::table
                    .filter(change_targets::entity_id.eq(entity))
                    .select(change_targets::change_id),
            ),
        )
        .order(changes::id.desc())
        .limit(limit)
        .select(Change::as_select())
        .load(conn)
}
