//! The difference re-signed (issue #12), on both backends: when a re-resolution changes a
//! signed list, the change view, the API, the page and the stale event show what changed
//! since the signers saw it (targets and roots added and removed, composed over several
//! re-resolutions), and a sign-off given from that view records the difference it was
//! given against the fingerprint it replaces.

use diesel::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{inst, site, TestApp, ORG2};
use crate::web::sign_in;

fn app_line(n: u32, s: u32) -> String {
    json!({"kind": "app_install", "id": inst(n), "parent": site(s), "name": format!("app {n}"), "attrs": {"app": "insight", "version": "1.0.0"}}).to_string()
}

async fn resolve(app: &TestApp, id: i64) -> Value {
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/resolve"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["resolution_outcome"].clone()
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect()
}

async fn signers_resign_from_the_difference(app: TestApp) {
    app.load_fixture().await;
    // Site 1 holds apps 1 and 2; ben signs that list.
    let sel = json!({"within": {"kind": "site", "ids": [site(1)]}});
    let (id, fp1) = app.submitted("ana", "uninstall_app", sel).await;
    let (s, v) = app.sign(id, "ben", "requester", &fp1, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(app.change(id).await["difference"].is_null());
    // Re-resolving an unchanged inventory keeps the list, its fingerprint and the sign-off.
    let out = resolve(&app, id).await;
    assert_eq!(out["fingerprint_changed"], false, "{out}");
    let c = app.change(id).await;
    assert_eq!(c["signoffs"][0]["counts"], true, "{c}");
    assert!(c["difference"].is_null());

    // The inventory moves: app 2 goes, app 50 arrives on site 1.
    {
        let mut conn = app.conn();
        diesel::sql_query(format!(
            "UPDATE entities SET state = 'deleted' WHERE id = '{}'",
            inst(2)
        ))
        .execute(&mut *conn)
        .unwrap();
    }
    let (s, v) = app.import("carla", &[app_line(50, 1)], false).await;
    assert!(s.is_success(), "{v}");
    let out = resolve(&app, id).await;
    assert_eq!(
        (&out["added"], &out["removed"]),
        (&json!(1), &json!(1)),
        "{out}"
    );
    let fp2 = out["fingerprint"].as_str().unwrap().to_string();
    let c = app.change(id).await;
    let d = &c["difference"];
    assert_eq!(d["previous_fingerprint"], fp1.as_str(), "{c}");
    assert_eq!(d["fingerprint"], fp2.as_str());
    assert_eq!((&d["added"], &d["removed"]), (&json!(1), &json!(1)));
    assert_eq!(ids(&d["added_sample"]), [inst(50)]);
    assert_eq!(ids(&d["removed_sample"]), [inst(2)]);
    assert_eq!(d["roots_added"], 0);

    // Again before anyone re-signs: app 51 arrives on site 1 and app 2 comes back.
    {
        let mut conn = app.conn();
        diesel::sql_query(format!(
            "UPDATE entities SET state = 'active' WHERE id = '{}'",
            inst(2)
        ))
        .execute(&mut *conn)
        .unwrap();
    }
    let (s, v) = app.import("carla", &[app_line(51, 1)], false).await;
    assert!(s.is_success(), "{v}");
    let out = resolve(&app, id).await;
    let fp3 = out["fingerprint"].as_str().unwrap().to_string();
    // Against what ben saw (fp1), not the list in between: app 2 is back, so only 50 and
    // 51 are new.
    let c = app.change(id).await;
    let d = &c["difference"];
    assert_eq!(d["previous_fingerprint"], fp1.as_str(), "{c}");
    assert_eq!(d["fingerprint"], fp3.as_str());
    assert_eq!((&d["added"], &d["removed"]), (&json!(2), &json!(0)), "{d}");
    assert_eq!(ids(&d["added_sample"]), [inst(50), inst(51)]);
    let (s, page) = app
        .get(&format!("/api/v1/changes/{id}/difference?limit=1"), "carla")
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(page["targets"][0]["change"], "added");
    assert_eq!(page["next_offset"], 1);

    // A sign-off from a stale view is refused; from the current one it records it.
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/signoffs"),
            "ben",
            json!({"side": "requester", "fingerprint": fp3, "replaces": fp2}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "stale_difference", "{v}");
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/signoffs"),
            "ben",
            json!({"side": "requester", "fingerprint": fp3, "replaces": fp1, "comment": "the two new ones are fine"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let c = app.change(id).await;
    let signed = c["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["fingerprint"] == fp3.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        signed["difference"],
        json!({"previous_fingerprint": fp1, "added": 2, "removed": 0, "roots_added": 0, "roots_removed": 0})
    );
    let (_, ev) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    let last_signed = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["action"] == "signed")
        .unwrap()
        .clone();
    assert_eq!(
        last_signed["detail"]["difference"]["added"], 2,
        "{last_signed}"
    );
    // The difference stays until the list changes again: carla signs it from the page.
    let b = sign_in(&app, "carla").await;
    let (_, html) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(
        html.contains(r#"<div class="difference" id="difference">"#),
        "{html}"
    );
    assert!(
        html.contains("<strong>2 targets added, 0 removed.</strong>"),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            r#"<input type="hidden" name="replaces" value="{fp1}">"#
        )),
        "{html}"
    );
    assert!(html.contains("(re-signed from the difference: 2 targets added, 0 removed since"));
    let (s, csv) = b.get(&format!("/changes/CHG-{id}/difference.csv")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(
        csv.starts_with("change,kind,id,scope_path,name\nadded,\"app_install\","),
        "{csv}"
    );
}

async fn roots_added_and_removed_are_named(app: TestApp) {
    app.load_fixture().await;
    // Sites 1 (org 1: apps 1, 2) and 4 (org 2: apps 7, 8), a new version for each (not
    // destructive, so it may reach every customer); ben signs.
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            json!({"title": "t", "rationale": "r", "requesting_team": "app-owners",
                   "operation": "set_app_version", "params": {"version": "2.0.0"}, "submit": true,
                   "targets": {"within": {"kind": "site", "ids": [site(1), site(4)]}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let fp1 = v["fingerprint"].as_str().unwrap().to_string();
    let (s, v) = app.sign(id, "ben", "requester", &fp1, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    // Org 2's apps leave the inventory: the list no longer touches that customer.
    {
        let mut conn = app.conn();
        diesel::sql_query(format!(
            "UPDATE entities SET state = 'deleted' WHERE id IN ('{}', '{}')",
            inst(7),
            inst(8)
        ))
        .execute(&mut *conn)
        .unwrap();
    }
    let out = resolve(&app, id).await;
    assert_eq!(out["roots_removed"], json!([ORG2]), "{out}");
    let d = app.change(id).await["difference"].clone();
    assert_eq!(d["roots_removed_ids"], json!([ORG2]), "{d}");
    assert_eq!((&d["removed"], &d["roots_removed"]), (&json!(2), &json!(1)));
    assert_eq!(
        d["text"],
        format!(
            "since {} was signed: 0 targets added, 2 removed; 0 roots added, 1 removed",
            countersign::domain::resolution::short_fingerprint(&fp1)
        )
    );
    // The stale event (and so its mail) names the customer that left.
    let (_, ev) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    let stale = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "signoffs_stale")
        .unwrap()
        .clone();
    assert_eq!(stale["detail"]["roots_removed"], json!([ORG2]), "{stale}");
    // Back to the signed list: no difference left to show.
    {
        let mut conn = app.conn();
        diesel::sql_query(format!(
            "UPDATE entities SET state = 'active' WHERE id IN ('{}', '{}')",
            inst(7),
            inst(8)
        ))
        .execute(&mut *conn)
        .unwrap();
    }
    let out = resolve(&app, id).await;
    assert_eq!(out["fingerprint"], fp1.as_str());
    assert!(app.change(id).await["difference"].is_null());
    let (s, _) = app
        .get(&format!("/api/v1/changes/{id}/difference"), "ana")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

both_backends!(
    signers_resign_from_the_difference,
    roots_added_and_removed_are_named
);
