//! The inventory: entities of the schema's kinds. Bulk import streams NDJSON in batches
//! inside one write transaction, so a file with errors writes nothing (unless the
//! caller asked for `partial`), and memory stays bounded whatever the file's size. Every
//! committed import has an `imports` row, and every entity it changed a version row
//! (before and after, the import's id), written in the same transaction.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::audit::{self, Actor};
use super::models::{Entity, EntityVersion, NewEntity};
use super::schema::entities;
use super::{imports, now, write_tx, DbConn, CHUNK};
use crate::domain::event::Event;
use crate::domain::lines::{clip, clip_to, Line};
use crate::domain::{EntityState, Kind, Schema};
use crate::with_concrete;

/// The columns resolution needs.
#[derive(Debug, Clone, Queryable)]
pub struct EntityLite {
    pub id: String,
    pub kind: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub attrs: String,
    pub state: EntityState,
}

type LiteCols = (
    entities::id,
    entities::kind,
    entities::parent_id,
    entities::name,
    entities::attrs,
    entities::state,
);
const LITE: LiteCols = (
    entities::id,
    entities::kind,
    entities::parent_id,
    entities::name,
    entities::attrs,
    entities::state,
);

pub fn get(conn: &mut DbConn, id: &str) -> QueryResult<Option<Entity>> {
    entities::table
        .find(id)
        .select(Entity::as_select())
        .first(conn)
        .optional()
}

/// Fetch many entities by id (chunked `IN` lists).
pub fn fetch_lite(conn: &mut DbConn, ids: &[&str]) -> QueryResult<Vec<EntityLite>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<EntityLite> = entities::table
            .filter(entities::id.eq_any(chunk))
            .select(LITE)
            .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

/// Like [`fetch_lite`] without the attributes (explicit IDs and ancestors need none).
pub fn fetch_refs(conn: &mut DbConn, ids: &[&str]) -> QueryResult<Vec<EntityLite>> {
    let mut sorted: Vec<&str> = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::with_capacity(sorted.len());
    for chunk in sorted.chunks(CHUNK) {
        let rows: Vec<(String, String, Option<String>, String, EntityState)> =
            with_concrete!(&mut *conn, |c| entities::table
                .filter(entities::id.eq_any(chunk))
                .select((
                    entities::id,
                    entities::kind,
                    entities::parent_id,
                    entities::name,
                    entities::state
                ))
                .load(c))?;
        out.extend(
            rows.into_iter()
                .map(|(id, kind, parent_id, name, state)| EntityLite {
                    id,
                    kind,
                    parent_id,
                    name,
                    attrs: String::new(),
                    state,
                }),
        );
    }
    Ok(out)
}

/// Entities of `kind` whose parent is one of `parents`.
pub fn children_lite(
    conn: &mut DbConn,
    parents: &[&str],
    kind: &str,
) -> QueryResult<Vec<EntityLite>> {
    let mut out = Vec::new();
    for chunk in parents.chunks(CHUNK) {
        let rows: Vec<EntityLite> = with_concrete!(&mut *conn, |c| entities::table
            .filter(entities::parent_id.eq_any(chunk))
            .filter(entities::kind.eq(kind))
            .select(LITE)
            .load(c))?;
        out.extend(rows);
    }
    Ok(out)
}

/// Active entities of any kind whose parent is one of `parents` (cascades).
pub fn active_children_lite(conn: &mut DbConn, parents: &[&str]) -> QueryResult<Vec<EntityLite>> {
    let mut out = Vec::new();
    for chunk in parents.chunks(CHUNK) {
        let rows: Vec<EntityLite> = with_concrete!(&mut *conn, |c| entities::table
            .filter(entities::parent_id.eq_any(chunk))
            .filter(entities::state.eq(EntityState::Active))
            .select(LITE)
            .load(c))?;
        out.extend(rows);
    }
    Ok(out)
}

/// What a `where` query over a whole kind found, filtered by the database.
pub struct Matching {
    /// Matches in one of the wanted states, in ID order, at most the limit asked for.
    pub rows: Vec<EntityLite>,
    /// All matches in a wanted state, when there were more than the limit.
    pub total: Option<u64>,
    /// Matches in other states (left out, and said so).
    pub others: u64,
}

