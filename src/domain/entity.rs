//! The lifecycle of an inventory entity: `active`, soft-`deleted` (restorable until its
//! retention ends), `purged` (gone for good; the row stays as a tombstone).

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use serde::{Deserialize, Serialize};

use super::text_enum::text_enum;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, AsExpression, FromSqlRow,
)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum EntityState {
    Active,
    Deleted,
    Purged,
}

text_enum!(EntityState, "entity state", {
    Active => "active",
    Deleted => "deleted",
    Purged => "purged",
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_state_text_round_trips() {
        crate::domain::text_enum::assert_round_trip(EntityState::VALUES);
        assert_eq!(EntityState::VALUES.len(), 3);
    }
}
