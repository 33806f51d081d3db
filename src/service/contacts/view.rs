//! Who sees contacts, and the contacts they see: per entity, per change (the roots it
//! affects), and as CSV (an export is an audit event).

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::Serialize;

use super::sha256_hex;
use crate::db::models::{Change, Contact};
use crate::db::schema::{change_targets, contacts, entities};
use crate::db::{
    changes as change_repo, notices as notice_repo, snapshot, write_tx, DbConn, CHUNK,
};
use crate::domain::event::Event;
use crate::domain::notice::change_allows_notices;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::views::{csv_field, number};
use crate::service::CurrentUser;

/// Said instead of contacts a person may not see.
pub const HIDDEN: &str =
    "Contacts are shown to admins and to the teams of changes that affect this customer.";

fn hidden(why: String) -> AppError {
    AppError::new(ErrorCode::ContactsHidden, format!("{HIDDEN} {why}"))
}

/// Contacts are customers' personal data. Admins see them all; anyone else only the
/// contacts of customers (roots) that a change of one of their teams affects, once that
/// change was submitted (a draft is one person's, and anybody can start one).
fn may_see_root(conn: &mut DbConn, viewer: &CurrentUser, root: &str) -> AppResult<bool> {
    Ok(viewer.is_admin || notice_repo::team_change_affects_root(conn, &viewer.teams, root)?)
}

/// The contacts of a change's customers are for admins and the change's two teams once both
/// teams signed it (every root it affects is then visible to them by [`may_see_root`]).
pub(super) fn require_change_contacts(viewer: &CurrentUser, c: &Change) -> AppResult<()> {
    if viewer.is_admin {
        return Ok(());
    }
    if !(viewer.in_team(&c.requesting_team) || viewer.in_team(&c.implementing_team)) {
        return Err(hidden(format!(
            "{} ({}) is in neither team of {} (`{}`, `{}`).",
            viewer.name,
            viewer.email,
            number(c.id),
            c.requesting_team,
            c.implementing_team
        )));
    }
    if !change_allows_notices(c.state) {
        return Err(hidden(format!(
            "{} is {}: its teams see its customers' contacts once both teams signed it (approved or later).",
            number(c.id),
            c.state
        )));
    }
    Ok(())
}

/// Whether `viewer` may see the contacts of change `c`'s customers ([`require_change_contacts`]).
pub fn may_see_change_contacts(viewer: &CurrentUser, c: &Change) -> bool {
    require_change_contacts(viewer, c).is_ok()
}

/// The contacts attached to one entity (whatever its state), or `None` when `viewer` may
/// not see them (the entity page says so instead).
pub fn of_entity(
    conn: &mut DbConn,
    viewer: &CurrentUser,
    id: &str,
) -> AppResult<Option<Vec<Contact>>> {
    snapshot(conn, |conn| {
        let root =
            notice_repo::root_of(conn, id)?.ok_or_else(|| AppError::not_found("entity", id))?;
        if !may_see_root(conn, viewer, &root)? {
            return Ok(None);
        }
        Ok(Some(
            contacts::table
                .filter(contacts::entity_id.eq(id))
                .order((contacts::role.asc(), contacts::email.asc()))
                .select(Contact::as_select())
                .load(conn)?,
        ))
    })
}

