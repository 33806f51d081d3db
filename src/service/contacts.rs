//! Customer contacts: people attached to inventory entities (usually the root, e.g. the
//! customer organisation). They are never deleted or hidden when their entity is
//! soft-deleted or purged: they are how the customers of a mistake are reached.
//! From a change: the affected roots with their contacts, and customer notices: drafted
//! (previewed first) by a member of one of the change's teams, approved by a member of the
//! other team, and only then sent through the outbox (`domain::notice` decides who may).
//! Contacts are seen only by admins and the teams of changes that affect the customer.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::lines::{clip, Line};

use super::changes::locked;
use super::events::record;
use super::views::number;
use super::CurrentUser;
use crate::db::audit::Actor;
use crate::db::models::{
    Change, Contact, CustomerNotice, NewContact, NewCustomerNotice, NewOutbox,
};
use crate::db::schema::{change_targets, contacts, entities};
use crate::db::{
    changes as change_repo, notices as notice_repo, now, outbox, snapshot, users, write_tx, DbConn,
    CHUNK,
};
use crate::domain::event::Event;
use crate::domain::notice::{
    self, change_allows_notices, Drafted, Facts, NoticeAction, NoticeRefusal, NoticeState,
};
use crate::domain::{ChangeState, OutboxState};
use crate::error::{AppError, AppResult, ErrorCode};

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
    let mut good: Vec<(u64, ContactLine)> = Vec::new();
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
        let mut bad = |m: String| {
            report.rejected += 1;
            if report.errors.len() < 1000 {
                report.errors.push(ContactLineError { line, message: m });
            }
        };
        let raw = match raw {
            Ok(t) => t,
            Err(m) => {
                bad(m);
                continue;
            }
        };
        let raw = raw.as_str();
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
            bad(format!("`{}` is not a mail address", clip(&c.email)));
        } else if !ROLES.contains(&c.role.as_str()) {
            bad(format!(
                "role `{}` is not one of {}",
                clip(&c.role),
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
                message: format!("`{}` is not in the inventory", clip(&c.entity)),
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

// ---- who sees contacts ----------------------------------------------------------------

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
fn require_change_contacts(viewer: &CurrentUser, c: &Change) -> AppResult<()> {
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
fn affected(conn: &mut DbConn, id: i64) -> AppResult<Vec<RootContacts>> {
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

// ---- customer notices: drafted by one team, approved (and so sent) by the other --------

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
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
    /// `true`: answer what would be sent, record nothing. `false`: record a draft, which a
    /// member of the change's other team approves (that sends it).
    #[serde(default)]
    pub preview: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoticeRecipient {
    pub root: String,
    pub root_name: String,
    pub email: String,
    pub name: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeView {
    pub id: Option<i64>,
    pub change: String,
    /// `preview` (nothing recorded), `draft`, `sent` or `discarded`.
    pub state: String,
    pub subject: String,
    pub body: String,
    pub roles: Vec<String>,
    pub recipients: Vec<NoticeRecipient>,
    pub recipient_count: usize,
    /// Affected roots nobody can be told about (no contact with the roles asked for).
    pub roots_without_contacts: Vec<String>,
    /// The first recipient's text, with the placeholders filled in.
    pub sample: Option<String>,
    pub subject_sha256: String,
    /// `None` only for notices sent before notices needed an approval.
    pub body_sha256: Option<String>,
    pub drafted_by: Option<String>,
    pub drafted_at: Option<chrono::NaiveDateTime>,
    /// The change's team the drafter drafted for.
    pub drafter_team: Option<String>,
    /// Whose members may approve it.
    pub approver_team: Option<String>,
    pub approved_by: Option<String>,
    /// Who sent it: the approver (the drafter for notices from before approvals).
    pub sent_by: Option<String>,
    pub sent_at: Option<chrono::NaiveDateTime>,
    pub discarded_by: Option<String>,
    pub discarded_at: Option<chrono::NaiveDateTime>,
    /// What the caller may do with it now (`approve`, `discard`).
    pub allowed_actions: Vec<&'static str>,
    /// Why the caller may not approve it, when it is a draft they may not approve.
    pub cannot_approve: Option<String>,
}

fn fill(body: &str, customer: &str, change: &str) -> String {
    body.replace("{customer}", customer)
        .replace("{change}", change)
}

/// The subject, body and roles of a request, checked.
fn checked(req: &NoticeRequest) -> AppResult<(String, String, Vec<String>)> {
    let subject = req.subject.trim().to_string();
    let body = req.body.trim().to_string();
    if subject.is_empty() || subject.len() > 200 || subject.contains(['\r', '\n']) {
        return Err(AppError::new(
            ErrorCode::InvalidSubject,
            "the subject must be one line of 1 to 200 characters",
        ));
    }
    if body.is_empty() || body.len() > 20_000 {
        return Err(AppError::new(
            ErrorCode::InvalidBody,
            "the body must be 1 to 20000 characters",
        ));
    }
    let mut roles = Vec::new();
    for r in &req.roles {
        if !ROLES.contains(&r.as_str()) {
            return Err(AppError::new(
                ErrorCode::InvalidRole,
                format!("role `{r}` is not one of {}", ROLES.join(", ")),
            ));
        }
        if !roles.contains(r) {
            roles.push(r.clone());
        }
    }
    Ok((subject, body, roles))
}

/// One recipient per (root, address) with one of `roles` (all roles when empty), and the
/// roots nobody can be told about.
fn recipients_of(roots: &[RootContacts], roles: &[String]) -> (Vec<NoticeRecipient>, Vec<String>) {
    let mut recipients = Vec::new();
    let mut without = Vec::new();
    for r in roots {
        let mut seen = BTreeSet::new();
        let mut any = false;
        for ct in &r.contacts {
            if !roles.is_empty() && !roles.contains(&ct.role) {
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
    (recipients, without)
}

fn notice_facts<'c>(
    user: &CurrentUser,
    c: &'c Change,
    last_sent_at: Option<chrono::NaiveDateTime>,
    t: chrono::NaiveDateTime,
) -> Facts<'c> {
    Facts {
        change_state: c.state,
        requesting_team: &c.requesting_team,
        implementing_team: &c.implementing_team,
        person_id: user.id,
        in_requesting_team: user.in_team(&c.requesting_team),
        in_implementing_team: user.in_team(&c.implementing_team),
        last_sent_at,
        now: t,
    }
}

/// Address and name of people by id, for views and messages.
type People = HashMap<i64, (String, String)>;

/// Name and address of people, for views and messages.
fn people(conn: &mut DbConn, ids: &[i64]) -> AppResult<People> {
    Ok(outbox::people(conn, ids)?
        .into_iter()
        .map(|(id, email, name)| (id, (email, name)))
        .collect())
}

fn label(people: &People, id: i64) -> String {
    people
        .get(&id)
        .map(|(email, name)| format!("{name} ({email})"))
        .unwrap_or_else(|| format!("user {id}"))
}

/// The drafter's side of a recorded notice: the team they drafted for, and any of the
/// change's teams they are in now (someone who joined the other team since cannot have
/// their notice approved by it).
fn drafter_teams(conn: &mut DbConn, c: &Change, n: &CustomerNotice) -> AppResult<(bool, bool)> {
    let now_in = users::user_teams(conn, n.drafted_by)?;
    let was = |t: &str| n.drafter_team.as_deref() == Some(t) || now_in.iter().any(|x| x == t);
    Ok((was(&c.requesting_team), was(&c.implementing_team)))
}

/// A recorded notice as `viewer` sees it, with what they may do with it.
fn view_of(
    conn: &mut DbConn,
    viewer: &CurrentUser,
    c: &Change,
    n: CustomerNotice,
    who: &People,
    last_sent_at: Option<chrono::NaiveDateTime>,
    t: chrono::NaiveDateTime,
) -> AppResult<NoticeView> {
    let f = notice_facts(viewer, c, last_sent_at, t);
    let (in_req, in_impl) = drafter_teams(conn, c, &n)?;
    let drafter = label(who, n.drafted_by);
    let state = n.state;
    let d = Drafted {
        state,
        drafted_by: n.drafted_by,
        drafter: &drafter,
        drafter_in_requesting_team: in_req,
        drafter_in_implementing_team: in_impl,
    };
    let mut allowed_actions = Vec::new();
    let mut cannot_approve = None;
    match notice::decide(&f, NoticeAction::Approve(&d)) {
        Ok(()) => allowed_actions.push("approve"),
        Err(e) if state == NoticeState::Draft => cannot_approve = Some(e.to_string()),
        Err(_) => {}
    }
    if notice::decide(&f, NoticeAction::Discard(&d)).is_ok() {
        allowed_actions.push("discard");
    }
    let approver_team = (state == NoticeState::Draft).then(|| notice::approver_team(&f, &d));
    let email = |id: Option<i64>| id.and_then(|i| who.get(&i)).map(|p| p.0.clone());
    let recipients: Vec<NoticeRecipient> = serde_json::from_str(&n.recipients).unwrap_or_default();
    let chg = number(n.change_id);
    Ok(NoticeView {
        id: Some(n.id),
        change: chg.clone(),
        state: state.as_str().into(),
        sample: recipients
            .first()
            .map(|r| fill(&n.body, &r.root_name, &chg)),
        subject_sha256: sha256_hex(&n.subject),
        subject: n.subject,
        body: n.body,
        roles: serde_json::from_str(&n.roles).unwrap_or_default(),
        recipient_count: n.recipient_count as usize,
        recipients,
        roots_without_contacts: vec![],
        body_sha256: n.body_sha256,
        drafted_by: email(Some(n.drafted_by)),
        drafted_at: Some(n.created_at),
        drafter_team: n.drafter_team,
        approver_team,
        approved_by: email(n.approved_by),
        sent_by: if state == NoticeState::Sent {
            email(n.approved_by.or(Some(n.drafted_by)))
        } else {
            None
        },
        sent_at: n.sent_at,
        discarded_by: email(n.discarded_by),
        discarded_at: n.discarded_at,
        allowed_actions,
        cannot_approve,
    })
}

/// Preview (`req.preview`) or draft a customer notice for change `id`: a member of one of
/// the change's teams, once the change is approved. A draft sends nothing; a member of the
/// other team approves it ([`approve`]).
pub fn draft(
    conn: &mut DbConn,
    user: &CurrentUser,
    id: i64,
    req: NoticeRequest,
) -> AppResult<NoticeView> {
    let (subject, body, roles) = checked(&req)?;
    let compose = |conn: &mut DbConn, c: &Change| -> AppResult<NoticeView> {
        let f = notice_facts(user, c, None, now());
        notice::decide(&f, NoticeAction::Draft)?;
        let roots = affected(conn, c.id)?;
        let (recipients, without) = recipients_of(&roots, &roles);
        if recipients.is_empty() {
            return Err(AppError::new(
                ErrorCode::NoRecipients,
                format!(
                    "none of the {} affected roots has a contact{}",
                    roots.len(),
                    if roles.is_empty() {
                        String::new()
                    } else {
                        format!(" with role {}", roles.join("/"))
                    }
                ),
            ));
        }
        let chg = number(c.id);
        let team = notice::drafting_team(&f).map(str::to_string);
        let approver = notice::approving_team(&f).map(str::to_string);
        Ok(NoticeView {
            id: None,
            change: chg.clone(),
            state: "preview".into(),
            sample: recipients.first().map(|r| fill(&body, &r.root_name, &chg)),
            subject_sha256: sha256_hex(&subject),
            body_sha256: Some(sha256_hex(&body)),
            subject: subject.clone(),
            body: body.clone(),
            roles: roles.clone(),
            recipient_count: recipients.len(),
            recipients,
            roots_without_contacts: without,
            drafted_by: None,
            drafted_at: None,
            drafter_team: team,
            approver_team: approver,
            approved_by: None,
            sent_by: None,
            sent_at: None,
            discarded_by: None,
            discarded_at: None,
            allowed_actions: vec![],
            cannot_approve: None,
        })
    };
    if req.preview {
        return snapshot(conn, |conn| {
            let c = change_repo::get(conn, id)?
                .ok_or_else(|| AppError::not_found("change", number(id)))?;
            compose(conn, &c)
        });
    }
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        let mut v = compose(conn, &c)?;
        let t = now();
        let nid = notice_repo::insert(
            conn,
            &NewCustomerNotice {
                change_id: id,
                subject: v.subject.clone(),
                body: v.body.clone(),
                roles: serde_json::to_string(&v.roles).expect("roles"),
                recipients: serde_json::to_string(&v.recipients).expect("recipients"),
                recipient_count: v.recipient_count as i64,
                drafted_by: user.id,
                created_at: t,
                state: NoticeState::Draft,
                drafter_team: v.drafter_team.clone(),
                body_sha256: v.body_sha256.clone(),
            },
        )?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::CustomerNoticeDrafted {
                notice: nid,
                subject: v.subject.clone(),
                subject_sha256: v.subject_sha256.clone(),
                body_sha256: v.body_sha256.clone(),
                recipients: v.recipient_count as u64,
                roles: json!(v.roles),
                drafter_team: v.drafter_team.clone(),
                approver_team: v.approver_team.clone(),
            },
        )?;
        v.id = Some(nid);
        v.state = NoticeState::Draft.to_string();
        v.drafted_by = Some(user.email.clone());
        v.drafted_at = Some(t);
        v.allowed_actions = vec!["discard"];
        v.cannot_approve = Some(
            NoticeRefusal::OwnNotice {
                team: v.approver_team.clone().unwrap_or_default(),
            }
            .to_string(),
        );
        Ok(v)
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    Approve,
    Discard,
}

/// Lock change `id`, load notice `nid` and decide on it for `user`: the change, the notice,
/// the people involved and the time of the decision.
fn decide_on(
    conn: &mut DbConn,
    user: &CurrentUser,
    id: i64,
    nid: i64,
    decision: Decision,
) -> AppResult<(Change, CustomerNotice, People, chrono::NaiveDateTime)> {
    let c = locked(conn, id)?;
    let n = notice_repo::get(conn, id, nid)?.ok_or_else(|| {
        AppError::new(
            ErrorCode::NotFound,
            format!("{} has no customer notice {nid}", number(id)),
        )
    })?;
    let t = now();
    let last = notice_repo::last_sent_at(conn, id)?;
    let who = people(conn, &[n.drafted_by, user.id])?;
    let f = notice_facts(user, &c, last, t);
    let (in_req, in_impl) = drafter_teams(conn, &c, &n)?;
    let drafter = label(&who, n.drafted_by);
    let d = Drafted {
        state: n.state,
        drafted_by: n.drafted_by,
        drafter: &drafter,
        drafter_in_requesting_team: in_req,
        drafter_in_implementing_team: in_impl,
    };
    notice::decide(
        &f,
        match decision {
            Decision::Approve => NoticeAction::Approve(&d),
            Decision::Discard => NoticeAction::Discard(&d),
        },
    )?;
    Ok((c, n, who, t))
}

/// Approve draft `nid` of change `id`, which sends it: one outbox row per recipient in this
/// transaction, so the approval and its mails commit together. A member of the change's
/// team the drafter is not in; at most one send per change every ten minutes.
pub fn approve(conn: &mut DbConn, user: &CurrentUser, id: i64, nid: i64) -> AppResult<NoticeView> {
    write_tx(conn, |conn| {
        let (c, n, who, t) = decide_on(conn, user, id, nid, Decision::Approve)?;
        if !notice_repo::mark_sent(conn, nid, user.id, t)? {
            return Err(AppError::new(
                ErrorCode::NoticeNotDraft,
                "this notice is no longer a draft",
            ));
        }
        let chg = number(id);
        let recipients: Vec<NoticeRecipient> = serde_json::from_str(&n.recipients)
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("notice {nid} recipients: {e}")))?;
        let rows: Vec<NewOutbox> = recipients
            .iter()
            .map(|r| NewOutbox {
                // Per customer: one person who is a contact of two customers gets each
                // customer's own notice.
                event_key: format!("notice:{nid}:{}", r.root),
                event_kind: "customer_notice".into(),
                change_id: Some(id),
                user_id: None,
                recipient: r.email.clone(),
                payload: json!({"subject": n.subject, "body": fill(&n.body, &r.root_name, &chg), "root": r.root}).to_string(),
                message_id: uuid::Uuid::new_v4().simple().to_string(),
                state: OutboxState::Pending,
                next_attempt_at: t,
                digest_id: None,
                created_at: t,
            })
            .collect();
        outbox::enqueue(conn, &rows)?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::CustomerNoticeSent {
                notice: nid,
                subject: n.subject.clone(),
                subject_sha256: sha256_hex(&n.subject),
                body_sha256: n.body_sha256.clone(),
                recipients: recipients.len() as u64,
                roles: serde_json::from_str::<serde_json::Value>(&n.roles).unwrap_or_default(),
                drafted_by: who.get(&n.drafted_by).map(|p| p.0.clone()),
                approved_by: user.email.clone(),
            },
        )?;
        let n = notice_repo::get(conn, id, nid)?.expect("the notice just sent");
        view_of(conn, user, &c, n, &who, Some(t), t)
    })
}

/// Discard draft `nid` of change `id`: withdrawn by its drafter or declined by someone who
/// could approve it. Nothing is sent.
pub fn discard(conn: &mut DbConn, user: &CurrentUser, id: i64, nid: i64) -> AppResult<NoticeView> {
    write_tx(conn, |conn| {
        let (c, n, mut who, t) = decide_on(conn, user, id, nid, Decision::Discard)?;
        if !notice_repo::mark_discarded(conn, nid, user.id, t)? {
            return Err(AppError::new(
                ErrorCode::NoticeNotDraft,
                "this notice is no longer a draft",
            ));
        }
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::CustomerNoticeDiscarded {
                notice: nid,
                subject_sha256: sha256_hex(&n.subject),
                body_sha256: n.body_sha256.clone(),
                by_drafter: n.drafted_by == user.id,
                drafted_by: who.get(&n.drafted_by).map(|p| p.0.clone()),
            },
        )?;
        who.extend(people(conn, &[user.id])?);
        let last = notice_repo::last_sent_at(conn, id)?;
        let n = notice_repo::get(conn, id, nid)?.expect("the notice just discarded");
        view_of(conn, user, &c, n, &who, last, t)
    })
}

/// The notices of change `id` (drafts, sent, discarded), newest first, with what `viewer`
/// may do with each. Their recipient lists are contacts: admins and the change's teams.
pub fn notices(conn: &mut DbConn, viewer: &CurrentUser, id: i64) -> AppResult<Vec<NoticeView>> {
    Ok(board(conn, viewer, id)?.notices)
}

/// Everything the notices page shows, read from one snapshot.
#[derive(Debug, Clone)]
pub struct NoticeBoard {
    pub change: String,
    pub title: String,
    pub state: ChangeState,
    pub requesting_team: String,
    pub implementing_team: String,
    /// Why the viewer may not draft a notice now (`None`: they may).
    pub cannot_draft: Option<String>,
    /// The team the viewer drafts for, and the one that approves.
    pub drafting_team: Option<String>,
    pub approving_team: Option<String>,
    /// When the next notice can be sent, if not now.
    pub next_send_at: Option<chrono::NaiveDateTime>,
    pub notices: Vec<NoticeView>,
}

pub fn board(conn: &mut DbConn, viewer: &CurrentUser, id: i64) -> AppResult<NoticeBoard> {
    snapshot(conn, |conn| {
        let c =
            change_repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        require_change_contacts(viewer, &c)?;
        let t = now();
        let last = notice_repo::last_sent_at(conn, id)?;
        let rows = notice_repo::for_change(conn, id)?;
        let mut ids: Vec<i64> = rows
            .iter()
            .flat_map(|n| [Some(n.drafted_by), n.approved_by, n.discarded_by])
            .flatten()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let who = people(conn, &ids)?;
        let mut list = Vec::with_capacity(rows.len());
        for n in rows {
            list.push(view_of(conn, viewer, &c, n, &who, last, t)?);
        }
        let f = notice_facts(viewer, &c, last, t);
        let drafting_team = notice::drafting_team(&f).map(str::to_string);
        let approving_team = notice::approving_team(&f).map(str::to_string);
        Ok(NoticeBoard {
            change: number(id),
            cannot_draft: notice::decide(&f, NoticeAction::Draft)
                .err()
                .map(|e| e.to_string()),
            drafting_team,
            approving_team,
            next_send_at: notice::next_send_at(&f),
            notices: list,
            title: c.title,
            state: c.state,
            requesting_team: c.requesting_team,
            implementing_team: c.implementing_team,
        })
    })
}
