//! The two migration folders describe one schema. `migration_folders_match`: the same
//! directory names. `migrated_schemas_match`: migrated from empty, SQLite and PostgreSQL
//! have the same tables, columns (name, type family, nullability), primary keys and indexes
//! (name, columns, uniqueness), but for the few differences in [`ALLOWED`], each with its
//! reason. The PostgreSQL half needs COUNTERSIGN_TEST_DATABASE_URL.

use std::collections::BTreeSet;

use countersign::db::{self, DbConn};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};

use crate::helpers::{Backend, TestDb};

/// Differences between the migrated schemas that are intended: (backend that has the fact,
/// the fact, why). A listed difference that no longer occurs fails the test too, so the
/// list stays short and true.
const ALLOWED: &[(Backend, &str, &str)] = &[
    (
        Backend::Postgres,
        "index change_targets_entity on change_targets (entity_id)",
        "left out of SQLite on purpose (migrations/sqlite/…000001_core): it costs about 20% of \
         storing a 100k-target list, and the conflicts query reads open changes' targets by \
         primary key",
    ),
    (
        Backend::Sqlite,
        "unique constraint on web_sessions (public_id)",
        "the same uniqueness as PostgreSQL's web_sessions_public_id: SQLite's migration \
         (…000007_accounts) rebuilds the table with UNIQUE inline, PostgreSQL's adds the \
         column and then a named unique index",
    ),
    (
        Backend::Postgres,
        "unique index web_sessions_public_id on web_sessions (public_id)",
        "the other side of the difference above",
    ),
    (
        Backend::Sqlite,
        "index entities_children on entities (parent_id, kind, state, name, attrs)",
        "SQLite's scope index covers the attributes, so a `where` below a scope reads the index \
         alone (…000016_children_index); a PostgreSQL B-tree entry is limited to about 2,700 \
         bytes and attribute values have no length limit",
    ),
    (
        Backend::Postgres,
        "index entities_children on entities (parent_id, kind, state, name)",
        "the other side of the difference above",
    ),
];

#[test]
fn migration_folders_match() {
    let names = |dir: &str| {
        let mut v: Vec<String> =
            std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
        v.sort();
        v
    };
    let sqlite = names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite,
        names("postgres"),
        "migrations/sqlite and migrations/postgres must have the same folders"
    );
    for d in &sqlite {
        for f in ["up.sql", "down.sql"] {
            for b in ["sqlite", "postgres"] {
                assert!(
                    std::path::Path::new(&format!(
                        "{}/migrations/{b}/{d}/{f}",
                        env!("CARGO_MANIFEST_DIR")
                    ))
                    .exists(),
                    "{b}/{d}/{f} missing"
                );
            }
        }
    }
}

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    tbl: String,
    #[diesel(sql_type = Text)]
    col: String,
    #[diesel(sql_type = Text)]
    ty: String,
    #[diesel(sql_type = Bool)]
    not_null: bool,
    /// Position in the primary key (1-based), 0 when not in it.
    #[diesel(sql_type = BigInt)]
    pk: i64,
}

#[derive(QueryableByName)]
struct IndexColumn {
    #[diesel(sql_type = Text)]
    tbl: String,
    #[diesel(sql_type = Text)]
    idx: String,
    #[diesel(sql_type = Bool)]
    uniq: bool,
    /// Made by a PRIMARY KEY (covered by the primary-key fact).
    #[diesel(sql_type = Bool)]
    primary: bool,
    /// Made by a UNIQUE constraint: its name is the database's choice, so it is compared
    /// by table and columns.
    #[diesel(sql_type = Bool)]
    by_constraint: bool,
    #[diesel(sql_type = Bool)]
    partial: bool,
    #[diesel(sql_type = Text)]
    col: String,
}

const SQLITE_COLUMNS: &str = r#"
SELECT m.name AS tbl, p.name AS col, p.type AS ty, p."notnull" AS not_null, p.pk AS pk
FROM sqlite_master m JOIN pragma_table_info(m.name) p
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
ORDER BY m.name, p.cid"#;

