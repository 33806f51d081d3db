use countersign::db::schema::{entity_versions, imports};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{fixture_lines, inst, site, TestApp, ORG1, ORG2};

async fn import_validates_every_line_and_writes_nothing_on_error(app: TestApp) {
    let mut lines = fixture_lines();
    lines.insert(3, r#"{"kind":"galaxy","id":"g-1"}"#.into()); // line 4
    lines.push(json!({"kind": "site", "id": "not-a-uuid", "parent": ORG1}).to_string());
    lines.push(
        json!({"kind": "app_install", "id": inst(99), "parent": ORG1, "attrs": {"app": "x"}})
            .to_string(),
    );
    lines.push(json!({"kind": "app_install", "id": site(1), "parent": site(2)}).to_string());
    lines.push(json!({"kind": "site", "id": site(77), "parent": "org-0000beef"}).to_string());
    lines.push(json!({"kind": "app_install", "id": inst(98), "parent": site(1), "attrs": {"colour": "red"}}).to_string());
    lines.push("{oops".into());
    let (s, v) = app.import("carla", &lines, false).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_lines");
    let d = &v["error"]["details"];
    assert_eq!(d["committed"], false);
    assert_eq!(d["rejected"], 7);
    let errs = d["errors"].as_array().unwrap();
    let by_code = |c: &str| {
        errs.iter()
            .find(|e| e["code"] == c)
            .unwrap_or_else(|| panic!("no {c} in {errs:?}"))
            .clone()
    };
    assert_eq!(by_code("unknown_kind")["line"], 4);
    assert!(by_code("pattern_mismatch")["message"]
        .as_str()
        .unwrap()
        .contains("is not a valid Cloud site (site) ID"));
    assert!(by_code("wrong_parent_kind")["message"].as_str().unwrap().contains("is a Customer organisation (org), but the parent of an App installation (app_install) must be a Cloud site (site)"), "{errs:?}");
    assert!(
        by_code("id_taken")["message"]
            .as_str()
            .unwrap()
            .contains("is already a Cloud site (site)"),
        "{errs:?}"
    );
    assert!(by_code("parent_not_found")["message"]
        .as_str()
        .unwrap()
        .contains("org-0000beef"));
    assert!(by_code("unknown_attribute")["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
    assert_eq!(by_code("invalid_json")["line"], lines.len());
    // Nothing was written.
    let (s, _) = app.get(&format!("/api/v1/inventory/{ORG1}"), "ana").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // With ?partial=true only the good lines are written.
    let (s, v) = app.import("carla", &lines, true).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["committed"], true);
    assert_eq!(v["inserted"], 15);
    assert_eq!(v["rejected"], 7);
    let (s, _) = app.get(&format!("/api/v1/inventory/{ORG1}"), "ana").await;
    assert_eq!(s, StatusCode::OK);
}

async fn import_upserts_and_never_deletes(app: TestApp) {
    app.load_fixture().await;
    // Re-import: all unchanged.
    let (s, v) = app.import("carla", &fixture_lines(), false).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["inserted"].as_u64(), v["unchanged"].as_u64()),
        (Some(0), Some(15))
    );
    // A smaller file that renames one site: the rest stays.
    let line =
        json!({"kind": "site", "id": site(1), "parent": ORG1, "name": "renamed.example.net"})
            .to_string();
    let (s, v) = app.import("carla", &[line], false).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["updated"], 1);
    let (_, e) = app
        .get(&format!("/api/v1/inventory/{}", site(1)), "ana")
        .await;
    assert_eq!(e["name"], "renamed.example.net");
    assert_eq!(e["version"], 2);
    let (s, _) = app
        .get(&format!("/api/v1/inventory/{}", site(2)), "ana")
        .await;
    assert_eq!(s, StatusCode::OK);
}

async fn only_platform_teams_and_admins_import(app: TestApp) {
    let (s, v) = app.import("ana", &fixture_lines(), false).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = app.import("olga", &fixture_lines(), false).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.import("root", &fixture_lines(), false).await;
    assert_eq!(s, StatusCode::OK);
}

