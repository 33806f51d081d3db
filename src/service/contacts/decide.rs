//! Deciding on a drafted customer notice: approving it (which sends it, through the
//! outbox in the same transaction) or discarding it.

use serde_json::json;

use super::board::{
    drafted, fill, label, notice_facts, people, view_of, NoticeRecipient, NoticeView, People,
};
use super::sha256_hex;
use crate::db::models::{Change, CustomerNotice, NewOutbox};
use crate::db::{notices as notice_repo, now, outbox, write_tx, DbConn};
use crate::domain::event::Event;
use crate::domain::notice::{self, NoticeAction};
use crate::domain::OutboxState;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::changes::locked;
use crate::service::events::record;
use crate::service::views::number;
use crate::service::CurrentUser;

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
    let drafter = label(&who, n.drafted_by);
    let d = drafted(conn, &c, &n, &drafter)?;
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
                channel: crate::domain::hook::OutboxChannel::Mail,
                hook_id: None,
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
