//! Demo scenario 9: decommissioning sites of 21 customers, above `decommission_site`'s
//! tier, signed by both teams and awaiting its third side: a `security` review.

use diesel::prelude::*;
use serde_json::json;

use super::{e, user};
use crate::db::schema::entities;
use crate::db::DbConn;
use crate::domain::selector::Selector;
use crate::domain::signoff::Side;
use crate::domain::{EntityState, Schema};
use crate::service::changes::{self as svc, CreateChange, SignRequest};

/// Customers whose sites the change deletes: one more than the tier's `above_roots`.
const CUSTOMERS: usize = 21;

/// Decommission one site (and its app installations) of each of 21 customers (each keeps
/// its others, so `min_remaining` holds); ana and two implementers sign; sam of
/// `security` has yet to.
pub(super) fn seed(conn: &mut DbConn, schema: &Schema) -> anyhow::Result<()> {
    let Some(op) = schema.operation("decommission_site") else {
        return Ok(());
    };
    if op.third_side_teams().next().is_none() {
        return Ok(());
    }
    let sites: Vec<(Option<String>, String)> = entities::table
        .filter(entities::kind.eq("site"))
        .filter(entities::state.eq(EntityState::Active))
        .order((entities::parent_id.desc(), entities::id.desc()))
        .select((entities::parent_id, entities::id))
        .load(conn)?;
    // The first (highest) site of each customer, from the last customers (the other
    // scenarios take the first ones).
    let mut ids: Vec<String> = Vec::new();
    let mut last: Option<Option<String>> = None;
    for (org, site) in sites {
        if last.as_ref() != Some(&org) {
            ids.push(site);
            last = Some(org);
        }
        if ids.len() == CUSTOMERS {
            break;
        }
    }
    let ana = user(conn, "ana@app-owners.example")?;
    let id = svc::create(
        conn,
        schema,
        &ana,
        CreateChange {
            title: "Decommission the staging sites of 21 customers".into(),
            rationale: "Staging moved to the shared preview environment; these sites have had no traffic for 90 days.".into(),
            requesting_team: "app-owners".into(),
            operation: "decommission_site".into(),
            params: json!({}),
            targets: Selector {
                ids,
                ..Default::default()
            },
            expect: None,
            not_before: None,
            not_after: None,
            submit: true,
        },
    )
    .map_err(e)?;
    let v = svc::view(conn, schema, id).map_err(e)?;
    let fp = v.fingerprint.clone().unwrap_or_default();
    let implementers = ["carla", "dev"].map(|n| format!("{n}@platform-ops.example"));
    let signers = [(&ana, Side::Requester)];
    let ops: Vec<_> = implementers
        .iter()
        .map(|m| user(conn, m))
        .collect::<anyhow::Result<_>>()?;
    for (who, side) in signers
        .into_iter()
        .chain(ops.iter().map(|o| (o, Side::Implementer)))
    {
        svc::sign(
            conn,
            schema,
            who,
            id,
            SignRequest {
                side,
                fingerprint: fp.clone(),
                comment: String::new(),
                confirm_count: Some(v.summary.targets),
                text_hash: None,
                replaces: None,
            },
        )
        .map_err(e)?;
    }
    Ok(())
}