async fn entity_detail_and_list(app: TestApp) {
    app.load_fixture().await;
    let (s, v) = app
        .get(&format!("/api/v1/inventory/{}", inst(3)), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "app_install");
    assert_eq!(v["attrs"]["app"], "insight");
    assert_eq!(v["ancestry"][0]["id"], ORG1);
    assert_eq!(v["ancestry"][1]["id"], site(2));
    let (_, v) = app.get(&format!("/api/v1/inventory/{ORG1}"), "ana").await;
    assert_eq!(v["children"][0]["kind"], "site");
    assert_eq!(v["children"][0]["count"], 3);

    let (s, v) = app
        .get(&format!("/api/v1/inventory?kind=site&parent={ORG2}"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["entities"].as_array().unwrap().len(), 2);
    let (_, v) = app.get("/api/v1/inventory?q=Acme", "ana").await;
    assert_eq!(v["entities"][0]["id"], ORG1);
    let (_, v) = app
        .get("/api/v1/inventory?kind=app_install&limit=3", "ana")
        .await;
    let after = v["next_after"].as_str().unwrap().to_string();
    let (_, v2) = app
        .get(
            &format!("/api/v1/inventory?kind=app_install&limit=10&after={after}"),
            "ana",
        )
        .await;
    assert_eq!(
        v["entities"].as_array().unwrap().len() + v2["entities"].as_array().unwrap().len(),
        8
    );
    let (s, v) = app.get("/api/v1/inventory?kind=planet", "ana").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "unknown_kind");
}

async fn large_import_streams(app: TestApp) {
    // 30k lines through the HTTP streaming path, parents first.
    let mut lines = Vec::with_capacity(30_001);
    lines.push(json!({"kind": "org", "id": ORG1, "name": "Acme"}).to_string());
    for i in 0..30_000u32 {
        lines.push(
            json!({"kind": "site", "id": site(1000 + i), "parent": ORG1, "name": format!("s{i}")})
                .to_string(),
        );
    }
    let (s, v) = app.import("carla", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["inserted"], 30_001);
    assert_eq!(v["lines"], 30_001);
}

/// `lines` with each edit's fields replaced in the line of its entity.
fn edited(lines: &[String], edits: &[(String, Value)]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            for (id, patch) in edits {
                if v["id"] == *id {
                    for (k, val) in patch.as_object().unwrap() {
                        v[k] = val.clone();
                    }
                }
            }
            v.to_string()
        })
        .collect()
}

/// The version row of `e` (entity JSON) written by import `import`.
fn import_version(e: &Value, import: i64) -> Value {
    e["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["import"] == import)
        .unwrap_or_else(|| panic!("no version of import {import} in {e}"))
        .clone()
}

fn field<'a>(fields: &'a Value, name: &str) -> &'a Value {
    fields
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {fields}"))
}

fn trail_counts(app: &TestApp) -> (i64, i64) {
    let mut conn = app.conn();
    let imports: i64 = imports::table.count().get_result(&mut conn).unwrap();
    let versions: i64 = entity_versions::table
        .count()
        .get_result(&mut conn)
        .unwrap();
    (imports, versions)
}

