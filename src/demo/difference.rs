//! Demo scenario 8: a signed change whose list moved before the implementers signed, so
//! its requester re-signs from the difference (targets and roots added and removed since).

use diesel::prelude::*;
use serde_json::json;

use super::{e, user};
use crate::db::schema::entities;
use crate::db::DbConn;
use crate::domain::selector::{Scope, Selector};
use crate::domain::signoff::Side;
use crate::domain::Schema;
use crate::service::changes::{self as svc, CreateChange, SignRequest};

/// Uninstall Insight from one site; ben signs; a new Insight installation arrives on that
/// site; the re-resolution shows the difference and awaits ben's sign-off again.
pub(super) fn seed(conn: &mut DbConn, schema: &Schema) -> anyhow::Result<()> {
    let (ben, carla) = (
        user(conn, "ben@app-owners.example")?,
        user(conn, "carla@platform-ops.example")?,
    );
    // The site of the last Insight installation (the others' scenarios take the first).
    let Some(site): Option<String> = entities::table
        .filter(entities::kind.eq("app_install"))
        .filter(entities::attrs.like("%\"app\":\"insight\"%"))
        .order(entities::id.desc())
        .select(entities::parent_id)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten()
    else {
        return Ok(());
    };
    let id = svc::create(
        conn,
        schema,
        &ben,
        CreateChange {
            title: "Uninstall Insight from a customer's main site".into(),
            rationale: "The customer moved to the new analytics product.".into(),
            requesting_team: "app-owners".into(),
            operation: "uninstall_app".into(),
            params: json!({}),
            targets: Selector {
                ids: vec![],
                within: Some(Scope {
                    kind: "site".into(),
                    ids: vec![site.clone()],
                }),
                filter: [("app".to_string(), "insight".to_string())].into(),
            },
            expect: None,
            not_before: None,
            not_after: None,
            submit: true,
        },
    )
    .map_err(e)?;
    let fp = svc::view(conn, schema, id)
        .map_err(e)?
        .fingerprint
        .unwrap_or_default();
    svc::sign(
        conn,
        schema,
        &ben,
        id,
        SignRequest {
            side: Side::Requester,
            fingerprint: fp,
            comment: "The customer confirmed the list.".into(),
            confirm_count: None,
            text_hash: None,
            replaces: None,
        },
    )
    .map_err(e)?;
    // Meanwhile the site got one more Insight installation.
    let line = json!({
        "kind": "app_install",
        "id": "0b1c2d3e-d1ff-4e00-8000-000000000008",
        "parent": site,
        "name": "insight (installed after the sign-off)",
        "attrs": {"app": "insight", "version": "1.0.0"},
    })
    .to_string();
    crate::service::inventory::import(conn, schema, &carla, std::iter::once(Ok(line)), false)
        .map_err(e)?;
    svc::reresolve(conn, schema, &ben, id).map_err(e)?;
    Ok(())
}
