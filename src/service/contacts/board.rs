//! Customer notices as their readers see them: the request, the recipients, one notice's
//! view with what the viewer may do with it, and the notices page's board. What the
//! drafting and deciding use cases share lives here too.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::import::ROLES;
use super::sha256_hex;
use super::view::{require_change_contacts, RootContacts};
use crate::db::models::{Change, CustomerNotice};
use crate::db::{
    changes as change_repo, notices as notice_repo, now, outbox, snapshot, users, DbConn,
};
use crate::domain::notice::{self, Drafted, Facts, NoticeAction, NoticeState};
use crate::domain::ChangeState;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::views::number;
use crate::service::CurrentUser;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
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

pub(super) fn fill(body: &str, customer: &str, change: &str) -> String {
    body.replace("{customer}", customer)
        .replace("{change}", change)
}

/// The subject, body and roles of a request, checked.
pub(super) fn checked(req: &NoticeRequest) -> AppResult<(String, String, Vec<String>)> {
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
pub(super) fn recipients_of(
    roots: &[RootContacts],
    roles: &[String],
) -> (Vec<NoticeRecipient>, Vec<String>) {
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

pub(super) fn notice_facts<'c>(
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
pub(super) type People = HashMap<i64, (String, String)>;

/// Name and address of people, for views and messages.
pub(super) fn people(conn: &mut DbConn, ids: &[i64]) -> AppResult<People> {
    Ok(outbox::people(conn, ids)?
        .into_iter()
        .map(|(id, email, name)| (id, (email, name)))
        .collect())
}

/// A person as messages name them: name and address.
pub(super) fn label(people: &People, id: i64) -> String {
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

/// What [`notice::decide`] needs about recorded notice `n` of `c`; `drafter` names its
/// drafter (its [`label`]).
pub(super) fn drafted<'d>(
    conn: &mut DbConn,
    c: &Change,
    n: &CustomerNotice,
    drafter: &'d str,
) -> AppResult<Drafted<'d>> {
    let (in_req, in_impl) = drafter_teams(conn, c, n)?;
    Ok(Drafted {
        state: n.state,
        drafted_by: n.drafted_by,
        drafter,
        drafter_in_requesting_team: in_req,
        drafter_in_implementing_team: in_impl,
    })
}

/// A recorded notice as `viewer` sees it, with what they may do with it.
pub(super) fn view_of(
    conn: &mut DbConn,
    viewer: &CurrentUser,
    c: &Change,
    n: CustomerNotice,
    who: &People,
    last_sent_at: Option<chrono::NaiveDateTime>,
    t: chrono::NaiveDateTime,
) -> AppResult<NoticeView> {
    let f = notice_facts(viewer, c, last_sent_at, t);
    let drafter = label(who, n.drafted_by);
    let d = drafted(conn, c, &n, &drafter)?;
    let state = n.state;
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
