//! Evidence for auditors: one change as a `.tar.gz` bundle read from one snapshot — the
//! change as the API shows it with its whole selector, its targets (the targets CSV), its
//! sign-offs, execution and items, its mails and customer notices, its audit events with
//! the hash-chain segment from its first event to its last, and a manifest with the
//! SHA-256 of every file and the chain head — and the offline check of such a bundle
//! ([`verify`], `countersign audit verify --bundle FILE`).
//!
//! Bounded in memory: every file is written batch by batch into an unnamed temporary file
//! (hashed as it is written), then copied into the archive, itself an unnamed temporary
//! file that the handler streams.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::db::{audit, changes as repo, exec, notices, outbox, users, DbConn};
use crate::domain::signoff::Side;
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::views::{csv_field, number, ChangeView, EventView};
use crate::service::CurrentUser;

mod verify;

pub use verify::{verify, Check, Report};

/// What a bundle's manifest says it is.
pub const FORMAT: &str = "countersign-evidence/1";
/// The manifest's name in the bundle (every name is under the bundle's one directory).
pub const MANIFEST: &str = "manifest.json";
/// The change's audit events, as `GET …/events` answers them.
pub const EVENTS: &str = "events.json";
/// The raw audit rows from the change's first event to its last, one JSON object a line.
pub const CHAIN: &str = "audit_chain.ndjson";

/// Rows read per query while a file is written.
const PAGE: i64 = 2000;

/// A bundle ready to send: an unnamed temporary file at its start.
pub struct Bundle {
    pub file: File,
    pub bytes: u64,
    /// `CHG-12-evidence.tar.gz`
    pub file_name: String,
}

fn io(e: std::io::Error) -> AppError {
    AppError::Unexpected(anyhow::anyhow!("writing the evidence bundle: {e}"))
}

