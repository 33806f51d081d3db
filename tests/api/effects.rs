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

both_backends!(
    cascade_lists_signs_and_rolls_back_descendants,
    purge_is_refused_within_retention,
);
