//! Customer contacts: people attached to inventory entities (usually the root, e.g. the
//! customer organisation). They are never deleted or hidden when their entity is
//! soft-deleted or purged: they are how the customers of a mistake are reached.
//! From a change: the affected roots with their contacts, and customer notices: drafted
//! (previewed first) by a member of one of the change's teams, approved by a member of the
//! other team, and only then sent through the outbox (`domain::notice` decides who may).
//! Contacts are seen only by admins and the teams of changes that affect the customer.
//!
//! One module per use case: `import`; `view` (who sees contacts, per entity, per change,
//! as CSV); customer notices in `board` (views, the notices page), `draft` and `decide`
//! (approve = send, discard).

use sha2::{Digest, Sha256};

mod board;
mod decide;
mod draft;
mod import;
mod view;

pub use board::{board, notices, NoticeBoard, NoticeRecipient, NoticeRequest, NoticeView};
pub use decide::{approve, discard};
pub use draft::draft;
pub use import::{import, ContactImportReport, ContactLineError, ROLES};
pub use view::{
    csv, entity_contacts, export_csv, for_change, may_see_change_contacts, of_entity, ContactView,
    RootContacts, HIDDEN,
};

/// The SHA-256 of `s` in hex, as audit events name a file or a text.
fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}