/// `q` (a boxed `entities` query) narrowed to rows whose attribute `k` equals `v` for every
/// pair of `filter`, in the backend's JSON syntax (`sqlite`: `json_extract`, `pg`: `->>`),
/// names and values bound.
macro_rules! with_attrs {
    ($q:expr, $filter:expr, sqlite) => {
        with_attrs!(@ $q, $filter, "json_extract(entities.attrs, ", |k: &str| format!(
            "$.\"{}\"",
            k.replace('"', "")
        ))
    };
    ($q:expr, $filter:expr, pg) => {
        with_attrs!(@ $q, $filter, "(entities.attrs::jsonb ->> ", |k: &str| k.to_string())
    };
    (@ $q:expr, $filter:expr, $open:expr, $path:expr) => {{
        let mut q = $q;
        for (k, v) in $filter {
            q = q.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>($open)
                    .bind::<diesel::sql_types::Text, _>($path(k))
                    .sql(") = ")
                    .bind::<diesel::sql_types::Text, _>(v.clone()),
            );
        }
        q
    }};
}

/// Entities of `kind` whose attributes equal every value of `filter`, with the attribute
/// comparison and the limit in SQL (`json_extract` on SQLite, `->>` on PostgreSQL), so a
/// query without a scope never loads a whole kind. Attribute names must be the kind's
/// (the resolver checks them first).
pub fn matching_of_kind(
    conn: &mut DbConn,
    kind: &str,
    filter: &BTreeMap<String, String>,
    states: &[EntityState],
    limit: u64,
) -> QueryResult<Matching> {
    // One boxed query per backend and purpose: the JSON operator differs.
    macro_rules! matching {
        ($backend:ty, $c:expr, $json:ident) => {{
            let base = || {
                let q = entities::table
                    .filter(entities::kind.eq(kind.to_string()))
                    .into_boxed::<$backend>();
                with_attrs!(q, filter, $json)
            };
            let wanted: Vec<EntityState> = states.to_vec();
            let rows: Vec<EntityLite> = base()
                .filter(entities::state.eq_any(wanted.clone()))
                .order(entities::id.asc())
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .select(LITE)
                .load($c)?;
            let total = if rows.len() as u64 >= limit {
                Some(
                    base()
                        .filter(entities::state.eq_any(wanted.clone()))
                        .count()
                        .get_result::<i64>($c)? as u64,
                )
            } else {
                None
            };
            let others = base()
                .filter(entities::state.ne_all(wanted))
                .count()
                .get_result::<i64>($c)? as u64;
            Ok(Matching {
                rows,
                total,
                others,
            })
        }};
    }
    match conn {
        DbConn::Sqlite(c) => matching!(diesel::sqlite::Sqlite, c, sqlite),
        DbConn::Pg(c) => matching!(diesel::pg::Pg, c, pg),
    }
}

/// [`children_lite`] with the attribute filter in SQL, as in [`matching_of_kind`]: a scope
/// with a `where` reads only the children that match (a scope of 400,000 app
/// installations where 100,000 have the app loads 100,000 rows, not 400,000).
pub fn children_lite_where(
    conn: &mut DbConn,
    parents: &[&str],
    kind: &str,
    filter: &BTreeMap<String, String>,
) -> QueryResult<Vec<EntityLite>> {
    if filter.is_empty() {
        return children_lite(conn, parents, kind);
    }
    macro_rules! children {
        ($backend:ty, $c:expr, $json:ident) => {{
            let mut out = Vec::new();
            for chunk in parents.chunks(CHUNK) {
                let q = entities::table
                    .filter(entities::parent_id.eq_any(chunk))
                    .filter(entities::kind.eq(kind))
                    .into_boxed::<$backend>();
                let q = with_attrs!(q, filter, $json);
                out.extend(q.select(LITE).load::<EntityLite>($c)?);
            }
            Ok(out)
        }};
    }
    match conn {
        DbConn::Sqlite(c) => children!(diesel::sqlite::Sqlite, c, sqlite),
        DbConn::Pg(c) => children!(diesel::pg::Pg, c, pg),
    }
}

/// Active children per parent, for the given parents.
pub fn active_children_counts(
    conn: &mut DbConn,
    parents: &[&str],
) -> QueryResult<HashMap<String, i64>> {
    let mut out = HashMap::new();
    for chunk in parents.chunks(CHUNK) {
        let rows: Vec<(Option<String>, i64)> = entities::table
            .filter(entities::parent_id.eq_any(chunk))
            .filter(entities::state.eq(EntityState::Active))
            .group_by(entities::parent_id)
            .select((entities::parent_id, diesel::dsl::count_star()))
            .load(conn)?;
        out.extend(rows.into_iter().filter_map(|(p, n)| p.map(|p| (p, n))));
    }
    Ok(out)
}