const SQLITE_INDEXES: &str = r#"
SELECT m.name AS tbl, il.name AS idx, il."unique" AS uniq, il.origin = 'pk' AS "primary",
       il.origin = 'u' AS by_constraint, il.partial AS partial,
       COALESCE(ii.name, '(expression)') AS col
FROM sqlite_master m
JOIN pragma_index_list(m.name) il
JOIN pragma_index_info(il.name) ii
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
ORDER BY m.name, il.name, ii.seqno"#;

const PG_COLUMNS: &str = r#"
SELECT t.relname::text AS tbl, a.attname::text AS col, format_type(a.atttypid, a.atttypmod) AS ty,
       a.attnotnull AS not_null,
       COALESCE((SELECT k.ord FROM pg_index ix,
                        unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                 WHERE ix.indrelid = t.oid AND ix.indisprimary AND k.attnum = a.attnum), 0)::bigint AS pk
FROM pg_class t
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_attribute a ON a.attrelid = t.oid
WHERE n.nspname = current_schema() AND t.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY t.relname, a.attnum"#;

const PG_INDEXES: &str = r#"
SELECT t.relname::text AS tbl, i.relname::text AS idx, ix.indisunique AS uniq, ix.indisprimary AS "primary",
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = ix.indexrelid AND k.contype = 'u') AS by_constraint,
       ix.indpred IS NOT NULL AS partial,
       COALESCE(a.attname::text, '(expression)') AS col
FROM pg_index ix
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_class t ON t.oid = ix.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
WHERE n.nspname = current_schema()
ORDER BY t.relname, i.relname, k.ord"#;

/// A declared type as a family both backends share (diesel's shared schema maps each to
/// one Rust type); [`facts`] keeps PostgreSQL's 32- and 16-bit integers apart, which the
/// schema's `BigInt` would not load.
fn family(ty: &str) -> String {
    let t = ty.trim().to_ascii_lowercase();
    if t.starts_with("timestamp") || t == "datetime" {
        "timestamp".into()
    } else if t == "boolean" || t == "bool" {
        "boolean".into()
    } else if t == "text" || t.contains("char") || t == "clob" {
        "text".into()
    } else if t.contains("int") || t.contains("serial") {
        "integer".into()
    } else if t == "real" || t.starts_with("double") || t.starts_with("float") {
        "float".into()
    } else if t == "blob" || t == "bytea" {
        "bytes".into()
    } else {
        t
    }
}

/// The schema as facts, one line each: comparable text, readable in a failure.
fn facts(columns: Vec<Column>, indexes: Vec<IndexColumn>, backend: Backend) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut pks: std::collections::BTreeMap<String, Vec<(i64, String)>> = Default::default();
    let mut pk_sizes: std::collections::BTreeMap<String, usize> = Default::default();
    for c in &columns {
        if c.pk > 0 {
            *pk_sizes.entry(c.tbl.clone()).or_default() += 1;
        }
    }
    for c in columns {
        if c.tbl == "__diesel_schema_migrations" {
            continue;
        }
        let fam = family(&c.ty);
        let fam = match (backend, c.ty.to_ascii_lowercase().as_str()) {
            (Backend::Postgres, "integer") => "integer (32-bit)".to_string(),
            (Backend::Postgres, "smallint") => "integer (16-bit)".to_string(),
            _ => fam,
        };
        // SQLite's INTEGER PRIMARY KEY is the rowid: never NULL, though not declared so.
        let rowid = backend == Backend::Sqlite
            && c.pk == 1
            && pk_sizes.get(&c.tbl) == Some(&1)
            && c.ty.eq_ignore_ascii_case("integer");
        let null = if c.not_null || rowid {
            "NOT NULL"
        } else {
            "NULL"
        };
        out.insert(format!("table {}", c.tbl));
        out.insert(format!("column {}.{}: {fam} {null}", c.tbl, c.col));
        if c.pk > 0 {
            pks.entry(c.tbl.clone()).or_default().push((c.pk, c.col));
        }
    }
    for (tbl, mut cols) in pks {
        cols.sort();
        let cols: Vec<String> = cols.into_iter().map(|(_, c)| c).collect();
        out.insert(format!("primary key {tbl} ({})", cols.join(", ")));
    }
    let mut grouped: std::collections::BTreeMap<(String, String), (IndexColumn, Vec<String>)> =
        Default::default();
    for i in indexes {
        if i.tbl == "__diesel_schema_migrations" || i.primary {
            continue;
        }
        let key = (i.tbl.clone(), i.idx.clone());
        let col = i.col.clone();
        grouped
            .entry(key)
            .or_insert_with(|| (i, Vec::new()))
            .1
            .push(col);
    }
    for ((tbl, idx), (i, cols)) in grouped {
        let cols = cols.join(", ");
        let partial = if i.partial { " (partial)" } else { "" };
        out.insert(if i.by_constraint {
            format!("unique constraint on {tbl} ({cols}){partial}")
        } else {
            let unique = if i.uniq { "unique " } else { "" };
            format!("{unique}index {idx} on {tbl} ({cols}){partial}")
        });
    }
    out
}

