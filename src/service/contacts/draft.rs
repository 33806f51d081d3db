//! Drafting a customer notice: previewed first (nothing recorded), then recorded as a
//! draft that a member of the change's other team approves.

use serde_json::json;

use super::board::{checked, fill, notice_facts, recipients_of, NoticeRequest, NoticeView};
use super::sha256_hex;
use super::view::affected;
use crate::db::models::{Change, NewCustomerNotice};
use crate::db::{
    changes as change_repo, notices as notice_repo, now, snapshot, write_tx, DbConn, WriteTx,
};
use crate::domain::event::Event;
use crate::domain::notice::{self, NoticeAction, NoticeRefusal, NoticeState};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::locked;
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

/// The preview of a notice (`subject`, `body`, for contacts with `roles`) of change `c`
/// that `user` may draft: refused when they may not, or when nobody would get it.
fn compose(
    conn: &mut DbConn,
    user: &CurrentUser,
    c: &Change,
    (subject, body, roles): (&str, &str, &[String]),
) -> AppResult<NoticeView> {
    let f = notice_facts(user, c, None, now());
    notice::decide(&f, NoticeAction::Draft)?;
    let roots = affected(conn, c.id)?;
    let (recipients, without) = recipients_of(&roots, roles);
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
        sample: recipients.first().map(|r| fill(body, &r.root_name, &chg)),
        subject_sha256: sha256_hex(subject),
        body_sha256: Some(sha256_hex(body)),
        subject: subject.to_string(),
        body: body.to_string(),
        roles: roles.to_vec(),
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
}

/// Record preview `v` of change `id` as `user`'s draft; `v` becomes the draft's view.
fn store_draft(
    conn: &mut WriteTx<'_>,
    user: &CurrentUser,
    id: i64,
    mut v: NoticeView,
) -> AppResult<NoticeView> {
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
}

/// Preview (`req.preview`) or draft a customer notice for change `id`: a member of one of
/// the change's teams, once the change is approved. A draft sends nothing; a member of the
/// other team approves it ([`approve`](super::approve)).
pub fn draft(
    conn: &mut DbConn,
    user: &CurrentUser,
    id: i64,
    req: NoticeRequest,
) -> AppResult<NoticeView> {
    let (subject, body, roles) = checked(&req)?;
    let text = (subject.as_str(), body.as_str(), roles.as_slice());
    if req.preview {
        return snapshot(conn, |conn| {
            let c = change_repo::get(conn, id)?
                .ok_or_else(|| AppError::not_found("change", number(id)))?;
            compose(conn, user, &c, text)
        });
    }
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        let v = compose(conn, user, &c, text)?;
        store_draft(conn, user, id, v)
    })
}