/// Ancestors of an entity, nearest first.
pub fn ancestry(conn: &mut DbConn, e: &Entity) -> QueryResult<Vec<Entity>> {
    let mut out = Vec::new();
    let mut cur = e.parent_id.clone();
    while let Some(id) = cur {
        match get(conn, &id)? {
            Some(p) => {
                cur = p.parent_id.clone();
                out.push(p);
            }
            None => break,
        }
        if out.len() > 64 {
            break; // defensive: the schema forbids cycles
        }
    }
    Ok(out)
}

/// Children counts per (kind, state).
pub fn children_counts(
    conn: &mut DbConn,
    id: &str,
) -> QueryResult<Vec<(String, EntityState, i64)>> {
    entities::table
        .filter(entities::parent_id.eq(id))
        .group_by((entities::kind, entities::state))
        .select((entities::kind, entities::state, diesel::dsl::count_star()))
        .order((entities::kind.asc(), entities::state.asc()))
        .load(conn)
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListFilter {
    pub kind: Option<String>,
    pub parent: Option<String>,
    pub state: Option<String>,
    /// ID prefix or case-insensitive name substring.
    pub q: Option<String>,
    /// Return entities with id greater than this (keyset pagination).
    pub after: Option<String>,
    pub limit: Option<i64>,
}

pub fn list(conn: &mut DbConn, f: &ListFilter) -> QueryResult<Vec<Entity>> {
    let mut q = entities::table.into_boxed();
    if let Some(k) = &f.kind {
        q = q.filter(entities::kind.eq(k.clone()));
    }
    if let Some(p) = &f.parent {
        q = q.filter(entities::parent_id.eq(p.clone()));
    }
    if let Some(s) = &f.state {
        // The service refuses an unknown state; here it would match nothing.
        let states: Vec<EntityState> = EntityState::parse(s).into_iter().collect();
        q = q.filter(entities::state.eq_any(states));
    }
    if let Some(text) = f.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let esc = text
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        q = q.filter(
            entities::id
                .like(format!("{esc}%"))
                .escape('\\')
                .or(entities::name.like(format!("%{esc}%")).escape('\\')),
        );
    }
    if let Some(a) = &f.after {
        q = q.filter(entities::id.gt(a.clone()));
    }
    let limit = f.limit.unwrap_or(100).clamp(1, 1000);
    q.order(entities::id.asc())
        .limit(limit)
        .select(Entity::as_select())
        .load(conn)
}

// ---- import ---------------------------------------------------------------------------

/// One NDJSON line of an inventory import, as parsed (not yet checked).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportLine {
    pub kind: String,
    pub id: String,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub attrs: BTreeMap<String, serde_json::Value>,
}

/// A line's problem: its code and message.
pub type LineProblem = (&'static str, String);

/// Parse one line of the NDJSON body: `Ok(None)` for a blank line, `Err` with the message
/// reported for it (code `invalid_json`).
pub fn parse_line(line: &str) -> Result<Option<ImportLine>, String> {
    let text = line.trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<ImportLine>(text)
        .map(Some)
        .map_err(|e| {
            // serde quotes the offending value whole: keep its start and the position.
            let full = e.to_string();
            let at = format!(" at line {} column {}", e.line(), e.column());
            let what = full.strip_suffix(at.as_str()).unwrap_or(&full);
            let at = if what.len() < full.len() {
                at.as_str()
            } else {
                ""
            };
            format!(
                "not a valid entity line: {}{at}",
                clip_to(what, 2 * crate::domain::lines::ECHO_CHARS)
            )
        })
}

/// The first checks of a parsed line, which need neither the inventory nor the other
/// lines: its kind exists and its ID is usable and has the kind's syntax.
pub fn check_identity<'s>(schema: &'s Schema, l: &ImportLine) -> Result<&'s Kind, LineProblem> {
    let Some(kind) = schema.kind(&l.kind) else {
        let known = schema.kinds.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err((
            "unknown_kind",
            format!("unknown kind `{}` (the schema has: {known})", clip(&l.kind)),
        ));
    };
    if l.id.is_empty()
        || l.id.len() > MAX_ID_LEN
        || l.id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err((
            "invalid_id",
            format!(
                "`{}` is not a usable ID: IDs are 1–{MAX_ID_LEN} characters without spaces",
                clip(&l.id)
            ),
        ));
    }
    if !kind.matches(&l.id) {
        return Err((
            "pattern_mismatch",
            format!(
                "`{}` is not a valid {} ID: expected {}",
                l.id,
                kind.describe(),
                kind.syntax_hint()
            ),
        ));
    }
    Ok(kind)
}