fn sqlite_facts() -> BTreeSet<String> {
    let db = TestDb::new(Backend::Sqlite);
    let mut conn = db::establish(&db.url).expect("open SQLite");
    db::run_migrations(&mut conn).expect("migrate SQLite");
    let DbConn::Sqlite(c) = &mut conn else {
        unreachable!()
    };
    let columns = diesel::sql_query(SQLITE_COLUMNS).load(c).unwrap();
    let indexes = diesel::sql_query(SQLITE_INDEXES).load(c).unwrap();
    facts(columns, indexes, Backend::Sqlite)
}

fn postgres_facts() -> BTreeSet<String> {
    let db = TestDb::new(Backend::Postgres);
    let mut conn = db::establish(&db.url).expect("open PostgreSQL");
    db::run_migrations(&mut conn).expect("migrate PostgreSQL");
    let DbConn::Pg(c) = &mut conn else {
        unreachable!()
    };
    let columns = diesel::sql_query(PG_COLUMNS).load(c).unwrap();
    let indexes = diesel::sql_query(PG_INDEXES).load(c).unwrap();
    drop(conn);
    facts(columns, indexes, Backend::Postgres)
}

#[test]
fn migrated_schemas_match() {
    crate::helpers::init_logs();
    let sqlite = sqlite_facts();
    assert!(
        sqlite
            .iter()
            .any(|f| f.starts_with("index entities_children")),
        "introspection found no indexes: {sqlite:#?}"
    );
    if !Backend::Postgres.available() {
        eprintln!(
            "skipped the PostgreSQL half: {} is not set (SQLite migrated and read: {} facts)",
            countersign::config::TEST_DATABASE_URL.var,
            sqlite.len()
        );
        return;
    }
    let pg = postgres_facts();
    let mut problems = Vec::new();
    for (backend, mine, other) in [
        (Backend::Sqlite, &sqlite, &pg),
        (Backend::Postgres, &pg, &sqlite),
    ] {
        for fact in mine.difference(other) {
            if !ALLOWED.iter().any(|(b, f, _)| *b == backend && f == fact) {
                problems.push(format!("only on {backend:?}: {fact}"));
            }
        }
    }
    for (backend, fact, why) in ALLOWED {
        let (mine, other) = match backend {
            Backend::Sqlite => (&sqlite, &pg),
            Backend::Postgres => (&pg, &sqlite),
        };
        if !mine.contains(*fact) || other.contains(*fact) {
            problems.push(format!(
                "allowed difference no longer occurs (remove it from ALLOWED): {backend:?}: {fact} ({why})"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "migrations/sqlite and migrations/postgres give different schemas:\n  {}\n\
         Fix the migration, or add an intended difference to ALLOWED in tests/api/migrations.rs with its reason.",
        problems.join("\n  ")
    );
}