fn json_err(e: serde_json::Error) -> AppError {
    io(std::io::Error::other(e))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// One file of the bundle, written and hashed.
struct Part {
    name: &'static str,
    file: File,
    sha256: String,
    bytes: u64,
}

fn part(
    name: &'static str,
    write: impl FnOnce(&mut dyn Write) -> AppResult<()>,
) -> AppResult<Part> {
    let mut w = Hashing {
        inner: BufWriter::new(tempfile::tempfile().map_err(io)?),
        hasher: Sha256::new(),
        bytes: 0,
    };
    write(&mut w)?;
    w.flush().map_err(io)?;
    let Hashing {
        inner,
        hasher,
        bytes,
    } = w;
    let mut file = inner.into_inner().map_err(|e| io(e.into_error()))?;
    file.rewind().map_err(io)?;
    Ok(Part {
        name,
        file,
        sha256: hex::encode(hasher.finalize()),
        bytes,
    })
}

fn line(out: &mut dyn Write, cells: &[String]) -> AppResult<()> {
    let row: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
    out.write_all(row.join(",").as_bytes()).map_err(io)?;
    out.write_all(b"\n").map_err(io)
}

fn time(t: Option<chrono::NaiveDateTime>) -> String {
    t.map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// Who may take a change's evidence: admins, and members of a team that has a side on it
/// (requesting, implementing, a third side). The bundle holds what only they see elsewhere:
/// the change's mails (the outbox is for admins), its customer notices, and the audit rows
/// of everything that happened between its first event and its last.
pub fn may_take(viewer: &CurrentUser, v: &ChangeView) -> bool {
    let reviewer = v.reviewer_side.as_ref().map(|r| r.team.as_str());
    viewer.is_admin
        || viewer.in_team(&v.requesting_team)
        || viewer.in_team(&v.implementing_team)
        || reviewer.is_some_and(|t| viewer.in_team(t))
}

fn require(viewer: &CurrentUser, v: &ChangeView) -> AppResult<()> {
    if may_take(viewer, v) {
        return Ok(());
    }
    let reviewer = v.reviewer_side.as_ref().map(|r| r.team.as_str());
    Err(AppError::new(
        ErrorCode::Forbidden,
        format!(
            "the evidence of {} is for admins and the teams with a side on it (`{}`, `{}`{}); {} is in none of them",
            v.number,
            v.requesting_team,
            v.implementing_team,
            reviewer.map(|t| format!(", `{t}`")).unwrap_or_default(),
            viewer.email
        ),
    ))
}

/// The evidence bundle of change `id` for `viewer`, read from one snapshot (REPEATABLE
/// READ on PostgreSQL, one WAL read transaction on SQLite): 404 for an unknown change,
/// 403 for someone it is not for.
pub fn bundle(
    conn: &mut DbConn,
    schema: &Schema,
    viewer: &CurrentUser,
    id: i64,
) -> AppResult<Bundle> {
    crate::db::snapshot(conn, |conn| {
        let c = repo::get(conn, id)?.ok_or_else(|| AppError::not_found("change", number(id)))?;
        let v = crate::service::changes::view_for(conn, schema, viewer, id)?;
        require(viewer, &v)?;
        let made_at = crate::db::now();
        let (head_id, head_hash) = audit::head(conn)?;
        let mut parts = Vec::new();
        parts.push(part("change.json", |out| {
            serde_json::to_writer_pretty(&mut *out, &v).map_err(json_err)?;
            out.write_all(b"\n").map_err(io)
        })?);
        parts.push(part("selector.json", |out| {
            out.write_all(c.selector.as_bytes()).map_err(io)
        })?);
        parts.push(part("targets.csv", |out| {
            crate::service::changes::write_targets_csv(conn, schema, &c, None, None, 0, out)
                .map(|_| ())
        })?);
        parts.push(part("signoffs.csv", |out| signoffs_csv(&v, out))?);
        parts.push(part("execution.json", |out| {
            let e = match exec::for_change(conn, id)? {
                Some(_) => serde_json::to_value(crate::service::execution::progress(conn, id)?)
                    .map_err(json_err)?,
                None => serde_json::Value::Null,
            };
            serde_json::to_writer_pretty(&mut *out, &e).map_err(json_err)?;
            out.write_all(b"\n").map_err(io)
        })?);
        parts.push(part("execution_items.csv", |out| items_csv(conn, id, out))?);
        let contacts = crate::service::contacts::may_see_change_contacts(viewer, &c);
        parts.push(part("mails.csv", |out| mails_csv(conn, id, contacts, out))?);
        parts.push(part("notices.json", |out| notices_json(conn, id, out))?);
        let events = audit::for_change(conn, id)?;
        let span = events
            .first()
            .map(|f| f.id)
            .zip(events.last().map(|l| l.id));
        parts.push(part(EVENTS, |out| {
            let list: Vec<EventView> = events.into_iter().map(EventView::from).collect();
            serde_json::to_writer_pretty(&mut *out, &json!({ "events": list }))
                .map_err(json_err)?;
            out.write_all(b"\n").map_err(io)
        })?);
        let mut segment = json!({"file": CHAIN, "first_id": null, "last_id": null, "events": 0, "prev_hash": null});
        parts.push(part(CHAIN, |out| {
            let Some((first, last)) = span else {
                return Ok(());
            };
            let mut from = first;
            let mut n = 0u64;
            while from <= last {
                let page = audit::range(conn, from, last, PAGE)?;
                let Some(end) = page.last().map(|e| e.id) else {
                    break;
                };
                for e in page {
                    if n == 0 {
                        segment["prev_hash"] = json!(e.prev_hash);
                    }
                    n += 1;
                    serde_json::to_writer(&mut *out, &chain_row(&e)).map_err(json_err)?;
                    out.write_all(b"\n").map_err(io)?;
                }
                from = end + 1;
            }
            segment["first_id"] = json!(first);
            segment["last_id"] = json!(last);
            segment["events"] = json!(n);
            Ok(())
        })?);
        let maker = users::find_user(conn, viewer.id)?;
        let manifest = json!({
            "format": FORMAT,
            "change": number(id),
            "change_id": id,
            "made_at": time(Some(made_at)),
            "made_by": {"email": viewer.email, "name": maker.map(|u| u.name).unwrap_or_default()},
            "countersign_version": env!("CARGO_PKG_VERSION"),
            "chain_head": {"id": head_id, "hash": head_hash},
            "segment": segment,
            "files": parts.iter().map(|p| json!({"name": p.name, "sha256": p.sha256, "bytes": p.bytes})).collect::<Vec<_>>(),
        });
        archive(id, made_at, &manifest, parts)
    })
}

/// An audit row as the chain segment holds it: every field its hash covers, as stored.
fn chain_row(e: &crate::db::models::AuditEvent) -> serde_json::Value {
    json!({
        "id": e.id,
        "at": e.at.format(audit::HASHED_TIME).to_string(),
        "actor": e.actor,
        "action": e.action,
        "change_id": e.change_id,
        "detail": e.detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

fn signoffs_csv(v: &ChangeView, out: &mut dyn Write) -> AppResult<()> {
    out.write_all(b"side,team,email,name,fingerprint,at,counts,stale,expired,why_not,comment\n")
        .map_err(io)?;
    for s in &v.signoffs {
        let team = match s.side {
            Side::Requester => v.requesting_team.clone(),
            Side::Implementer => v.implementing_team.clone(),
            Side::Reviewer => v
                .reviewer_side
                .as_ref()
                .map(|r| r.team.clone())
                .unwrap_or_default(),
        };
        line(
            out,
            &[
                s.side.as_str().to_string(),
                team,
                s.by.email.clone(),
                s.by.name.clone(),
                s.fingerprint.clone(),
                time(Some(s.at)),
                s.counts.to_string(),
                s.stale.to_string(),
                s.expired.to_string(),
                s.why_not.clone().unwrap_or_default(),
                s.comment.clone(),
            ],
        )?;
    }
    Ok(())
}

fn items_csv(conn: &mut DbConn, id: i64, out: &mut dyn Write) -> AppResult<()> {
    out.write_all(b"position,wave,kind,id,status,attempts,retries,error,finished_at\n")
        .map_err(io)?;
    let Some(e) = exec::for_change(conn, id)? else {
        return Ok(());
    };
    let mut offset = 0;
    loop {
        let (_, rows) = exec::items(conn, e.id, None, offset, PAGE)?;
        for i in &rows {
            line(
                out,
                &[
                    i.position.to_string(),
                    i.wave.to_string(),
                    i.kind.clone(),
                    i.entity_id.clone(),
                    i.status.as_str().to_string(),
                    i.attempts.to_string(),
                    i.retries.to_string(),
                    i.error.clone().unwrap_or_default(),
                    time(i.finished_at),
                ],
            )?;
        }
        if (rows.len() as i64) < PAGE {
            return Ok(());
        }
        offset += PAGE;
    }
}

/// Said instead of a customer's address to someone who may not see the change's contacts.
const HIDDEN_RECIPIENT: &str = "(a customer contact: hidden)";

fn mails_csv(conn: &mut DbConn, id: i64, contacts: bool, out: &mut dyn Write) -> AppResult<()> {
    out.write_all(b"id,kind,recipient,state,attempts,created_at,sent_at\n")
        .map_err(io)?;
    let mut after = 0;
    loop {
        let rows = outbox::for_change_after(conn, id, after, PAGE)?;
        for m in &rows {
            let customer = m.event_kind == "customer_notice";
            line(
                out,
                &[
                    m.id.to_string(),
                    m.event_kind.clone(),
                    if customer && !contacts {
                        HIDDEN_RECIPIENT.to_string()
                    } else {
                        m.recipient.clone()
                    },
                    m.state.as_str().to_string(),
                    m.attempts.to_string(),
                    time(Some(m.created_at)),
                    time(m.sent_at),
                ],
            )?;
        }
        match rows.last() {
            Some(m) if rows.len() as i64 == PAGE => after = m.id,
            _ => return Ok(()),
        }
    }
}

/// The customer notices (drafts, sent, discarded): what was said, to how many, by whom;
/// the addresses are in `mails.csv`.
fn notices_json(conn: &mut DbConn, id: i64, out: &mut dyn Write) -> AppResult<()> {
    let rows = notices::for_change(conn, id)?;
    let mut ids: Vec<i64> = rows
        .iter()
        .flat_map(|n| [Some(n.drafted_by), n.approved_by, n.discarded_by])
        .flatten()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let people: std::collections::HashMap<i64, String> = outbox::people(conn, &ids)?
        .into_iter()
        .map(|(id, email, _)| (id, email))
        .collect();
    let who = |u: Option<i64>| u.and_then(|u| people.get(&u).cloned());
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "state": n.state,
                "subject": n.subject,
                "subject_sha256": hex::encode(Sha256::digest(n.subject.as_bytes())),
                "body_sha256": n.body_sha256,
                "roles": serde_json::from_str::<serde_json::Value>(&n.roles).unwrap_or_default(),
                "recipient_count": n.recipient_count,
                "drafter_team": n.drafter_team,
                "drafted_by": who(Some(n.drafted_by)),
                "drafted_at": time(Some(n.created_at)),
                "approved_by": who(n.approved_by),
                "sent_at": n.sent_at.map(|t| time(Some(t))),
                "discarded_by": who(n.discarded_by),
                "discarded_at": n.discarded_at.map(|t| time(Some(t))),
            })
        })
        .collect();
    serde_json::to_writer_pretty(&mut *out, &json!({ "notices": list })).map_err(json_err)?;
    out.write_all(b"\n").map_err(io)
}

/// The `.tar.gz`: `CHG-n-evidence/manifest.json` first, then every part in its order.
fn archive(
    id: i64,
    made_at: chrono::NaiveDateTime,
    manifest: &serde_json::Value,
    parts: Vec<Part>,
) -> AppResult<Bundle> {
    let dir = format!("{}-evidence", number(id));
    let gz = flate2::write::GzEncoder::new(
        BufWriter::new(tempfile::tempfile().map_err(io)?),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    let mtime = made_at.and_utc().timestamp().max(0) as u64;
    let header = |bytes: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h
    };
    let m = serde_json::to_vec_pretty(manifest).map_err(json_err)?;
    tar.append_data(
        &mut header(m.len() as u64),
        format!("{dir}/{MANIFEST}"),
        m.as_slice(),
    )
    .map_err(io)?;
    for p in parts {
        tar.append_data(&mut header(p.bytes), format!("{dir}/{}", p.name), p.file)
            .map_err(io)?;
    }
    let gz = tar.into_inner().map_err(io)?;
    let mut file = gz
        .finish()
        .map_err(io)?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    let bytes = file.stream_position().map_err(io)?;
    file.rewind().map_err(io)?;
    Ok(Bundle {
        file,
        bytes,
        file_name: format!("{dir}.tar.gz"),
    })
}
