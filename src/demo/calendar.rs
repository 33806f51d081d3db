//! Demo scenarios 10–12: the change calendar and a scheduled start. A hard freeze over
//! the peak season two weeks out, proposed by one admin and confirmed by another; a
//! recurring weekend freeze for deletions another admin has yet to confirm; and an
//! approved change the implementers scheduled to start at its window's opening.

use chrono::{Duration, NaiveTime};
use diesel::prelude::*;
use serde_json::json;

use super::{e, sign_both, user};
use crate::db::schema::entities;
use crate::db::{now, DbConn};
use crate::domain::calendar::{FreezeSpec, Severity};
use crate::domain::selector::Selector;
use crate::domain::Schema;
use crate::service::calendar::{confirm, propose, ProposalRequest};
use crate::service::changes::{self as svc, CreateChange};
use crate::service::execution::{schedule, ScheduleRequest};

pub(super) fn seed(conn: &mut DbConn, schema: &Schema) -> anyhow::Result<()> {
    let admin = user(conn, "admin@countersign.example")?;
    let rita = user(conn, "rita@countersign.example")?;
    let midnight = |days: i64| {
        (now() + Duration::days(days))
            .date()
            .and_time(NaiveTime::MIN)
    };

    // 10. The peak-season freeze: proposed by one admin, in force once another confirmed.
    let p = propose(
        conn,
        schema,
        &admin,
        ProposalRequest::CreateFreeze(FreezeSpec {
            name: "Peak season".into(),
            severity: Severity::Hard,
            starts_at: midnight(14),
            ends_at: Some(midnight(19)),
            recurrence: None,
            operations: vec![],
            reason: "Our customers' busiest week: nothing risky runs.".into(),
        }),
    )
    .map_err(e)?;
    confirm(conn, schema, &rita, p.id).map_err(e)?;

    // 11. Weekends without deletions, soft: proposed, waiting for the other admin.
    let deletions: Vec<String> = ["delete_site", "decommission_site"]
        .into_iter()
        .filter(|o| schema.operation(o).is_some())
        .map(String::from)
        .collect();
    propose(
        conn,
        schema,
        &rita,
        ProposalRequest::CreateFreeze(FreezeSpec {
            name: "Weekends".into(),
            severity: Severity::Soft,
            starts_at: midnight(1),
            ends_at: None,
            recurrence: Some("FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h".into()),
            operations: deletions,
            reason: "Nobody should have to undo a deletion on a Saturday.".into(),
        }),
    )
    .map_err(e)?;

    // 12. Approved, and scheduled by the implementers to start when its window opens.
    let installs: Vec<String> = entities::table
        .filter(entities::kind.eq("app_install"))
        .filter(entities::attrs.like("%\"app\":\"ledger\"%"))
        .order(entities::id.desc())
        .limit(8)
        .select(entities::id)
        .load(conn)?;
    if installs.is_empty() {
        return Ok(());
    }
    let ana = user(conn, "ana@app-owners.example")?;
    let carla = user(conn, "carla@platform-ops.example")?;
    let opens = midnight(3) + Duration::hours(8);
    let id = svc::create(
        conn,
        schema,
        &ana,
        CreateChange {
            title: "Uninstall Ledger from eight sites in the agreed maintenance window".into(),
            rationale: "The customers moved to the hosted ledger; the window is agreed with them."
                .into(),
            requesting_team: "app-owners".into(),
            operation: "uninstall_app".into(),
            params: json!({}),
            targets: Selector {
                ids: installs,
                ..Default::default()
            },
            expect: None,
            not_before: Some(opens.and_utc()),
            not_after: Some((opens + Duration::hours(4)).and_utc()),
            submit: true,
        },
    )
    .map_err(e)?;
    let fingerprint = sign_both(conn, schema, id, &ana, &carla)?;
    schedule(
        conn,
        schema,
        &carla,
        id,
        &ScheduleRequest {
            fingerprint,
            at: None,
            wait_for_conflicts: false,
        },
    )
    .map_err(e)?;
    Ok(())
}
