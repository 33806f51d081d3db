//! Cascading soft deletes and purge, through the API on both backends.

use countersign::db::schema::entities;
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, site, TestApp, ORG1};

async fn targets_of(app: &TestApp, id: i64) -> Vec<(String, String, String)> {
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/targets?limit=1000"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_string(),
                t["id"].as_str().unwrap().to_string(),
                t["scope_path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn cascade_lists_signs_and_rolls_back_descendants(app: TestApp) {
    app.load_fixture().await;
    // Without cascade, a site with active installations is refused, naming them.
    let v = app
        .create("ana", "delete_site", json!({"ids": [site(1)]}))
        .await;
    assert_eq!(v["errors"][0]["code"], "has_active_children", "{v}");
    assert_eq!(v["errors"][0]["line"], 1);

    // With cascade the installations are part of the list both teams sign.
    let (id, fp) = app
        .submitted(
            "ana",
            "decommission_site",
            json!({"ids": [site(1), site(5)]}),
        )
        .await;
    let c = app.change(id).await;
    assert_eq!(c["summary"]["targets"], 4, "{c}");
    assert_eq!(c["summary"]["cascaded"]["app_install"], 2, "{c}");
    let text = c["summary"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("2 Cloud sites on 2 Customer organisations")
            && text.contains("with the 2 App installations below them (cascade)"),
        "{text}"
    );
    let targets = targets_of(&app, id).await;
    assert_eq!(
        targets,
        vec![
            ("app_install".into(), inst(1), format!("{ORG1}/{}", site(1))),
            ("app_install".into(), inst(2), format!("{ORG1}/{}", site(1))),
            ("site".into(), site(1), ORG1.into()),
            ("site".into(), site(5), "org-00000002".into()),
        ]
    );
    // The implementer types the full count, descendants included.
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(2)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    for who in ["carla", "dev"] {
        let (s, v) = app.sign(id, who, "implementer", &fp, Some(4)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    assert_eq!(app.change(id).await["state"], "approved");
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    assert_eq!(v["done"], 4, "{v}");
    for e in [site(1), site(5), inst(1), inst(2)] {
        let e = app.entity(&e).await;
        assert_eq!(e["state"], "deleted", "{e}");
        assert_eq!(e["deleted_by"], format!("CHG-{id}"));
    }
    for e in [site(2), inst(3), inst(4)] {
        assert_eq!(app.entity(&e).await["state"], "active");
    }

    // Rolling back restores the sites and the installations the cascade took (one
    // implementer sign-off is enough for this operation's rollbacks).
    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb_id = rb["id"].as_i64().unwrap();
    let rfp = rb["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(rb["summary"]["targets"], 4, "{rb}");
    assert_eq!(rb["summary"]["cascaded"]["app_install"], 2, "{rb}");
    let (s, v) = app.sign(rb_id, "carla", "implementer", &rfp, Some(4)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    app.execute(rb_id, &rfp).await;
    app.wait_execution(rb_id, &["completed"]).await;
    for e in [site(1), site(5), inst(1), inst(2)] {
        let e = app.entity(&e).await;
        assert_eq!(e["state"], "active", "{e}");
        assert_eq!(e["version"], 3, "{e}");
    }
}

async fn purge_is_refused_within_retention(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1), inst(3)]}))
        .await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;

    // Still restorable: refused at resolution, with the date; an active one is not deleted.
    let v = app
        .create("ana", "purge_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{v}");
    assert_eq!(errors[0]["line"], 1);
    assert_eq!(errors[0]["code"], "within_retention");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("may be purged after"),
        "{v}"
    );
    assert_eq!(errors[1]["line"], 2);
    assert_eq!(errors[1]["code"], "not_deleted");

    // Once the retention period has passed (moved back here), the purge resolves and runs.
    let mut conn = app.conn();
    diesel::update(entities::table.filter(entities::id.eq(inst(1))))
        .set(entities::purge_after.eq(Some(
            chrono::Utc::now().naive_utc() - chrono::Duration::days(1),
        )))
        .execute(&mut conn)
        .unwrap();
    drop(conn);
    let (pid, pfp) = app.approved("purge_app", json!({"ids": [inst(1)]})).await;
    app.execute(pid, &pfp).await;
    app.wait_execution(pid, &["completed"]).await;
    let e = app.entity(&inst(1)).await;
    assert_eq!(e["state"], "purged", "{e}");
    assert_eq!(e["attrs"], json!({}));
    assert_eq!(e["versions"][0]["change"], format!("CHG-{pid}"));
    assert_eq!(e["versions"][0]["before"]["state"], "deleted");
    // A purged entity cannot be restored, and says so.
    let v = app
        .create("ana", "restore_app", json!({"ids": [inst(1)]}))
        .await;
    assert_eq!(v["errors"][0]["code"], "purged", "{v}");
    // inst(3) is still restorable.
    assert_eq!(app.entity(&inst(3)).await["state"], "deleted");
}

