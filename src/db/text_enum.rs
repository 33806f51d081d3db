//! The domain's text enums (states, sides, effects) as TEXT columns on both backends.
//! Reading a text that names no variant is a load error (`Error::DeserializationError`
//! whose message names the value), never a default; migration `000009_state_checks` makes
//! both databases refuse such a value in the first place.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;

use super::MultiBackend;
use crate::domain::calendar::{ProposalAction, ProposalState, Severity};
use crate::domain::hook::{HookFormat, OutboxChannel};
use crate::domain::text_enum::UnknownValue;
use crate::domain::{
    ChangeState, Effect, EntityState, ExecState, ItemStatus, NoticeState, NotificationMode,
    OutboxState, Side,
};

/// The stored text as `T`, or an error that names it.
fn parse<T, DB>(raw: DB::RawValue<'_>) -> deserialize::Result<T>
where
    DB: Backend,
    String: FromSql<Text, DB>,
    T: std::str::FromStr<Err = UnknownValue>,
{
    let text = <String as FromSql<Text, DB>>::from_sql(raw)?;
    text.parse::<T>()
        .map_err(|e| format!("stored value {e}").into())
}

macro_rules! text_column {
    ($($ty:ty),+ $(,)?) => {$(
        impl FromSql<Text, Sqlite> for $ty {
            fn from_sql(raw: <Sqlite as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                parse::<Self, Sqlite>(raw)
            }
        }

        impl FromSql<Text, Pg> for $ty {
            fn from_sql(raw: <Pg as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                parse::<Self, Pg>(raw)
            }
        }

        impl FromSql<Text, MultiBackend> for $ty {
            fn from_sql(raw: <MultiBackend as Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                raw.from_sql::<Self, Text>()
            }
        }

        impl ToSql<Text, Sqlite> for $ty {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                out.set_value(self.as_str());
                Ok(IsNull::No)
            }
        }

        impl ToSql<Text, Pg> for $ty {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl ToSql<Text, MultiBackend> for $ty {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
                out.set_value((Text, self));
                Ok(IsNull::No)
            }
        }
    )+};
}

