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
use crate::domain::text_enum::UnknownValue;
use crate::domain::{
    ChangeState, Effect, EntityState, ExecState, ItemStatus, NoticeState, OutboxState, Side,
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
);
