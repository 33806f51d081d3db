//! Customer contacts: people attached to inventory entities (usually the root, e.g. the
//! customer organisation). They are never deleted or hidden when their entity is
//! soft-deleted or purged: they are how the customers of a mistake are reached.
//! From a change: the affected roots with their contacts, and customer notices sent
//! through the outbox (previewed first, recorded on the change).

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::views::number;
use super::CurrentUser;
use crate::db::audit::{self, Actor};
use crate::db::models::{Contact, NewContact, NewOutbox};
use crate::db::schema::{change_targets, contacts, customer_notices, entities};
use crate::db::{changes as change_repo, now, outbox, snapshot, write_tx, DbConn, CHUNK};
use crate::domain::access::ChangeAction;
use crate::domain::Schema;
use crate::error::{AppError, AppResult};

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

/// Import NDJSON contacts (upsert by entity, email and role). A file with a bad line
/// writes nothing unless `partial`.
pub fn import(
    conn: &mut DbConn,
    actor: &Actor,
    text: &str,
    partial: bool,
) -> AppResult<ContactImportReport> {
    let mut report = ContactImportReport::default();
    let mut good: Vec<(u64, ContactLine)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if raw.trim().is_empty() {
            continue;
        }
        report.lines += 1;
        let mut bad = |m: String| {
            report.rejected += 1;
            if report.errors.len() < 1000 {
                report.errors.push(ContactLineError { line, message: m });
            }
        };
        let c: ContactLine = match serde_json::from_str(raw) {
            Ok(c) => c,
            Err(e) => {
                bad(format!(
                    "not a contact: {e} (expected {{\"entity\", \"name\", \"email\", \"role\"}})"
                ));
                continue;
            }
        };
        let email = c.email.trim().to_lowercase();
        if c.name.trim().is_empty() || c.name.len() > 200 {
            bad("`name` must be 1 to 200 characters".into());
        } else if !valid_email(&email) {
            bad(format!("`{}` is not a mail address", c.email));
        } else if !ROLES.contains(&c.role.as_str()) {
            bad(format!(
                "role `{}` is not one of {}",
                c.role,
                ROLES.join(", ")
            ));
        } else {
            good.push((
                line,
                ContactLine {
                    entity: c.entity.trim().to_string(),
                    name: c.name.trim().to_string(),
                    email,
                    role: c.role,
                },
            ));
        }
    }
    // Which entities exist (read), then write only if the file is clean or partial.
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
        report.rejected += 1;
        if report.errors.len() < 1000 {
            report.errors.push(ContactLineError {
                line: *line,
                message: format!("`{}` is not in the inventory", c.entity),
            });
        }
        false
    });
    report.errors.sort_by_key(|e| e.line);
    if report.rejected > 0 && !partial {
        return Ok(report);
    }
    write_tx(conn, |conn| -> AppResult<()> {
        let t = now();
        for (_, c) in &good {
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
        }
        audit::append(
            conn,
            actor,
            "contacts_imported",
            None,
            json!({"lines": report.lines, "inserted": report.inserted, "updated": report.updated, "rejected": report.rejected}),
        )?;
        Ok(())
    })?;
    report.committed = true;
    Ok(report)
}