text_column!(
    ChangeState,
    Side,
    Effect,
    ExecState,
    ItemStatus,
    EntityState,
    OutboxState,
    NoticeState,
    NotificationMode,
    Severity,
    ProposalAction,
    ProposalState,
    HookFormat,
    OutboxChannel,
);

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel::sql_types::Text;
    use diesel::sqlite::SqliteConnection;
    use diesel::IntoSql;

    use super::*;

    /// The (table, column) → values lists of a backend's migrations (000009 added most,
    /// later ones the rest or widened one), from their text: the last migration's list.
    fn lists(backend: &str) -> std::collections::BTreeMap<(String, String), Vec<String>> {
        let dir = format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
        let mut dirs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        let values = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|v| v.trim().trim_matches('\'').to_string())
                .collect()
        };
        let mut out = std::collections::BTreeMap::new();
        let re = regex::Regex::new(if backend == "postgres" {
            r"ALTER TABLE (\w+) ADD CONSTRAINT \w+ CHECK \((\w+) IN \(([^)]*)\)\)"
        } else {
            r"BEFORE (?:INSERT|UPDATE OF \w+) ON (\w+)\nWHEN NEW\.(\w+) NOT IN \(([^)]*)\)"
        })
        .unwrap();
        // A later migration may widen a list (000014: the third sign-off side); within
        // one migration the insert and update lists agree.
        for d in &dirs {
            let sql = std::fs::read_to_string(d.join("up.sql")).unwrap();
            let mut here = std::collections::BTreeMap::new();
            for m in re.captures_iter(&sql) {
                let key = (m[1].to_string(), m[2].to_string());
                let v = values(&m[3]);
                if let Some(old) = here.insert(key.clone(), v.clone()) {
                    assert_eq!(
                        old, v,
                        "{backend}: insert and update lists of {key:?} differ in {d:?}"
                    );
                }
            }
            out.extend(here);
        }
        out
    }

    fn names<T: Copy + std::fmt::Display>(values: &[T]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn check_lists_match_the_enums() {
        let expected: Vec<((&str, &str), Vec<String>)> = vec![
            (("changes", "state"), names(ChangeState::VALUES)),
            (("signoffs", "side"), names(Side::VALUES)),
            (("entities", "state"), names(EntityState::VALUES)),
            (
                ("entity_versions", "before_state"),
                names(EntityState::VALUES),
            ),
            (
                ("entity_versions", "after_state"),
                names(EntityState::VALUES),
            ),
            (("executions", "effect"), names(Effect::VALUES)),
            (("executions", "state"), names(ExecState::VALUES)),
            (("execution_items", "status"), names(ItemStatus::VALUES)),
            (("outbox", "state"), names(OutboxState::VALUES)),
            (("customer_notices", "state"), names(NoticeState::VALUES)),
            (
                ("notification_prefs", "mode"),
                names(NotificationMode::VALUES),
            ),
        ];
        for backend in ["postgres", "sqlite"] {
            let got = lists(backend);
            assert_eq!(got.len(), expected.len(), "{backend}: {got:?}");
            for ((t, c), want) in &expected {
                let key = (t.to_string(), c.to_string());
                assert_eq!(got.get(&key), Some(want), "{backend}: {t}.{c}");
            }
        }
    }

    /// What a stored text reads as, on SQLite directly and through the multi-backend
    /// connection (PostgreSQL is exercised by the integration test `states`).
    fn read<T>(text: &str) -> (QueryResult<T>, QueryResult<T>)
    where
        T: FromSql<Text, Sqlite>
            + FromSql<Text, MultiBackend>
            + Queryable<Text, Sqlite>
            + Queryable<Text, MultiBackend>
            + 'static,
    {
        let mut c = SqliteConnection::establish(":memory:").unwrap();
        let direct = diesel::select(text.into_sql::<Text>()).get_result::<T>(&mut c);
        let mut m = super::super::DbConn::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        let multi = diesel::select(text.into_sql::<Text>()).get_result::<T>(&mut m);
        (direct, multi)
    }

    /// An error with its sources (diesel's own message names only the field).
    fn chain(e: &dyn std::error::Error) -> String {
        let mut out = e.to_string();
        let mut cur = e.source();
        while let Some(s) = cur {
            out.push_str(": ");
            out.push_str(&s.to_string());
            cur = s.source();
        }
        out
    }

    fn assert_reads<T>(values: &[T], what: &str)
    where
        T: Copy
            + PartialEq
            + std::fmt::Debug
            + std::fmt::Display
            + FromSql<Text, Sqlite>
            + FromSql<Text, MultiBackend>
            + Queryable<Text, Sqlite>
            + Queryable<Text, MultiBackend>
            + 'static,
    {
        for &v in values {
            let (a, b) = read::<T>(&v.to_string());
            assert_eq!(a.unwrap(), v);
            assert_eq!(b.unwrap(), v);
        }
        for bad in ["bogus", "", "Active"] {
            let (a, b) = read::<T>(bad);
            for e in [a.unwrap_err(), b.unwrap_err()] {
                assert!(
                    matches!(e, diesel::result::Error::DeserializationError(_)),
                    "{e:?}"
                );
                let msg = chain(&e);
                assert!(
                    msg.contains(&format!("stored value `{bad}` is not a known {what}")),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn unknown_stored_values_are_load_errors() {
        assert_reads(ChangeState::VALUES, "change state");
        assert_reads(Side::VALUES, "sign-off side");
        assert_reads(Effect::VALUES, "effect");
        assert_reads(ExecState::VALUES, "execution state");
        assert_reads(ItemStatus::VALUES, "execution item status");
        assert_reads(EntityState::VALUES, "entity state");
        assert_reads(OutboxState::VALUES, "outbox state");
        assert_reads(NoticeState::VALUES, "notice state");
    }

    #[test]
    fn values_are_written_as_their_text() {
        let mut m = super::super::DbConn::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        for &s in ChangeState::VALUES {
            let text: String = diesel::select(s.into_sql::<Text>())
                .get_result(&mut m)
                .unwrap();
            assert_eq!(text, s.as_str());
        }
    }
}
