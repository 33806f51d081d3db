//! Editing a change: its author changes the text, parameters, targets or expectation of
//! a draft, awaiting or approved change, which is then resolved again; new words make
//! the sign-offs given for the old ones stale.

use serde::Deserialize;
use serde_json::Value;

use super::permissions::require;
use super::resolve::{reresolve_locked, ResolveOutcome};
use super::shared::{
    change_operation, check_params, check_rationale, check_selector, check_title, locked,
    move_state,
};
use crate::db::models::Change;
use crate::db::{changes as repo, write_tx, DbConn, WriteTx};
use crate::domain::access::ChangeAction;
use crate::domain::event::{Event, Stale, Staleness};
use crate::domain::execution::RestoreSpec;
use crate::domain::resolution::Expectation;
use crate::domain::schema::Operation;
use crate::domain::selector::Selector;
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;
use crate::service::CurrentUser;

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditChange {
    pub title: Option<String>,
    pub rationale: Option<String>,
    pub params: Option<Value>,
    pub targets: Option<Selector>,
    /// `null` removes the expectation.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Expectation>)]
    pub expect: Option<Option<Expectation>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Expectation>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// The stored columns of a change after `patch`, checked, and which fields it named.
struct Patched {
    title: String,
    rationale: String,
    params: String,
    selector: String,
    expect: Option<String>,
    fields: Vec<&'static str>,
}

/// A rollback's and a bulk restore's targets and parameters are fixed.
fn check_fixed(c: &Change, patch: &EditChange) -> AppResult<()> {
    if c.rollback_of.is_some() && (patch.targets.is_some() || patch.params.is_some()) {
        return Err(AppError::new(ErrorCode::RollbackFixed,
            "a rollback's targets and parameters are fixed: they are what the original execution changed",
        ));
    }
    if RestoreSpec::of_selector(&c.selector).is_some()
        && (patch.targets.is_some() || patch.params.is_some())
    {
        return Err(AppError::new(ErrorCode::RestoreFixed,
            "a bulk restore's targets are fixed by what it restores: cancel it and request a new one",
        ));
    }
    Ok(())
}

/// `c` with `patch` applied, each given field checked.
fn patched(op: &Operation, c: &Change, patch: &EditChange) -> AppResult<Patched> {
    let mut fields = Vec::new();
    let title = match &patch.title {
        Some(t) => {
            fields.push("title");
            check_title(t)?.into_string()
        }
        None => c.title.clone(),
    };
    let rationale = match &patch.rationale {
        Some(r) => {
            fields.push("rationale");
            check_rationale(r)?.into_string()
        }
        None => c.rationale.clone(),
    };
    let params = match &patch.params {
        Some(p) => {
            fields.push("params");
            check_params(op, p)?.to_string()
        }
        None => c.params.clone(),
    };
    let selector = match &patch.targets {
        Some(s) => {
            fields.push("targets");
            check_selector(op, s)?;
            serde_json::to_string(s).expect("selector")
        }
        None => c.selector.clone(),
    };
    let expect = match &patch.expect {
        Some(e) => {
            fields.push("expect");
            e.as_ref()
                .map(|e| serde_json::to_string(e).expect("expect"))
        }
        None => c.expect.clone(),
    };
    Ok(Patched {
        title,
        rationale,
        params,
        selector,
        expect,
        fields,
    })
}

/// A sign-off covers the text its signer read: after new words, mark the sign-offs that
/// are still current stale too, and take an approved change back to awaiting sign-off.
fn text_edited(
    conn: &mut WriteTx<'_>,
    user: &CurrentUser,
    id: i64,
    fields: &[&str],
    out: &mut ResolveOutcome,
) -> AppResult<()> {
    let text_stale = repo::mark_stale(conn, id, None)?;
    if text_stale == 0 {
        return Ok(());
    }
    record(
        conn,
        &user.actor(),
        Some(id),
        Event::SignoffsStale(Stale {
            count: text_stale as u64,
            previous_fingerprint: out.fingerprint.clone(),
            fingerprint: out.fingerprint.clone(),
            reason: "the title or rationale was edited after it was signed".into(),
            why: Staleness::Text {
                text_changed: true,
                fields: fields.iter().map(|f| f.to_string()).collect(),
            },
        }),
    )?;
    out.stale_signoffs += text_stale;
    if out.state == ChangeState::Approved {
        move_state(
            conn,
            &user.actor(),
            id,
            (ChangeState::Approved, ChangeState::AwaitingSignoff),
            "the title or rationale changed after it was signed; earlier sign-offs are stale"
                .into(),
        )?;
        out.state = ChangeState::AwaitingSignoff;
    }
    Ok(())
}

/// Author edits a draft, awaiting or approved change; it is resolved again.
#[tracing::instrument(name = "changes::edit", skip_all, fields(change = id, user = user.id))]
pub fn edit(
    conn: &mut DbConn,
    schema: &Schema,
    user: &CurrentUser,
    id: i64,
    patch: EditChange,
) -> AppResult<ResolveOutcome> {
    write_tx(conn, |conn| {
        let c = locked(conn, id)?;
        require(conn, schema, user, &c, ChangeAction::Edit)?;
        let op = change_operation(schema, &c)?;
        check_fixed(&c, &patch)?;
        let p = patched(op, &c, &patch)?;
        repo::update_text(
            conn,
            id,
            &p.title,
            &p.rationale,
            &p.params,
            &p.selector,
            p.expect.as_deref(),
        )?;
        record(
            conn,
            &user.actor(),
            Some(id),
            Event::Edited {
                fields: p.fields.iter().map(|f| f.to_string()).collect(),
            },
        )?;
        // Resolve first: a target change marks its own sign-offs stale (and says what was
        // added and removed). Then a sign-off covers the text its signer read: new words make
        // the sign-offs that are still current stale too.
        let text_changed = p.title != c.title || p.rationale != c.rationale;
        let edited = repo::get(conn, id)?.expect("exists");
        let mut out = reresolve_locked(conn, schema, &edited, &user.actor(), "edited")?;
        if text_changed {
            text_edited(conn, user, id, &p.fields, &mut out)?;
        }
        Ok(out)
    })
}