/// The line's attributes, checked against its kind (the last check of a line): every
/// attribute is one of the kind's and a string.
pub fn check_attrs(kind: &Kind, l: &ImportLine) -> Result<BTreeMap<String, String>, LineProblem> {
    let mut attrs = BTreeMap::new();
    for (k, v) in &l.attrs {
        if !kind.attributes.contains(k) {
            return Err((
                "unknown_attribute",
                format!(
                    "unknown attribute `{}` for {} (its attributes: {})",
                    clip(k),
                    kind.describe(),
                    if kind.attributes.is_empty() {
                        "none".to_string()
                    } else {
                        kind.attributes.join(", ")
                    }
                ),
            ));
        }
        match v {
            serde_json::Value::String(s) => {
                attrs.insert(k.clone(), s.clone());
            }
            other => {
                return Err((
                    "invalid_attribute",
                    format!(
                        "attribute `{}` must be a string, got {}",
                        clip(k),
                        clip(&other.to_string())
                    ),
                ));
            }
        }
    }
    Ok(attrs)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub lines: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// The first errors (at most [`MAX_REPORTED_ERRORS`]); `rejected` is the total.
    pub errors: Vec<LineError>,
    pub partial: bool,
    /// Whether anything was written.
    pub committed: bool,
    /// The import's id (`GET /api/v1/imports/{id}`), when it was committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import: Option<i64>,
}

pub const MAX_REPORTED_ERRORS: usize = 1000;
const BATCH: usize = 2000;
use crate::domain::selector::MAX_ID_LEN;
/// Longest message of one rejected line.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Why an import could not run at all (as opposed to bad lines, which are in the report).
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    #[error("reading the input failed: {0}")]
    Read(String),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

enum TxOutcome {
    Db(diesel::result::Error),
    Read(String),
    Rejected(ImportReport),
}

impl From<diesel::result::Error> for TxOutcome {
    fn from(e: diesel::result::Error) -> Self {
        TxOutcome::Db(e)
    }
}

struct Pending {
    kind: String,
    parent: Option<String>,
    name: String,
    attrs: String,
}

/// What the importer compares an existing entity with, and the version it bumps.
#[derive(Queryable)]
struct Current {
    id: String,
    kind: String,
    parent_id: Option<String>,
    name: String,
    attrs: String,
    state: EntityState,
    version: i64,
}

/// The current rows of `ids` (chunked `IN` lists): one query per chunk gives both the
/// kinds validation needs and the before-state of a version row.
fn fetch_current(conn: &mut DbConn, ids: &[&str]) -> QueryResult<HashMap<String, Current>> {
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<Current> = entities::table
            .filter(entities::id.eq_any(chunk))
            .select((
                entities::id,
                entities::kind,
                entities::parent_id,
                entities::name,
                entities::attrs,
                entities::state,
                entities::version,
            ))
            .load(conn)?;
        out.extend(rows.into_iter().map(|e| (e.id.clone(), e)));
    }
    Ok(out)
}

struct Importer<'s> {
    schema: &'s Schema,
    report: ImportReport,
    import_id: i64,
}

