//! A risk tier's third side (issue #12): `also = { team, signoffs }` names a team that is
//! neither the requesting nor the implementing one; its members sign as `reviewer`, and a
//! change in that tier is approved only when they have. Through the API, the queue, the
//! mails and the change page, on both backends. `outsiders` (otto) is the third side here.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use countersign::db::schema::outbox;
use countersign::domain::schema::EXAMPLE_SCHEMA;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::web::sign_in;

const REVIEWED: &str = r#"
[operations.uninstall_reviewed]
label = "Uninstall apps (reviewed when large)"
target = "app_install"
effect = "soft_delete"
implemented_by = "platform-ops"
signoffs = { requester = 1, implementer = 1 }

[[operations.uninstall_reviewed.tiers]]
above_targets = 2
signoffs = { requester = 1, implementer = 1 }
also = { team = "outsiders", signoffs = 1 }
"#;

const TIER: &str = "tier 1 (above 2 targets): 1 requester and 1 implementer sign-offs, and 1 from `outsiders` as a third side";

async fn reviewed_app(backend: Backend) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    std::fs::write(&path, format!("{EXAMPLE_SCHEMA}{REVIEWED}")).unwrap();
    let app = spawn_app_with(backend, |c| c.schema_path = Some(path.clone())).await;
    app.load_fixture().await;
    (app, dir)
}

/// The recipients of change `id`'s mails of `kind`.
fn mailed(app: &TestApp, id: i64, kind: &str) -> Vec<String> {
    let mut conn = app.conn();
    outbox::table
        .filter(outbox::change_id.eq(id))
        .filter(outbox::event_kind.eq(kind))
        .select(outbox::recipient)
        .load::<String>(&mut conn)
        .unwrap()
}

/// The queue item of change `id` for `who`, if it waits for them.
async fn queued(app: &TestApp, who: &str, id: i64) -> Option<Value> {
    let (s, q) = app.get("/api/v1/queue", who).await;
    assert_eq!(s, StatusCode::OK, "{q}");
    q["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
}

fn allowed(c: &Value) -> Vec<&str> {
    c["allowed_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

async fn a_third_side_must_sign_what_its_tier_names_it_for(backend: Backend) {
    let (app, _dir) = reviewed_app(backend).await;
    let targets = json!({"ids": [inst(1), inst(2), inst(3)]});
    let (id, fp) = app.submitted("ana", "uninstall_reviewed", targets).await;
    let c = app.change(id).await;
    assert_eq!(c["tier"], TIER, "{c}");
    assert_eq!(
        c["policy"],
        json!({"requester": 1, "implementer": 1, "reviewer": 1})
    );
    assert_eq!(
        c["reviewer_side"],
        json!({"team": "outsiders", "required": 1, "current": 0, "missing": 1})
    );
    // The third side is asked by mail and finds it in its queue, marked as its side.
    let otto = TestApp::email("otto");
    assert!(
        mailed(&app, id, "needs_signoff").iter().any(|r| r == otto),
        "otto was not asked: {:?}",
        mailed(&app, id, "needs_signoff")
    );
    let item = queued(&app, "otto", id).await.expect("in otto's queue");
    assert_eq!(item["needs"], json!(["reviewer"]), "{item}");
    assert_eq!(item["missing_reviewer"], 1);
    assert_eq!(item["tier"], TIER);
    let (_, as_otto) = app.get(&format!("/api/v1/changes/{id}"), "otto").await;
    assert_eq!(
        allowed(&as_otto),
        ["sign_reviewer", "reject", "comment"],
        "{as_otto}"
    );
    // The page shows the third side's panel and its sign form to otto only.
    let b = sign_in(&app, "otto").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains("Third side: outsiders"), "{page}");
    assert!(page.contains("id=\"sign-reviewer\""), "{page}");
    let (_, queue) = b.get("/queue").await;
    assert!(queue.contains(&format!("CHG-{id}")), "{queue}");
    assert!(queue.contains("<td class=\"small\">reviewer"), "{queue}");
    let b = sign_in(&app, "ben").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains("Third side: outsiders"));
    assert!(!page.contains("id=\"sign-reviewer\""));
    // Both teams sign: not enough.
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "awaiting_signoff", "{v}");
    // otto was told each time (the author and every other side hear of a sign-off).
    assert_eq!(
        mailed(&app, id, "signed")
            .iter()
            .filter(|r| *r == otto)
            .count(),
        2
    );
    // Nobody from the change's teams counts on the third side, even once in its team.
    app.join("dev", "outsiders");
    let (s, v) = app.sign(id, "dev", "reviewer", &fp, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "separation_of_duties", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("platform-ops"),
        "{v}"
    );
    // Nor does the third side sign another side.
    let (s, v) = app.sign(id, "otto", "implementer", &fp, None).await;
    assert_eq!(
        (s, &v["error"]["code"]),
        (StatusCode::FORBIDDEN, &json!("not_in_team"))
    );
    let (s, v) = app.sign(id, "otto", "reviewer", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    let c = app.change(id).await;
    assert_eq!(c["reviewer_side"]["current"], 1);
    let review = c["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["side"] == "reviewer")
        .unwrap();
    assert_eq!(review["counts"], true, "{review}");
    let (_, events) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    let approved = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "approved")
        .unwrap_or_else(|| panic!("no approved event: {events}"));
    assert_eq!(approved["detail"]["reviewer"], json!([otto]), "{approved}");
    // Everyone hears of the approval but otto, whose sign-off it was.
    let told = mailed(&app, id, "approved");
    assert!(told.iter().any(|r| r == TestApp::email("ben")), "{told:?}");
    assert!(!told.iter().any(|r| r == otto), "{told:?}");
    // The reviewer who leaves the team stops counting: the execute gate sends it back,
    // naming them and their side.
    app.leave("otto", "outsiders");
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "signoffs_no_longer_count", "{v}");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains(&format!(
            "{otto} (reviewer side) is no longer a member of `outsiders`"
        )),
        "{m}"
    );
    assert_eq!(app.change(id).await["state"], "awaiting_signoff");
}

async fn below_its_tier_a_change_has_no_third_side(backend: Backend) {
    let (app, _dir) = reviewed_app(backend).await;
    let targets = json!({"ids": [inst(1), inst(2)]});
    let (id, fp) = app.submitted("ana", "uninstall_reviewed", targets).await;
    let c = app.change(id).await;
    assert_eq!(
        c["policy"],
        json!({"requester": 1, "implementer": 1}),
        "{c}"
    );
    assert_eq!(c["reviewer_side"], Value::Null);
    assert!(queued(&app, "otto", id).await.is_none());
    assert!(!mailed(&app, id, "needs_signoff")
        .iter()
        .any(|r| r == TestApp::email("otto")));
    let (s, v) = app.sign(id, "otto", "reviewer", &fp, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "no_third_side", "{v}");
    // Both teams are enough.
    app.approve(id, &fp).await;
    assert_eq!(app.change(id).await["state"], "approved");
}

async fn the_third_side_never_requests_the_change(backend: Backend) {
    let (app, _dir) = reviewed_app(backend).await;
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "otto",
            json!({"title": "t", "rationale": "r", "requesting_team": "outsiders",
                   "operation": "uninstall_reviewed", "targets": {"ids": [inst(1)]}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "not_requester_team", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`outsiders` signs larger changes"),
        "{v}"
    );
}

both_backends!(backend:
    a_third_side_must_sign_what_its_tier_names_it_for,
    below_its_tier_a_change_has_no_third_side,
    the_third_side_never_requests_the_change,
);
