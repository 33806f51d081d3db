//! The bulk import: NDJSON lines streamed in batches inside one write transaction, each
//! batch checked against the inventory and the lines before it, then written with a
//! version row per changed entity; the `imports` row and the audit event at the end.

use std::collections::HashMap;

use diesel::prelude::*;
use serde::Serialize;

use super::lines::{check_attrs, check_identity, parse_line, ImportLine, LineProblem};
use crate::db::audit::{self, Actor};
use crate::db::models::{EntityVersion, NewEntity};
use crate::db::schema::entities;
use crate::db::{imports, now, per_chunk, write_tx, DbConn, WriteTx, CHUNK};
use crate::domain::event::Event;
use crate::domain::lines::{clip, clip_to, Line};
use crate::domain::{EntityState, Kind, Schema};
use crate::with_concrete;

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
#[derive(Queryable, Selectable)]
#[diesel(table_name = entities)]
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
    let rows: Vec<Current> = per_chunk(ids, |chunk| {
        entities::table
            .filter(entities::id.eq_any(chunk))
            .select(Current::as_select())
            .load(conn)
    })?;
    Ok(rows.into_iter().map(|e| (e.id.clone(), e)).collect())
}

/// The version row of an import's update of `e` to `p`. The state is not the import's to
/// change; it is recorded so a version row reads the same whoever wrote it.
fn version_row(
    id: String,
    e: &Current,
    p: Pending,
    t: chrono::NaiveDateTime,
    import_id: i64,
) -> EntityVersion {
    EntityVersion {
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
        import_id: Some(import_id),
        before_parent: e.parent_id.clone(),
        after_parent: p.parent,
    }
}

/// The lines of one batch that passed, by ID (a later line for the same ID wins), and
/// the IDs in the order they were first accepted.
struct Accepted {
    lines: HashMap<String, Pending>,
    order: Vec<String>,
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

    /// Kind `name` as messages say it ("an app installation").
    fn a_kind(&self, name: &str) -> Option<String> {
        self.schema.kind(name).map(|k| k.a_describe())
    }

    /// The line's parent is there when its kind needs one (in the inventory or earlier in
    /// the file: `kind_of`) and of the right kind, and absent for a root kind.
    fn check_parent<'a>(
        &self,
        kind: &Kind,
        l: &ImportLine,
        kind_of: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<(), LineProblem> {
        match (&kind.parent, &l.parent) {
            (None, Some(p)) => Err((
                "unexpected_parent",
                format!(
                    "{} is a root kind and has no parent, but the line names parent `{}`",
                    kind.describe(),
                    clip(p)
                ),
            )),
            (Some(pk), None) => {
                let pkind = self.a_kind(pk).unwrap_or_default();
                Err((
                    "missing_parent",
                    format!("{} must name its parent, {pkind}", kind.a_describe()),
                ))
            }
            (Some(pk), Some(p)) => {
                let want = self.a_kind(pk).unwrap_or_default();
                match kind_of(p) {
                    None => Err(("parent_not_found", format!("parent `{}` does not exist (it must be imported earlier in the file or be in the inventory); expected {want}", clip(p)))),
                    Some(actual) if actual != pk => {
                        let is = self.a_kind(actual).unwrap_or_else(|| actual.to_string());
                        Err((
                            "wrong_parent_kind",
                            format!(
                                "parent `{}` is {is}, but the parent of {} must be {want}",
                                clip(p),
                                kind.a_describe()
                            ),
                        ))
                    }
                    _ => Ok(()),
                }
            }
            (None, None) => Ok(()),
        }
    }

