//! Pure types and rules: no I/O, no HTTP, no SQL.

pub mod access;
pub mod account;
pub mod change;
pub mod execution;
pub mod lines;
pub mod notice;
pub mod password;
pub mod presentation;
pub mod resolution;
pub mod schema;
pub mod selector;
pub mod signoff;
pub mod text;

pub use change::ChangeState;
pub use schema::{Effect, Kind, Operation, Schema};
pub use signoff::Side;
