//! Pure types and rules: no I/O, no HTTP, no SQL. (The text enums — states, sides,
//! effects — derive diesel's `AsExpression`/`FromSqlRow` so rows can hold them; how they
//! are read and written as TEXT is `db::text_enum`.)

pub mod access;
pub mod account;
pub mod budget;
pub mod calendar;
pub mod change;
pub mod difference;
pub mod drift;
pub mod effect;
pub mod entity;
pub mod event;
pub mod execution;
pub mod hook;
pub mod lines;
pub mod notice;
pub mod outbox;
pub mod password;
pub mod presentation;
pub mod resolution;
pub mod schema;
pub mod selector;
pub mod signoff;
pub mod sso;
pub mod text;
pub mod text_enum;
pub mod waves;

pub use change::ChangeState;
pub use entity::EntityState;
pub use execution::{ExecState, ItemStatus};
pub use notice::NoticeState;
pub use outbox::{NotificationMode, OutboxState};
pub use schema::{Effect, Kind, Operation, Schema};
pub use signoff::Side;