async fn run(app: &TestApp, op: &str, targets: serde_json::Value) -> i64 {
    let (id, fp) = app.approved(op, targets).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    id
}

async fn restores_undo_several_changes_together(app: TestApp) {
    app.load_fixture().await;
    let a = run(&app, "uninstall_app", json!({"ids": [inst(1), inst(3)]})).await;
    let before_b = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "bump", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(5)]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let b = v["id"].as_i64().unwrap();
    let (s, v) = app
        .post(&format!("/api/v1/changes/{b}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let bfp2 = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(b, &bfp2).await;
    app.execute(b, &bfp2).await;
    app.wait_execution(b, &["completed"]).await;
    assert_eq!(app.entity(&inst(5)).await["attrs"]["version"], "2.0.0");
    let c = run(&app, "decommission_site", json!({"ids": [site(2)]})).await;
    assert_eq!(app.entity(&inst(4)).await["state"], "deleted");

    // Refusals: nothing to restore, no point, a change that never ran, bad IDs.
    let r = "/api/v1/restores";
    let (s, v) = app
        .post(r, "ana", json!({"requesting_team": "app-owners"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "empty_restore");
    let (s, v) = app
        .post(
            r,
            "ana",
            json!({"requesting_team": "app-owners", "entities": [inst(1)]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "no_point");
    let draft = app
        .create("ana", "uninstall_app", json!({"ids": [inst(2)]}))
        .await;
    let (s, v) = app
        .post(
            r,
            "ana",
            json!({"requesting_team": "app-owners", "changes": [draft["number"]]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "not_executed");
    let (s, v) = app
        .post(r, "ana", json!({"requesting_team": "app-owners", "operation": "restore_app",
            "entities": ["0b1c2d3e-0000-4000-8000-0000000000ff", site(1), inst(1)], "before_change": a}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_restore");
    let errors = &v["error"]["details"]["errors"];
    assert_eq!(errors[0]["line"], 1, "{v}");
    assert_eq!(errors[0]["code"], "not_found");
    assert_eq!(errors[1]["line"], 2);
    assert_eq!(errors[1]["code"], "wrong_kind");
    assert_eq!(errors[1]["actual_kind"], "site");
    // Not in the team it asks for.
    let (s, v) = app
        .post(
            r,
            "carla",
            json!({"requesting_team": "app-owners", "changes": [a]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");

    // Everything A and C touched, back as before them: sites and installations together,
    // under the restore operation that covers both kinds.
    let (s, v) = app
        .post(
            r,
            "ana",
            json!({"requesting_team": "app-owners", "changes": [format!("CHG-{a}"), c]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["operation"]["name"], "restore_site", "{v}");
    assert_eq!(v["state"], "awaiting_signoff");
    assert_eq!(v["summary"]["targets"], 4, "{v}");
    let rid = v["id"].as_i64().unwrap();
    let rfp = v["fingerprint"].as_str().unwrap().to_string();
    let mut ids: Vec<String> = targets_of(&app, rid)
        .await
        .into_iter()
        .map(|t| t.1)
        .collect();
    ids.sort();
    let mut want = vec![inst(1), inst(3), inst(4), site(2)];
    want.sort();
    assert_eq!(ids, want);
    // Its targets are fixed.
    let (s, v) = app
        .patch(
            &format!("/api/v1/changes/{rid}"),
            "ana",
            json!({"targets": {"ids": [inst(2)]}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "restore_fixed");
    app.approve(rid, &rfp).await;
    let (s, v) = app.execute(rid, &rfp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(rid, &["completed"]).await;
    assert_eq!(v["done"], 4, "{v}");
    for e in [inst(1), inst(3), inst(4), site(2)] {
        let e = app.entity(&e).await;
        assert_eq!(e["state"], "active", "{e}");
        assert_eq!(e["versions"][0]["change"], format!("CHG-{rid}"));
    }
    // B is untouched by that restore...
    assert_eq!(app.entity(&inst(5)).await["attrs"]["version"], "2.0.0");
    // ...and a restore to a time before B brings its old value back; inst(2), unchanged
    // since then, is left out with a warning.
    let (s, v) = app
        .post(r, "ana", json!({"requesting_team": "app-owners", "entities": [inst(5), inst(2)], "at": before_b}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["operation"]["name"], "restore_app", "{v}");
    assert_eq!(v["summary"]["targets"], 1, "{v}");
    assert!(
        v["summary"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("already as they were"),
        "{v}"
    );
    let tid = v["id"].as_i64().unwrap();
    let tfp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(tid, &tfp).await;
    app.execute(tid, &tfp).await;
    app.wait_execution(tid, &["completed"]).await;
    let e = app.entity(&inst(5)).await;
    assert_eq!(e["attrs"]["version"], "1.0.0", "{e}");
    assert_eq!(e["state"], "active");
}

both_backends!(
    cascade_lists_signs_and_rolls_back_descendants,
    purge_is_refused_within_retention,
    restores_undo_several_changes_together,
);