async fn reimport_leaves_a_trail_of_what_it_changed(app: TestApp) {
    let (s, first) = app.import("carla", &fixture_lines(), false).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let first_id = first["import"]
        .as_i64()
        .expect("the report names the import");

    // Dev re-imports: an org renamed with another plan, a site renamed, an installation
    // moved to another site, another one with a new version and a site with a new tier.
    let lines = edited(
        &fixture_lines(),
        &[
            (
                ORG1.to_string(),
                json!({"name": "Acme Corporation", "attrs": {"plan": "standard"}}),
            ),
            (site(1), json!({"name": "site1.example.org"})),
            (inst(2), json!({"parent": site(2)})),
            (
                inst(3),
                json!({"attrs": {"app": "insight", "version": "1.1.0"}}),
            ),
            (site(3), json!({"attrs": {"tier": "gold"}})),
        ],
    );
    let (s, r) = app.import("dev", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["updated"].as_u64(), r["unchanged"].as_u64()),
        (Some(5), Some(10)),
        "{r}"
    );
    let id = r["import"].as_i64().unwrap();
    assert_ne!(id, first_id);
    let dev = TestApp::email("dev");

    // Each changed entity has a version row: before/after, the importer, the import.
    let e = app.entity(ORG1).await;
    assert_eq!(e["version"], 2);
    let v = import_version(&e, id);
    assert_eq!(v["version"], 2);
    assert_eq!(v["by"], dev);
    assert_eq!(v["change"], Value::Null);
    assert_eq!(v["before"]["name"], "Acme Corp");
    assert_eq!(v["after"]["name"], "Acme Corporation");
    assert_eq!(v["before"]["attrs"]["plan"], "legacy");
    assert_eq!(v["after"]["attrs"]["plan"], "standard");
    assert_eq!(v["fields"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(field(&v["fields"], "attrs.plan")["before"], "legacy");
    let v = import_version(&app.entity(&inst(2)).await, id);
    assert_eq!(v["before"]["parent"], site(1));
    assert_eq!(v["after"]["parent"], site(2));
    assert_eq!(
        v["fields"],
        json!([{"field": "parent", "before": site(1), "after": site(2)}])
    );
    let v = import_version(&app.entity(&inst(3)).await, id);
    assert_eq!(
        v["fields"],
        json!([{"field": "attrs.version", "before": "1.0.0", "after": "1.1.0"}])
    );
    let v = import_version(&app.entity(&site(3)).await, id);
    assert_eq!(
        v["fields"],
        json!([{"field": "attrs.tier", "before": null, "after": "gold"}])
    );
    assert_eq!(v["before"]["state"], "active");
    assert_eq!(v["after"]["state"], "active");
    // Unchanged entities have no version.
    for e in [ORG2.to_string(), site(2), inst(1), inst(4)] {
        let e = app.entity(&e).await;
        assert_eq!(e["versions"], json!([]), "{e}");
        assert_eq!(e["version"], 1);
    }

    // The audit event lists the changed IDs, their digest and the import.
    let mut changed = vec![ORG1.to_string(), site(1), site(3), inst(2), inst(3)];
    changed.sort();
    let digest = hex::encode(Sha256::digest(
        changed.iter().map(|c| format!("{c}\n")).collect::<String>(),
    ));
    let ev = {
        let mut conn = app.conn();
        countersign::db::audit::recent(&mut conn, 1)
            .unwrap()
            .remove(0)
    };
    assert_eq!(ev.action, "inventory_imported");
    assert_eq!(ev.actor, dev);
    let d: Value = serde_json::from_str(&ev.detail).unwrap();
    assert_eq!(d["import"], id);
    assert_eq!(d["changed"], 5);
    assert_eq!(d["changed_ids"], json!(changed), "{d}");
    assert_eq!(d["changed_ids_digest"], digest);

    // The import and its diff, paged.
    let (s, imp) = app.get(&format!("/api/v1/imports/{id}"), "carla").await;
    assert_eq!(s, StatusCode::OK, "{imp}");
    assert_eq!(imp["id"], id);
    assert_eq!(imp["importer"], dev);
    assert_eq!(imp["audit_event"], ev.id);
    assert_eq!(
        (
            imp["lines"].as_i64(),
            imp["updated"].as_i64(),
            imp["unchanged"].as_i64(),
            imp["inserted"].as_i64()
        ),
        (Some(15), Some(5), Some(10), Some(0))
    );
    assert_eq!(imp["partial"], false);
    assert_eq!(imp["changed"], 5);
    assert_eq!(imp["changed_ids_digest"], digest);
    assert!(imp["finished_at"].is_string(), "{imp}");
    let diff = &imp["diff"];
    assert_eq!(diff["total"], 5);
    let listed: Vec<&str> = diff["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(listed, changed);
    let moved = diff["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entity"] == inst(2))
        .unwrap();
    assert_eq!(moved["kind"], "app_install");
    assert_eq!(moved["version"], 2);
    assert_eq!(moved["fields"][0]["field"], "parent");
    let (_, p1) = app
        .get(&format!("/api/v1/imports/{id}?limit=3"), "carla")
        .await;
    assert_eq!(p1["diff"]["entries"].as_array().unwrap().len(), 3, "{p1}");
    assert_eq!(p1["diff"]["next_offset"], 3);
    let (_, p2) = app
        .get(&format!("/api/v1/imports/{id}?offset=3&limit=3"), "root")
        .await;
    let rest: Vec<&str> = p2["diff"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entity"].as_str().unwrap())
        .collect();
    assert_eq!(
        rest,
        changed[3..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(p2["diff"].get("next_offset").is_none(), "{p2}");
    // The first import inserted everything and changed nothing.
    let (_, f) = app
        .get(&format!("/api/v1/imports/{first_id}"), "carla")
        .await;
    assert_eq!(
        (
            f["inserted"].as_i64(),
            f["changed"].as_i64(),
            f["diff"]["total"].as_i64()
        ),
        (Some(15), Some(0), Some(0)),
        "{f}"
    );
    assert_eq!(f["importer"], TestApp::email("carla"));
    // Unknown imports are JSON 404s; people who may not import get 403.
    for bad in ["999999", "nope"] {
        let (s, v) = app.get(&format!("/api/v1/imports/{bad}"), "carla").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    for who in ["ana", "olga"] {
        let (s, v) = app.get(&format!("/api/v1/imports/{id}"), who).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(v["error"]["code"], "forbidden");
    }
    let (s, _) = app.get(&format!("/api/v1/imports/{id}"), "nobody").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The same file again changes nothing: an import row, no version rows.
    let (imports_before, versions_before) = trail_counts(&app);
    let (s, r) = app.import("dev", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["unchanged"], 15);
    let again = r["import"].as_i64().unwrap();
    assert_eq!(trail_counts(&app), (imports_before + 1, versions_before));
    let (_, a) = app.get(&format!("/api/v1/imports/{again}"), "carla").await;
    assert_eq!(a["diff"]["total"], 0, "{a}");
    assert_eq!(a["changed_ids_digest"], hex::encode(Sha256::digest(b"")));
    // A file with one bad line writes nothing: no import row, no versions, no rename.
    let mut bad = edited(&lines, &[(site(2), json!({"name": "never.example.net"}))]);
    bad.push(r#"{"kind":"galaxy","id":"g-1"}"#.into());
    let (s, v) = app.import("dev", &bad, false).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"]["details"].get("import").is_none(), "{v}");
    assert_eq!(trail_counts(&app), (imports_before + 1, versions_before));
    assert_eq!(app.entity(&site(2)).await["name"], "site2.example.net");

    // The entity page lists the import's version: who, when, which import, what.
    let b = crate::web::sign_in(&app, "ana").await;
    let (s, html) = b.get(&format!("/inventory/{}", inst(3))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains(&format!("inventory import {id}")), "{html}");
    assert!(html.contains(dev), "{html}");
    assert!(
        html.contains("<code>attrs.version</code>: 1.0.0 → 1.1.0"),
        "{html}"
    );
    let (_, html) = b.get(&format!("/inventory/{ORG1}")).await;
    assert!(html.contains("Acme Corp → Acme Corporation"), "{html}");
}

async fn run(app: &TestApp, op: &str, targets: Value) -> (i64, String) {
    let (id, fp) = app.approved(op, targets).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    (id, fp)
}

async fn restores_after_an_import_undo_changes_not_the_import(app: TestApp) {
    app.load_fixture().await;
    // A deletes inst(1); B sets inst(5)'s version to 2.0.0.
    let (a, _) = run(&app, "uninstall_app", json!({"ids": [inst(1)]})).await;
    let before_b = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "bump", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(5)]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let b = v["id"].as_i64().unwrap();
    let (_, v) = app
        .post(&format!("/api/v1/changes/{b}/submit"), "ana", json!({}))
        .await;
    let bfp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(b, &bfp).await;
    app.execute(b, &bfp).await;
    app.wait_execution(b, &["completed"]).await;

    // Then the systems of record say: inst(1) (deleted here) is on 1.5.0 under a new name;
    // inst(5) is now "insight-ng" (still on 2.0.0); inst(7) is on 1.2.0.
    let lines = vec![
        json!({"kind": "app_install", "id": inst(1), "parent": site(1), "name": "insight (renamed)", "attrs": {"app": "insight", "version": "1.5.0"}}).to_string(),
        json!({"kind": "app_install", "id": inst(5), "parent": site(3), "name": "insight on site3", "attrs": {"app": "insight-ng", "version": "2.0.0"}}).to_string(),
        json!({"kind": "app_install", "id": inst(7), "parent": site(4), "name": "insight on site4", "attrs": {"app": "insight", "version": "1.2.0"}}).to_string(),
    ];
    let (s, r) = app.import("carla", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["updated"], 3, "{r}");
    let e1 = app.entity(&inst(1)).await;
    assert_eq!(
        e1["state"], "deleted",
        "an import does not change the state: {e1}"
    );
    assert_eq!(e1["versions"][0]["before"]["state"], "deleted");

    // Rolling A back brings inst(1) back as the import described it, not as it was
    // before A (the import is the systems of record's word, not a change to undo).
    let (s, rb) = app
        .post(&format!("/api/v1/changes/{a}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    assert_eq!(rb["summary"]["targets"], 1, "{rb}");
    let rid = rb["id"].as_i64().unwrap();
    let rfp = rb["fingerprint"].as_str().unwrap().to_string();
    app.approve(rid, &rfp).await;
    app.execute(rid, &rfp).await;
    app.wait_execution(rid, &["completed"]).await;
    let e1 = app.entity(&inst(1)).await;
    assert_eq!(e1["state"], "active", "{e1}");
    assert_eq!(e1["name"], "insight (renamed)");
    assert_eq!(
        e1["attrs"],
        json!({"app": "insight", "version": "1.5.0"}),
        "{e1}"
    );
    assert_eq!(e1["versions"][0]["change"], format!("CHG-{rid}"));
    assert_eq!(e1["versions"][0]["by"], TestApp::email("carla"));

    // A restore to a time before B: inst(5) gets B's version back and keeps the imported
    // app; inst(7), changed only by the import, is already as the changes left it.
    let (s, v) = app
        .post("/api/v1/restores", "ana", json!({"requesting_team": "app-owners", "entities": [inst(5), inst(7)], "at": before_b}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
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
    let e5 = app.entity(&inst(5)).await;
    assert_eq!(
        e5["attrs"],
        json!({"app": "insight-ng", "version": "1.0.0"}),
        "{e5}"
    );
    assert_eq!(e5["versions"][0]["change"], format!("CHG-{tid}"));
    assert_eq!(
        e5["versions"][0]["fields"],
        json!([{"field": "attrs.version", "before": "2.0.0", "after": "1.0.0"}])
    );
    let e7 = app.entity(&inst(7)).await;
    assert_eq!(e7["attrs"]["version"], "1.2.0", "{e7}");
}

both_backends!(
    reimport_leaves_a_trail_of_what_it_changed,
    restores_after_an_import_undo_changes_not_the_import,
    import_validates_every_line_and_writes_nothing_on_error,
    import_upserts_and_never_deletes,
    only_platform_teams_and_admins_import,
    entity_detail_and_list,
    large_import_streams,
);