    /// Every check of one line: its identity, an ID not taken by another kind (in the
    /// inventory, `existing`, or earlier in the batch, `accepted`), its parent, its
    /// attributes. What it will write when it passes.
    fn check_line(
        &self,
        l: &ImportLine,
        accepted: &HashMap<String, Pending>,
        existing: &HashMap<String, Current>,
    ) -> Result<Pending, LineProblem> {
        let kind = check_identity(self.schema, l)?;
        let kind_of = |id: &str| {
            accepted
                .get(id)
                .map(|p| p.kind.as_str())
                .or_else(|| existing.get(id).map(|e| e.kind.as_str()))
        };
        if let Some(pk) = kind_of(&l.id) {
            if pk != kind.name {
                let other = self.a_kind(pk).unwrap_or_else(|| pk.to_string());
                return Err(("id_taken", format!("`{}` is already {other}; an ID is unique across all kinds, so it cannot also be {}", l.id, kind.a_describe())));
            }
        }
        self.check_parent(kind, l, kind_of)?;
        let attrs = check_attrs(kind, l)?;
        let name = l
            .name
            .clone()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| l.id.clone());
        Ok(Pending {
            kind: l.kind.clone(),
            parent: l.parent.clone(),
            name,
            attrs: serde_json::to_string(&attrs).unwrap_or_default(),
        })
    }

    /// The lines of `batch` that pass; the others are reported.
    fn accept(
        &mut self,
        batch: &mut Vec<(u64, ImportLine)>,
        existing: &HashMap<String, Current>,
    ) -> Accepted {
        let mut out = Accepted {
            lines: HashMap::new(),
            order: Vec::new(),
        };
        for (n, l) in batch.drain(..) {
            match self.check_line(&l, &out.lines, existing) {
                Err((code, msg)) => self.error(n, Some(&l.id), code, msg),
                Ok(p) => {
                    if out.lines.insert(l.id.clone(), p).is_none() {
                        out.order.push(l.id);
                    }
                }
            }
        }
        out
    }

    /// Insert the new entities of `accepted`, update the changed ones (with their version
    /// rows) and count the unchanged.
    fn write(
        &mut self,
        conn: &mut DbConn,
        existing: &HashMap<String, Current>,
        mut accepted: Accepted,
    ) -> QueryResult<()> {
        let t = now();
        let mut inserts = Vec::new();
        let mut versions = Vec::new();
        for id in accepted.order {
            let p = accepted.lines.remove(&id).expect("accepted");
            match existing.get(&id) {
                Some(e) if e.parent_id == p.parent && e.name == p.name && e.attrs == p.attrs => {
                    self.report.unchanged += 1;
                }
                Some(e) => {
                    diesel::update(entities::table.find(&id))
                        .set((
                            entities::parent_id.eq(&p.parent),
                            entities::name.eq(&p.name),
                            entities::attrs.eq(&p.attrs),
                            entities::version.eq(entities::version + 1),
                            entities::updated_at.eq(t),
                        ))
                        .execute(conn)?;
                    versions.push(version_row(id, e, p, t, self.import_id));
                    self.report.updated += 1;
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
        crate::db::exec::insert_versions(conn, &versions)?;
        Ok(())
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
        let accepted = self.accept(batch, &existing);
        self.write(conn, &existing, accepted)
    }

    /// Read every line, checking and writing them a batch at a time.
    fn read<I, L>(&mut self, conn: &mut DbConn, lines: I) -> Result<(), TxOutcome>
    where
        I: Iterator<Item = Result<L, String>>,
        L: Into<Line>,
    {
        let mut batch = Vec::with_capacity(BATCH);
        for (i, line) in lines.enumerate() {
            let n = i as u64 + 1;
            let line = match line.map_err(TxOutcome::Read)?.into() {
                Line::Text(t) => t,
                Line::Unreadable { code, message } => {
                    self.report.lines = n;
                    self.error(n, None, code, message);
                    continue;
                }
            };
            self.report.lines = n;
            match parse_line(&line) {
                Ok(Some(l)) => batch.push((n, l)),
                Ok(None) => continue,
                Err(msg) => self.error(n, None, "invalid_json", msg),
            }
            if batch.len() >= BATCH {
                self.batch(conn, &mut batch)?;
            }
        }
        self.batch(conn, &mut batch)?;
        Ok(())
    }
}

/// The audit event of committed import `import_id` and its `imports` row's totals.
fn record_import(
    conn: &mut WriteTx<'_>,
    actor: &Actor,
    import_id: i64,
    report: &ImportReport,
) -> QueryResult<()> {
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
        partial: report.partial,
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
    )
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
        imp.read(conn, lines)?;
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
        record_import(conn, actor, import_id, &report)?;
        Ok(report)
    });
    match result {
        Ok(r) => {
            if r.committed && r.inserted + r.updated > 0 {
                crate::db::refresh_statistics(conn);
            }
            Ok(r)
        }
        Err(TxOutcome::Rejected(r)) => Ok(r),
        Err(TxOutcome::Db(e)) => Err(ImportFailure::Db(e)),
        Err(TxOutcome::Read(e)) => Err(ImportFailure::Read(e)),
    }
}