impl Importer<'_> {
    fn error(&mut self, line: u64, id: Option<&str>, code: &str, message: String) {
        self.report.rejected += 1;
        if self.report.errors.len() < MAX_REPORTED_ERRORS {
            // Bounded whatever the line held: IDs and values echoed are clipped where the
            // message is made, and the message as a whole here.
            self.report.errors.push(LineError {
                line,
                id: id.map(clip),
                code: code.into(),
                message: clip_to(&message, MAX_MESSAGE_CHARS),
            });
        }
    }

    fn batch(&mut self, conn: &mut DbConn, batch: &mut Vec<(u64, ImportLine)>) -> QueryResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut wanted: Vec<&str> = batch.iter().map(|(_, l)| l.id.as_str()).collect();
        wanted.extend(batch.iter().filter_map(|(_, l)| l.parent.as_deref()));
        wanted.sort_unstable();
        wanted.dedup();
        let existing = fetch_current(conn, &wanted)?;

        // Lines of this batch that passed, by id (a later line for the same id wins).
        let mut accepted: HashMap<String, Pending> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for (n, l) in batch.drain(..) {
            let kind = match check_identity(self.schema, &l) {
                Ok(kind) => kind,
                Err((code, msg)) => {
                    self.error(n, Some(&l.id), code, msg);
                    continue;
                }
            };
            let prior_kind = accepted
                .get(&l.id)
                .map(|p| p.kind.as_str())
                .or_else(|| existing.get(&l.id).map(|e| e.kind.as_str()));
            if let Some(pk) = prior_kind {
                if pk != kind.name {
                    let other = self
                        .schema
                        .kind(pk)
                        .map(|k| k.a_describe())
                        .unwrap_or_else(|| pk.to_string());
                    self.error(n, Some(&l.id), "id_taken", format!("`{}` is already {other}; an ID is unique across all kinds, so it cannot also be {}", l.id, kind.a_describe()));
                    continue;
                }
            }
            match (&kind.parent, &l.parent) {
                (None, Some(p)) => {
                    self.error(
                        n,
                        Some(&l.id),
                        "unexpected_parent",
                        format!(
                            "{} is a root kind and has no parent, but the line names parent `{}`",
                            kind.describe(),
                            clip(p)
                        ),
                    );
                    continue;
                }
                (Some(pk), None) => {
                    let pkind = self
                        .schema
                        .kind(pk)
                        .map(|k| k.a_describe())
                        .unwrap_or_default();
                    self.error(
                        n,
                        Some(&l.id),
                        "missing_parent",
                        format!("{} must name its parent, {pkind}", kind.a_describe()),
                    );
                    continue;
                }
                (Some(pk), Some(p)) => {
                    let parent_kind = accepted
                        .get(p)
                        .map(|x| x.kind.as_str())
                        .or_else(|| existing.get(p).map(|e| e.kind.as_str()));
                    let want = self
                        .schema
                        .kind(pk)
                        .map(|k| k.a_describe())
                        .unwrap_or_default();
                    match parent_kind {
                        None => {
                            self.error(n, Some(&l.id), "parent_not_found", format!("parent `{}` does not exist (it must be imported earlier in the file or be in the inventory); expected {want}", clip(p)));
                            continue;
                        }
                        Some(actual) if actual != pk => {
                            let is = self
                                .schema
                                .kind(actual)
                                .map(|k| k.a_describe())
                                .unwrap_or_else(|| actual.to_string());
                            self.error(
                                n,
                                Some(&l.id),
                                "wrong_parent_kind",
                                format!(
                                    "parent `{}` is {is}, but the parent of {} must be {want}",
                                    clip(p),
                                    kind.a_describe()
                                ),
                            );
                            continue;
                        }
                        _ => {}
                    }
                }
                (None, None) => {}
            }
            let attrs = match check_attrs(kind, &l) {
                Ok(attrs) => attrs,
                Err((code, msg)) => {
                    self.error(n, Some(&l.id), code, msg);
                    continue;
                }
            };
            let name = l
                .name
                .clone()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| l.id.clone());
            if accepted
                .insert(
                    l.id.clone(),
                    Pending {
                        kind: l.kind.clone(),
                        parent: l.parent.clone(),
                        name,
                        attrs: serde_json::to_string(&attrs).unwrap_or_default(),
                    },
                )
                .is_none()
            {
                order.push(l.id);
            }
        }

        let t = now();
        let mut inserts = Vec::new();
        let mut versions = Vec::new();
        for id in order {
            let p = accepted.remove(&id).expect("accepted");
            match existing.get(&id) {
                Some(e) => {
                    if e.parent_id == p.parent && e.name == p.name && e.attrs == p.attrs {
                        self.report.unchanged += 1;
                    } else {
                        diesel::update(entities::table.find(&id))
                            .set((
                                entities::parent_id.eq(&p.parent),
                                entities::name.eq(&p.name),
                                entities::attrs.eq(&p.attrs),
                                entities::version.eq(entities::version + 1),
                                entities::updated_at.eq(t),
                            ))
                            .execute(conn)?;
                        // The state is not the import's to change; it is recorded so a
                        // version row reads the same whoever wrote it.
                        versions.push(EntityVersion {
                            entity_id: id,
                            version: e.version + 1,
                            change_id: None,
                            at: t,
                            before_state: e.state,
                            before_name: e.name.clone(),
                            before_attrs: e.attrs.clone(),
                            after_state: e.state,
                            after_name: p.name,
                            after_attrs: p.attrs,
                            import_id: Some(self.import_id),
                            before_parent: e.parent_id.clone(),
                            after_parent: p.parent,
                        });
                        self.report.updated += 1;
                    }
                }
                None => {
                    inserts.push(NewEntity {
                        id,
                        kind: p.kind,
                        parent_id: p.parent,
                        name: p.name,
                        attrs: p.attrs,
                        state: EntityState::Active,
                        version: 1,
                        created_at: t,
                        updated_at: t,
                    });
                }
            }
        }
        for chunk in inserts.chunks(CHUNK / 2) {
            with_concrete!(&mut *conn, |c| diesel::insert_into(entities::table)
                .values(chunk)
                .execute(c))?;
            self.report.inserted += chunk.len() as u64;
        }
        super::exec::insert_versions(conn, &versions)?;
        Ok(())
    }
}

