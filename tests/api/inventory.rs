use reqwest::StatusCode;
use serde_json::json;

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

both_backends!(
    import_validates_every_line_and_writes_nothing_on_error,
    import_upserts_and_never_deletes,
    only_platform_teams_and_admins_import,
    entity_detail_and_list,
    large_import_streams,
);