/// The contacts attached to one entity (whatever its state).
pub fn of_entity(conn: &mut DbConn, id: &str) -> AppResult<Vec<Contact>> {
    Ok(contacts::table
        .filter(contacts::entity_id.eq(id))
        .order((contacts::role.asc(), contacts::email.asc()))
        .select(Contact::as_select())
        .load(conn)?)
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

/// The roots a change affects (from its stored targets' scope paths) with the contacts
/// attached to each root and to any entity on the way to the targets.
pub fn for_change(conn: &mut DbConn, id: i64) -> AppResult<Vec<RootContacts>> {
    snapshot(conn, |conn| {
        change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
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
    })
}

/// CSV of [`for_change`]: one line per (root, contact); roots without contacts too.
pub fn csv(rows: &[RootContacts]) -> String {
    use super::views::csv_field as cell;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeRequest {
    pub subject: String,
    /// Plain text; `{customer}` becomes the root's name, `{change}` the change number.
    pub body: String,
    /// Only contacts with these roles (default: all).
    #[serde(default)]
    pub roles: Vec<String>,
    /// `true`: answer what would be sent, send nothing.
    #[serde(default)]
    pub preview: bool,
}

#[derive(Debug, Serialize)]
pub struct NoticeRecipient {
    pub root: String,
    pub root_name: String,
    pub email: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Serialize)]
pub struct NoticeView {
    pub id: Option<i64>,
    pub change: String,
    pub subject: String,
    pub body: String,
    pub roles: Vec<String>,
    pub recipients: Vec<NoticeRecipient>,
    pub recipient_count: usize,
    /// Affected roots nobody can be told about (no contact with the roles asked for).
    pub roots_without_contacts: Vec<String>,
    /// The first recipient's text, with the placeholders filled in.
    pub sample: Option<String>,
    pub sent_by: Option<String>,
    pub sent_at: Option<chrono::NaiveDateTime>,
}

fn fill(body: &str, customer: &str, change: &str) -> String {
    body.replace("{customer}", customer)
        .replace("{change}", change)
}

/// Preview or send a customer notice for change `id` (members of either team).
pub fn notice(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    req: NoticeRequest,
) -> AppResult<NoticeView> {
    let subject = req.subject.trim().to_string();
    let body = req.body.trim().to_string();
    if subject.is_empty() || subject.len() > 200 || subject.contains(['\r', '\n']) {
        return Err(AppError::unprocessable(
            "invalid_subject",
            "the subject must be one line of 1 to 200 characters",
        ));
    }
    if body.is_empty() || body.len() > 20_000 {
        return Err(AppError::unprocessable(
            "invalid_body",
            "the body must be 1 to 20000 characters",
        ));
    }
    for r in &req.roles {
        if !ROLES.contains(&r.as_str()) {
            return Err(AppError::unprocessable(
                "invalid_role",
                format!("role `{r}` is not one of {}", ROLES.join(", ")),
            ));
        }
    }
    let c = change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
    super::changes::require(conn, schema, user, &c, ChangeAction::DraftNotice)?;
    let roots = for_change(conn, id)?;
    let chg = number(id);
    let mut recipients = Vec::new();
    let mut without = Vec::new();
    for r in &roots {
        let mut seen = BTreeSet::new();
        let mut any = false;
        for ct in &r.contacts {
            if !req.roles.is_empty() && !req.roles.contains(&ct.role) {
                continue;
            }
            any = true;
            if seen.insert(ct.email.clone()) {
                recipients.push(NoticeRecipient {
                    root: r.root.clone(),
                    root_name: r.root_name.clone(),
                    email: ct.email.clone(),
                    name: ct.name.clone(),
                    role: ct.role.clone(),
                });
            }
        }
        if !any {
            without.push(r.root.clone());
        }
    }
    if recipients.is_empty() {
        return Err(AppError::unprocessable(
            "no_recipients",
            format!(
                "none of the {} affected roots has a contact{}",
                roots.len(),
                if req.roles.is_empty() {
                    String::new()
                } else {
                    format!(" with role {}", req.roles.join("/"))
                }
            ),
        ));
    }
    let sample = recipients.first().map(|r| fill(&body, &r.root_name, &chg));
    let mut view = NoticeView {
        id: None,
        change: chg.clone(),
        subject: subject.clone(),
        body: body.clone(),
        roles: req.roles.clone(),
        recipient_count: recipients.len(),
        recipients,
        roots_without_contacts: without,
        sample,
        sent_by: None,
        sent_at: None,
    };
    if req.preview {
        return Ok(view);
    }
    let t = now();
    let notice_id = write_tx(conn, |conn| -> AppResult<i64> {
        let list = serde_json::to_string(&view.recipients).expect("recipients");
        let nid: i64 = diesel::insert_into(customer_notices::table)
            .values((
                customer_notices::change_id.eq(id),
                customer_notices::subject.eq(&subject),
                customer_notices::body.eq(&body),
                customer_notices::roles.eq(serde_json::to_string(&req.roles).expect("roles")),
                customer_notices::recipients.eq(list),
                customer_notices::recipient_count.eq(view.recipient_count as i64),
                customer_notices::sent_by.eq(user.id),
                customer_notices::created_at.eq(t),
            ))
            .returning(customer_notices::id)
            .get_result(conn.conn())?;
        let rows: Vec<NewOutbox> = view
            .recipients
            .iter()
            .map(|r| NewOutbox {
                // Per customer: one person who is a contact of two customers gets each
                // customer's own notice.
                event_key: format!("notice:{nid}:{}", r.root),
                event_kind: "customer_notice".into(),
                change_id: Some(id),
                user_id: None,
                recipient: r.email.clone(),
                payload: json!({"subject": subject, "body": fill(&body, &r.root_name, &chg), "root": r.root}).to_string(),
                message_id: uuid::Uuid::new_v4().simple().to_string(),
                state: outbox::state::PENDING.into(),
                next_attempt_at: t,
                digest_id: None,
                created_at: t,
            })
            .collect();
        outbox::enqueue(conn, &rows)?;
        audit::append(
            conn,
            &user.actor(),
            "customer_notice_sent",
            Some(id),
            json!({"notice": nid, "subject": subject, "recipients": view.recipient_count, "roles": req.roles}),
        )?;
        Ok(nid)
    })?;
    view.id = Some(notice_id);
    view.sent_by = Some(user.email.clone());
    view.sent_at = Some(t);
    Ok(view)
}

/// The notices sent from a change, newest first.
pub fn notices(conn: &mut DbConn, id: i64) -> AppResult<Vec<NoticeView>> {
    use crate::db::schema::users;
    let rows: Vec<(crate::db::models::CustomerNotice, String)> = customer_notices::table
        .inner_join(users::table.on(users::id.eq(customer_notices::sent_by)))
        .filter(customer_notices::change_id.eq(id))
        .order(customer_notices::id.desc())
        .select((crate::db::models::CustomerNotice::as_select(), users::email))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(n, by)| {
            let recipients: Vec<serde_json::Value> =
                serde_json::from_str(&n.recipients).unwrap_or_default();
            NoticeView {
                id: Some(n.id),
                change: number(n.change_id),
                subject: n.subject,
                body: n.body,
                roles: serde_json::from_str(&n.roles).unwrap_or_default(),
                recipient_count: n.recipient_count as usize,
                recipients: recipients
                    .iter()
                    .map(|r| NoticeRecipient {
                        root: r["root"].as_str().unwrap_or_default().into(),
                        root_name: r["root_name"].as_str().unwrap_or_default().into(),
                        email: r["email"].as_str().unwrap_or_default().into(),
                        name: r["name"].as_str().unwrap_or_default().into(),
                        role: r["role"].as_str().unwrap_or_default().into(),
                    })
                    .collect(),
                roots_without_contacts: vec![],
                sample: None,
                sent_by: Some(by),
                sent_at: Some(n.created_at),
            }
        })
        .collect())
}
