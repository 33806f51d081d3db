//! Importing contacts: NDJSON lines, each checked, upserted by entity, email and role,
//! all or nothing unless `partial`.

use std::collections::BTreeSet;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::audit::Actor;
use crate::db::models::{Contact, NewContact};
use crate::db::schema::{contacts, entities};
use crate::db::{now, write_tx, DbConn, WriteTx, CHUNK};
use crate::domain::event::Event;
use crate::domain::lines::{clip, Line};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;

pub const ROLES: [&str; 3] = ["admin", "billing", "technical"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactLine {
    entity: String,
    name: String,
    email: String,
    role: String,
}

#[derive(Debug, Serialize)]
pub struct ContactLineError {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ContactImportReport {
    pub lines: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub errors: Vec<ContactLineError>,
    pub committed: bool,
}

fn valid_email(e: &str) -> bool {
    e.parse::<lettre::Address>().is_ok()
}

/// Count line `line` as rejected, saying why (the first thousand reasons).
fn reject(report: &mut ContactImportReport, line: u64, message: String) {
    report.rejected += 1;
    if report.errors.len() < 1000 {
        report.errors.push(ContactLineError { line, message });
    }
}

/// One line read as a contact, trimmed (the address in lower case), or why it is not one.
fn contact_of(raw: &str) -> Result<ContactLine, String> {
    let c: ContactLine = serde_json::from_str(raw).map_err(|e| {
        format!("not a contact: {e} (expected {{\"entity\", \"name\", \"email\", \"role\"}})")
    })?;
    let email = c.email.trim().to_lowercase();
    if c.name.trim().is_empty() || c.name.len() > 200 {
        Err("`name` must be 1 to 200 characters".into())
    } else if !valid_email(&email) {
        Err(format!("`{}` is not a mail address", clip(&c.email)))
    } else if !ROLES.contains(&c.role.as_str()) {
        Err(format!(
            "role `{}` is not one of {}",
            clip(&c.role),
            ROLES.join(", ")
        ))
    } else {
        Ok(ContactLine {
            entity: c.entity.trim().to_string(),
            name: c.name.trim().to_string(),
            email,
            role: c.role,
        })
    }
}

/// The contacts of `lines` by line number; blank lines are skipped, bad ones counted in
/// `report`. Only a line that cannot be read at all is an error.
fn read<I, L>(lines: I, report: &mut ContactImportReport) -> AppResult<Vec<(u64, ContactLine)>>
where
    I: IntoIterator<Item = std::io::Result<L>>,
    L: Into<Line>,
{
    let mut good = Vec::new();
    for (i, raw) in lines.into_iter().enumerate() {
        let line = i as u64 + 1;
        let raw = match raw
            .map_err(|e| AppError::new(ErrorCode::UnreadableBody, format!("line {line}: {e}")))?
            .into()
        {
            Line::Text(t) => Ok(t),
            Line::Unreadable { message, .. } => Err(message),
        };
        if matches!(&raw, Ok(t) if t.trim().is_empty()) {
            continue;
        }
        report.lines += 1;
        match raw.and_then(|t| contact_of(&t)) {
            Ok(c) => good.push((line, c)),
            Err(m) => reject(report, line, m),
        }
    }
    Ok(good)
}

/// Keep the contacts whose entity is in the inventory; reject the others.
fn drop_unknown(
    conn: &mut DbConn,
    good: &mut Vec<(u64, ContactLine)>,
    report: &mut ContactImportReport,
) -> AppResult<()> {
    let ids: Vec<&str> = good.iter().map(|(_, c)| c.entity.as_str()).collect();
    let mut known: BTreeSet<String> = BTreeSet::new();
    for chunk in ids.chunks(CHUNK) {
        known.extend(
            entities::table
                .filter(entities::id.eq_any(chunk))
                .select(entities::id)
                .load::<String>(conn)?,
        );
    }
    good.retain(|(line, c)| {
        if known.contains(&c.entity) {
            return true;
        }
        reject(
            report,
            *line,
            format!("`{}` is not in the inventory", clip(&c.entity)),
        );
        false
    });
    Ok(())
}

/// Insert `c`, or update the name of the contact with its entity, email and role.
fn upsert(
    conn: &mut WriteTx<'_>,
    c: &ContactLine,
    t: chrono::NaiveDateTime,
    report: &mut ContactImportReport,
) -> AppResult<()> {
    let existing: Option<Contact> = contacts::table
        .filter(contacts::entity_id.eq(&c.entity))
        .filter(contacts::email.eq(&c.email))
        .filter(contacts::role.eq(&c.role))
        .select(Contact::as_select())
        .first(conn.conn())
        .optional()?;
    match existing {
        Some(e) if e.name == c.name => report.unchanged += 1,
        Some(e) => {
            diesel::update(contacts::table.find(e.id))
                .set((contacts::name.eq(&c.name), contacts::updated_at.eq(t)))
                .execute(conn.conn())?;
            report.updated += 1;
        }
        None => {
            diesel::insert_into(contacts::table)
                .values(NewContact {
                    entity_id: c.entity.clone(),
                    name: c.name.clone(),
                    email: c.email.clone(),
                    role: c.role.clone(),
                    created_at: t,
                    updated_at: t,
                })
                .execute(conn.conn())?;
            report.inserted += 1;
        }
    }
    Ok(())
}

/// Import NDJSON contacts (upsert by entity, email and role). A file with a bad line
/// writes nothing unless `partial`.
#[tracing::instrument(name = "contacts::import", skip_all)]
pub fn import<I, L>(
    conn: &mut DbConn,
    actor: &Actor,
    lines: I,
    partial: bool,
) -> AppResult<ContactImportReport>
where
    I: IntoIterator<Item = std::io::Result<L>>,
    L: Into<Line>,
{
    let mut report = ContactImportReport::default();
    let mut good = read(lines, &mut report)?;
    // Which entities exist (read), then write only if the file is clean or partial.
    drop_unknown(conn, &mut good, &mut report)?;
    report.errors.sort_by_key(|e| e.line);
    if report.rejected > 0 && !partial {
        return Ok(report);
    }
    write_tx(conn, |conn| -> AppResult<()> {
        let t = now();
        for (_, c) in &good {
            upsert(conn, c, t, &mut report)?;
        }
        record(
            conn,
            actor,
            None,
            Event::ContactsImported {
                lines: report.lines,
                inserted: report.inserted,
                updated: report.updated,
                rejected: report.rejected,
            },
        )?;
        Ok(())
    })?;
    report.committed = true;
    Ok(report)
}