/// [`of_entity`], refused (403 `contacts_hidden`) when `viewer` may not see them.
pub fn entity_contacts(
    conn: &mut DbConn,
    viewer: &CurrentUser,
    id: &str,
) -> AppResult<Vec<Contact>> {
    of_entity(conn, viewer, id)?.ok_or_else(|| {
        hidden(format!(
            "No submitted change of a team of {} ({}) affects the customer of `{id}`.",
            viewer.name, viewer.email
        ))
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RootContacts {
    pub root: String,
    pub root_name: String,
    pub root_state: String,
    /// Targets of the change under this root.
    pub targets: u64,
    pub contacts: Vec<ContactView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactView {
    /// The entity the contact is attached to (the root or an entity below it).
    pub entity: String,
    pub name: String,
    pub email: String,
    pub role: String,
}

/// The roots change `id` affects, with their contacts, for `viewer` (admins and the
/// change's teams).
pub fn for_change(
    conn: &mut DbConn,
    viewer: &CurrentUser,
    id: i64,
) -> AppResult<Vec<RootContacts>> {
    snapshot(conn, |conn| {
        let c =
            change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        require_change_contacts(viewer, &c)?;
        affected(conn, id)
    })
}

/// [`for_change`] as CSV. Every export is an audit event: who took which customers'
/// contacts out of countersign, with the file's SHA-256.
#[tracing::instrument(name = "contacts::export_csv", skip_all, fields(change = id, user = viewer.id))]
pub fn export_csv(conn: &mut DbConn, viewer: &CurrentUser, id: i64) -> AppResult<String> {
    write_tx(conn, |conn| {
        let c =
            change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        require_change_contacts(viewer, &c)?;
        let roots = affected(conn, id)?;
        let out = csv(&roots);
        let n: usize = roots.iter().map(|r| r.contacts.len()).sum();
        record(
            conn,
            &viewer.actor(),
            Some(id),
            Event::ContactsExported {
                format: "csv".into(),
                roots: roots.len() as u64,
                contacts: n as u64,
                sha256: sha256_hex(&out),
            },
        )?;
        Ok(out)
    })
}

/// The roots a change affects (from its stored targets' scope paths) with the contacts
/// attached to each root and to any entity on the way to the targets. No permission check:
/// callers decide who sees it. Runs in the caller's transaction.
pub(super) fn affected(conn: &mut DbConn, id: i64) -> AppResult<Vec<RootContacts>> {
    let rows: Vec<(String, String)> = change_targets::table
        .filter(change_targets::change_id.eq(id))
        .select((change_targets::entity_id, change_targets::scope_path))
        .load(conn)?;
    let mut per_root: BTreeMap<String, u64> = BTreeMap::new();
    let mut on_path: BTreeMap<String, String> = BTreeMap::new(); // entity -> root
    for (target, path) in &rows {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let root = segs.first().copied().unwrap_or(target.as_str()).to_string();
        *per_root.entry(root.clone()).or_default() += 1;
        for s in segs.iter().copied().chain(std::iter::once(target.as_str())) {
            on_path.entry(s.to_string()).or_insert_with(|| root.clone());
        }
    }
    let ids: Vec<&str> = on_path.keys().map(String::as_str).collect();
    let mut found: Vec<Contact> = Vec::new();
    let mut names: BTreeMap<String, (String, String)> = BTreeMap::new();
    for chunk in ids.chunks(CHUNK) {
        found.extend(
            contacts::table
                .filter(contacts::entity_id.eq_any(chunk))
                .select(Contact::as_select())
                .load(conn)?,
        );
    }
    let roots: Vec<&str> = per_root.keys().map(String::as_str).collect();
    for chunk in roots.chunks(CHUNK) {
        for (i, n, s) in entities::table
            .filter(entities::id.eq_any(chunk))
            .select((entities::id, entities::name, entities::state))
            .load::<(String, String, String)>(conn)?
        {
            names.insert(i, (n, s));
        }
    }
    let mut out: BTreeMap<String, RootContacts> = per_root
        .into_iter()
        .map(|(root, n)| {
            let (name, st) = names.get(&root).cloned().unwrap_or_default();
            (
                root.clone(),
                RootContacts {
                    root,
                    root_name: name,
                    root_state: st,
                    targets: n,
                    contacts: vec![],
                },
            )
        })
        .collect();
    for c in found {
        if let Some(r) = on_path.get(&c.entity_id).and_then(|root| out.get_mut(root)) {
            r.contacts.push(ContactView {
                entity: c.entity_id,
                name: c.name,
                email: c.email,
                role: c.role,
            });
        }
    }
    let mut v: Vec<RootContacts> = out.into_values().collect();
    for r in &mut v {
        r.contacts
            .sort_by(|a, b| (&a.role, &a.email).cmp(&(&b.role, &b.email)));
    }
    Ok(v)
}

/// CSV of [`for_change`]: one line per (root, contact); roots without contacts too.
pub fn csv(rows: &[RootContacts]) -> String {
    let cell = csv_field;
    let mut out = String::from("root,root_name,root_state,targets,entity,name,email,role\n");
    for r in rows {
        let head = format!(
            "{},{},{},{}",
            cell(&r.root),
            cell(&r.root_name),
            cell(&r.root_state),
            r.targets
        );
        if r.contacts.is_empty() {
            out.push_str(&format!("{head},,,,\n"));
        }
        for c in &r.contacts {
            out.push_str(&format!(
                "{head},{},{},{},{}\n",
                cell(&c.entity),
                cell(&c.name),
                cell(&c.email),
                cell(&c.role)
            ));
        }
    }
    out
}