/// Import NDJSON lines. Bad lines are reported with their number and reason; unless
/// `partial`, any bad line means nothing is written. `Err` only when the input could
/// not be read or the database failed.
pub fn import<I, L>(
    conn: &mut DbConn,
    schema: &Schema,
    lines: I,
    partial: bool,
    actor: &Actor,
) -> Result<ImportReport, ImportFailure>
where
    I: Iterator<Item = Result<L, String>>,
    L: Into<Line>,
{
    let result = write_tx(conn, |conn| {
        let import_id = imports::create(conn, &actor.0, partial, now())?;
        let mut imp = Importer {
            schema,
            report: ImportReport {
                partial,
                ..Default::default()
            },
            import_id,
        };
        let mut batch = Vec::with_capacity(BATCH);
        for (i, line) in lines.enumerate() {
            let n = i as u64 + 1;
            let line = match line.map_err(TxOutcome::Read)?.into() {
                Line::Text(t) => t,
                Line::Unreadable { code, message } => {
                    imp.report.lines = n;
                    imp.error(n, None, code, message);
                    continue;
                }
            };
            imp.report.lines = n;
            match parse_line(&line) {
                Ok(Some(l)) => batch.push((n, l)),
                Ok(None) => continue,
                Err(msg) => imp.error(n, None, "invalid_json", msg),
            }
            if batch.len() >= BATCH {
                imp.batch(conn, &mut batch)?;
            }
        }
        imp.batch(conn, &mut batch)?;
        let mut report = imp.report;
        // Unreadable lines are reported as they come, the others by batch: in line order.
        report.errors.sort_by_key(|e| e.line);
        if report.rejected > 0 && !partial {
            report.inserted = 0;
            report.updated = 0;
            report.unchanged = 0;
            return Err(TxOutcome::Rejected(report));
        }
        report.committed = true;
        report.import = Some(import_id);
        let changed = if report.updated > 0 {
            imports::changed_ids(conn, import_id)?
        } else {
            imports::empty_digest()
        };
        let detail = Event::InventoryImported {
            import: import_id,
            lines: report.lines,
            inserted: report.inserted,
            updated: report.updated,
            unchanged: report.unchanged,
            rejected: report.rejected,
            partial,
            changed: changed.count as u64,
            changed_ids_digest: changed.digest.clone(),
            // The IDs themselves up to a bound; beyond it the digest and the import's diff.
            changed_ids: changed.complete().then(|| changed.listed.clone()),
        };
        // Nobody is mailed about an import: stored directly (db is below `service::events`).
        let event = audit::append(conn, actor, None, &detail)?;
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        imports::finish(
            conn,
            import_id,
            imports::Counts {
                lines: n(report.lines),
                inserted: n(report.inserted),
                updated: n(report.updated),
                unchanged: n(report.unchanged),
                rejected: n(report.rejected),
            },
            &changed,
            event,
        )?;
        Ok(report)
    });
    match result {
        Ok(r) => {
            if r.committed && r.inserted + r.updated > 0 {
                super::refresh_statistics(conn);
            }
            Ok(r)
        }
        Err(TxOutcome::Rejected(r)) => Ok(r),
        Err(TxOutcome::Db(e)) => Err(ImportFailure::Db(e)),
        Err(TxOutcome::Read(e)) => Err(ImportFailure::Read(e)),
    }
}
