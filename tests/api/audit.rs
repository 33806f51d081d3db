use countersign::db::audit::{self, Verdict};
use countersign::db::schema::audit_events;
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, TestApp};

async fn tampering_is_caught(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    app.sign(id, "ana", "requester", &fp, None).await;
    let (s, v) = app.get("/api/v1/audit/verify", "root").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["intact"], true, "{v}");
    let (s, _) = app.get("/api/v1/audit/verify", "ana").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let mut conn = app.conn();
    let n = match audit::verify(&mut conn).unwrap() {
        Verdict::Intact { events } => events,
        other => panic!("{other:?}"),
    };
    assert!(n >= 5, "schema, import, created, submitted, signed… ({n})");
    // Someone rewrites who signed.
    let signed: i64 = audit_events::table
        .filter(audit_events::action.eq("signed"))
        .select(audit_events::id)
        .first(&mut *conn)
        .unwrap();
    diesel::update(audit_events::table.find(signed))
        .set(audit_events::actor.eq("mallory@evil.example"))
        .execute(&mut *conn)
        .unwrap();
    match audit::verify(&mut conn).unwrap() {
        Verdict::Broken { id, reason } => {
            assert_eq!(id, signed);
            assert!(reason.contains("altered"), "{reason}");
        }
        other => panic!("tampering not caught: {other:?}"),
    }
    let (_, v) = app.get("/api/v1/audit/verify", "root").await;
    assert_eq!(v["intact"], false);
    assert_eq!(v["first_broken_event"], signed);
}

async fn deleting_the_last_events_is_caught(app: TestApp) {
    app.load_fixture().await;
    let mut conn = app.conn();
    let last: i64 = audit_events::table
        .select(diesel::dsl::max(audit_events::id))
        .first::<Option<i64>>(&mut *conn)
        .unwrap()
        .unwrap();
    diesel::delete(audit_events::table.find(last))
        .execute(&mut *conn)
        .unwrap();
    assert!(matches!(
        audit::verify(&mut conn).unwrap(),
        Verdict::Broken { .. }
    ));
}

both_backends!(tampering_is_caught, deleting_the_last_events_is_caught);
