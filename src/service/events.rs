//! Recording an event: it is stored in the audit chain and the mails it causes are written
//! to the outbox, both inside the caller's write transaction, so a committed event always
//! has its mails and hook deliveries and a rolled-back one none. Every event people are told about goes
//! through [`record`]; `db::audit` is storage only.

use diesel::QueryResult;

use crate::db::audit::{self, Actor};
use crate::db::WriteTx;
use crate::domain::event::Event;

/// Store `event` (of change `change_id`, if any) and queue its notifications. Returns the
/// event's id in the chain.
pub fn record(
    tx: &mut WriteTx<'_>,
    actor: &Actor,
    change_id: Option<i64>,
    event: Event,
) -> QueryResult<i64> {
    let id = audit::store(tx, actor, change_id, &event)?;
    if let (Some(kind), Some(change)) = (event.notification(), change_id) {
        crate::notify::dispatch(tx.conn(), id, &actor.0, kind, change, &event)?;
    }
    crate::notify::dispatch_hooks(tx.conn(), id, &actor.0, change_id, &event)?;
    Ok(id)
}
