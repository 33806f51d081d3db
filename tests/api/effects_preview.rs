//! Every effect previewed per target (issue #12): the API's target list (`effect`), the
//! change page's and the new-change preview's "What happens" column and the targets CSV
//! say what the executor does to each target — the purge date of a soft delete, the state
//! a restore returns to (a rollback as the restore it runs), the values a set_attributes
//! change writes, the parent a cascade took a child with, a purge, a webhook's host — and
//! what an execution did once it ran. Plus: the sign form's typed count is described by
//! the undo plan.

use chrono::{Duration, Utc};
use diesel::RunQueryDsl;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{inst, site, spawn_app_with, Backend, TestApp};
use crate::web::sign_in;

/// The targets JSON of change `id` (the first page of `limit`).
async fn targets(app: &TestApp, id: i64, query: &str) -> Value {
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/targets{query}"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

/// The effect of target `entity` in a targets JSON.
fn effect_of<'v>(list: &'v Value, entity: &str) -> &'v Value {
    list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == entity)
        .map(|t| &t["effect"])
        .unwrap_or_else(|| panic!("{entity} is not in {list}"))
}

/// The dates a soft delete run now may be purged after (today's or, across midnight,
/// tomorrow's + 30 days).
fn purge_dates() -> [String; 2] {
    let d = |n| {
        (Utc::now() + Duration::days(n))
            .format("%Y-%m-%d")
            .to_string()
    };
    [d(30), d(31)]
}

fn purge_text(text: &str) -> bool {
    purge_dates()
        .iter()
        .any(|d| text == format!("soft-deleted; purged after {d} unless restored"))
}

async fn csv_of(app: &TestApp, id: i64) -> String {
    let b = sign_in(app, "ana").await;
    let (s, csv) = b.get(&format!("/changes/CHG-{id}/targets.csv")).await;
    assert_eq!(s, StatusCode::OK);
    csv
}

async fn page_of(app: &TestApp, id: i64, query: &str) -> String {
    let b = sign_in(app, "ana").await;
    let (s, page) = b.get(&format!("/changes/CHG-{id}{query}")).await;
    assert_eq!(s, StatusCode::OK);
    page
}

async fn a_soft_delete_shows_each_purge_date_and_what_it_did(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    let list = targets(&app, id, "").await;
    for n in [1, 2] {
        let e = effect_of(&list, &inst(n));
        assert_eq!(e["type"], "soft_delete", "{e}");
        assert_eq!(e["outcome"], "applies", "{e}");
        assert!(purge_text(e["text"].as_str().unwrap()), "{e}");
        let date = &e["purge_after"].as_str().unwrap()[..10];
        assert!(purge_dates().iter().any(|d| d == date), "{e}");
        assert!(e.get("cascaded_from").is_none(), "{e}");
    }
    let page = page_of(&app, id, "").await;
    assert!(
        page.contains(r#"<th scope="col">What happens</th>"#),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            r#"<td class="effect applies">{}</td>"#,
            effect_of(&list, &inst(1))["text"].as_str().unwrap()
        )),
        "{page}"
    );
    let csv = csv_of(&app, id).await;
    assert!(
        csv.starts_with("kind,id,scope_path,name,effect,outcome,what_happens,cascaded_from\n"),
        "{csv}"
    );
    assert!(
        csv.contains(r#","soft_delete","applies","soft-deleted; purged after "#),
        "{csv}"
    );

    // Executed: what it did, with the date the inventory records.
    app.approve(id, &fp).await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    let list = targets(&app, id, "").await;
    let e = effect_of(&list, &inst(1));
    assert_eq!(e["outcome"], "done", "{e}");
    let recorded = app.entity(&inst(1)).await["purge_after"].clone();
    let date = &recorded.as_str().unwrap()[..10];
    assert_eq!(&e["purge_after"].as_str().unwrap()[..10], date, "{e}");
    assert_eq!(
        e["text"],
        format!("soft-deleted; purged after {date} unless restored")
    );
    let page = page_of(&app, id, "").await;
    assert!(
        page.contains(r#"<td class="effect done"><span class="badge completed">done</span> soft-deleted; purged after "#),
        "{page}"
    );
    // A restore of it names the change that deleted it.
    let (again, _) = app
        .submitted("ana", "restore_app", json!({"ids": [inst(1)]}))
        .await;
    let e = effect_of(&targets(&app, again, "").await, &inst(1)).clone();
    assert_eq!(e["type"], "restore", "{e}");
    assert_eq!(e["to_state"], "active", "{e}");
    assert_eq!(e["deleted_by"], format!("CHG-{id}"), "{e}");
    assert_eq!(
        e["text"],
        format!("restored to active; deleted by CHG-{id}")
    );
}

async fn set_attributes_shows_each_value_now_and_after(app: TestApp) {
    app.load_fixture().await;
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "bump", "rationale": "r", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(2), inst(4)]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let list = targets(&app, id, "").await;
    let e = effect_of(&list, &inst(2));
    assert_eq!(e["type"], "set_attributes", "{e}");
    assert_eq!(
        e["attributes"],
        json!([{"key": "version", "now": "1.0.0", "after": "2.0.0"}])
    );
    assert_eq!(e["text"], "version: 1.0.0 → 2.0.0");
    let page = page_of(&app, id, "").await;
    assert!(
        page.contains(r#"<td class="effect applies">version: 1.0.0 → 2.0.0</td>"#),
        "{page}"
    );
    let csv = csv_of(&app, id).await;
    assert!(
        csv.contains(r#","set_attributes","applies","version: 1.0.0 → 2.0.0","","1.0.0","2.0.0""#),
        "{csv}"
    );
    let (_, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(id, &fp).await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    // Done: the values it wrote, from its version rows (not "2.0.0 → 2.0.0").
    let e = effect_of(&targets(&app, id, "").await, &inst(2)).clone();
    assert_eq!(
        (e["outcome"].as_str(), e["text"].as_str()),
        (Some("done"), Some("version: 1.0.0 → 2.0.0")),
        "{e}"
    );
    // Its rollback puts the previous value back: shown as what it runs.
    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb = rb["id"].as_i64().unwrap();
    let e = effect_of(&targets(&app, rb, "").await, &inst(4)).clone();
    assert_eq!(e["type"], "set_attributes", "{e}");
    assert_eq!(e["outcome"], "applies", "{e}");
    assert_eq!(e["text"], "version: 2.0.0 → 1.0.0");
}

async fn a_rollback_of_a_delete_is_shown_as_the_restore_it_runs(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb = rb["id"].as_i64().unwrap();
    let e = effect_of(&targets(&app, rb, "").await, &inst(3)).clone();
    assert_eq!(e["type"], "restore", "{e}");
    assert_eq!(e["to_state"], "active", "{e}");
    let text = format!("restored to active; deleted by CHG-{id}");
    assert_eq!(e["text"], text);
    let page = page_of(&app, rb, "").await;
    assert!(
        page.contains(&format!(r#"<td class="effect applies">{text}</td>"#)),
        "{page}"
    );
    assert!(!page.contains("soft-deleted; purged after"), "{page}");
    let csv = csv_of(&app, rb).await;
    assert!(
        csv.contains(&format!(r#","restore","applies","{text}","#)),
        "{csv}"
    );
}

async fn a_bulk_restore_shows_what_each_target_goes_back_to(app: TestApp) {
    app.load_fixture().await;
    let (a, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    app.execute(a, &fp).await;
    app.wait_execution(a, &["completed"]).await;
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "bump", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(5)]}, "submit": true})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let b = v["id"].as_i64().unwrap();
    let bfp = v["fingerprint"].as_str().unwrap().to_string();
    app.approve(b, &bfp).await;
    app.execute(b, &bfp).await;
    app.wait_execution(b, &["completed"]).await;
    let (s, v) = app
        .post(
            "/api/v1/restores",
            "ana",
            json!({"requesting_team": "app-owners", "changes": [a, b]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let rid = v["id"].as_i64().unwrap();
    let list = targets(&app, rid, "").await;
    let deleted = effect_of(&list, &inst(1));
    assert_eq!(deleted["type"], "restore", "{deleted}");
    assert_eq!(deleted["to_state"], "active", "{deleted}");
    assert_eq!(
        deleted["text"],
        format!("restored to active; deleted by CHG-{a}")
    );
    let changed = effect_of(&list, &inst(5));
    assert_eq!(
        changed["text"], "restored to active; version: 2.0.0 → 1.0.0",
        "{changed}"
    );
    let page = page_of(&app, rid, "").await;
    assert!(
        page.contains(
            "<td class=\"effect applies\">restored to active; version: 2.0.0 → 1.0.0</td>"
        ),
        "{page}"
    );
}

async fn a_cascade_names_the_parent_that_took_each_child(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "decommission_site", json!({"ids": [site(1)]}))
        .await;
    let list = targets(&app, id, "").await;
    assert_eq!(list["total"], 3, "{list}");
    let s1 = effect_of(&list, &site(1));
    assert!(purge_text(s1["text"].as_str().unwrap()), "{s1}");
    assert!(s1.get("cascaded_from").is_none(), "{s1}");
    let with = format!("with its parent cloud site {} (cascade)", site(1));
    for n in [1, 2] {
        let e = effect_of(&list, &inst(n));
        assert_eq!(e["type"], "soft_delete", "{e}");
        assert_eq!(
            e["cascaded_from"],
            json!({"kind": "site", "id": site(1), "label": "Cloud site", "parent": true})
        );
        let text = e["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("soft-deleted {with}; purged after ")),
            "{text}"
        );
    }
    let page = page_of(&app, id, "").await;
    assert!(
        page.contains(&format!("soft-deleted {with}; purged after")),
        "{page}"
    );
    let csv = csv_of(&app, id).await;
    assert!(
        csv.contains(&format!(r#"unless restored","site {}""#, site(1))),
        "{csv}"
    );
    // Its rollback restores the children with their parent.
    app.approve(id, &fp).await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    let (s, rb) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{rb}");
    let rb = rb["id"].as_i64().unwrap();
    let e = effect_of(&targets(&app, rb, "").await, &inst(2)).clone();
    assert_eq!(e["type"], "restore", "{e}");
    assert_eq!(
        e["text"],
        format!("restored to active {with}; deleted by CHG-{id}")
    );
}

async fn a_purge_is_shown_as_permanent(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(5)]}))
        .await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    let mut conn = app.conn();
    diesel::sql_query(
        "UPDATE entities SET purge_after = '2000-01-01 00:00:00' WHERE state = 'deleted'",
    )
    .execute(&mut *conn)
    .unwrap();
    drop(conn);
    let (pid, _) = app
        .submitted("ana", "purge_app", json!({"ids": [inst(5)]}))
        .await;
    let e = effect_of(&targets(&app, pid, "").await, &inst(5)).clone();
    assert_eq!(e["type"], "purge", "{e}");
    assert_eq!(e["outcome"], "applies", "{e}");
    assert_eq!(e["text"], "purged permanently; retention ended 2000-01-01");
    let page = page_of(&app, pid, "").await;
    assert!(
        page.contains(
            r#"<td class="effect applies">purged permanently; retention ended 2000-01-01</td>"#
        ),
        "{page}"
    );
}

async fn webhook_targets_name_the_endpoint_host(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let schema = format!(
        "{}\n\n[operations.deprovision_app]\nlabel = \"Deprovision at the app vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nsignoffs = {{ requester = 1, implementer = 1 }}\nendpoint = \"https://hooks.example.net/deprovision\"\nsecret_env = \"CS_TEST_HOOK_SECRET\"\n",
        countersign::domain::schema::EXAMPLE_SCHEMA
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, |c| c.schema_path = Some(path.clone())).await;
    app.load_fixture().await;
    let (id, _) = app
        .submitted("ana", "deprovision_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    let e = effect_of(&targets(&app, id, "").await, &inst(2)).clone();
    assert_eq!(e["type"], "webhook", "{e}");
    assert_eq!(e["endpoint_host"], "hooks.example.net", "{e}");
    let text = "sent to the external executor at hooks.example.net";
    assert_eq!(e["text"], text);
    let page = page_of(&app, id, "").await;
    assert!(
        page.contains(&format!(r#"<td class="effect applies">{text}</td>"#)),
        "{page}"
    );
}

async fn a_long_list_pages_with_every_effect(app: TestApp) {
    app.load_fixture().await;
    // 230 more app installations on the empty site 5.
    let lines: Vec<String> = (100..330u32)
        .map(|n| {
            json!({"kind": "app_install", "id": inst(n), "parent": site(5), "name": format!("app {n}"), "attrs": {"app": "insight", "version": "1.0.0"}})
                .to_string()
        })
        .collect();
    let (s, v) = app.import("carla", &lines, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (id, _) = app
        .submitted(
            "ana",
            "uninstall_app",
            json!({"within": {"kind": "site", "ids": [site(5)]}}),
        )
        .await;
    let mut seen = std::collections::BTreeSet::new();
    let mut offset = Some(0);
    while let Some(o) = offset {
        let page = targets(&app, id, &format!("?offset={o}&limit=100")).await;
        assert_eq!(page["total"], 230, "{page}");
        for t in page["targets"].as_array().unwrap() {
            assert_eq!(t["effect"]["type"], "soft_delete", "{t}");
            assert!(purge_text(t["effect"]["text"].as_str().unwrap()), "{t}");
            seen.insert(t["id"].as_str().unwrap().to_string());
        }
        offset = page["next_offset"].as_i64();
    }
    assert_eq!(seen.len(), 230);
    // The page's last page of 50 shows each its effect.
    let page = page_of(&app, id, "?offset=200").await;
    assert_eq!(
        page.matches(r#"<td class="effect applies">soft-deleted; purged after "#)
            .count(),
        30,
        "{page}"
    );
    let csv = csv_of(&app, id).await;
    assert_eq!(csv.lines().count(), 231);
    assert_eq!(csv.matches(",\"soft_delete\",\"applies\",").count(), 230);
}

async fn the_new_change_preview_shows_what_happens(app: TestApp) {
    app.load_fixture().await;
    let b = sign_in(&app, "ana").await;
    let preview = |op: &'static str, ids: String, params: &'static str| {
        let b = &b;
        async move {
            let form = [
                ("csrf", b.csrf.as_str()),
                ("operation", op),
                ("requesting_team", "app-owners"),
                ("title", "t"),
                ("rationale", "r"),
                ("ids", ids.as_str()),
                ("params", params),
                ("action", "preview"),
            ];
            let (s, _, body) = b.post("/changes/new", &form).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            body
        }
    };
    let body = preview("uninstall_app", inst(1), "").await;
    assert!(
        body.contains(r#"<th scope="col">What happens</th>"#),
        "{body}"
    );
    assert!(
        purge_dates().iter().any(|d| body.contains(&format!(
            r#"<td class="effect applies">soft-deleted; purged after {d} unless restored</td>"#
        ))),
        "{body}"
    );
    let body = preview("set_app_version", inst(2), "version = 2.0.0").await;
    assert!(
        body.contains(r#"<td class="effect applies">version: 1.0.0 → 2.0.0</td>"#),
        "{body}"
    );
    let body = preview("decommission_site", site(2), "").await;
    assert!(
        body.contains(&format!(
            "soft-deleted with its parent cloud site {} (cascade); purged after",
            site(2)
        )),
        "{body}"
    );
    // Nothing was stored.
    let (_, list) = app.get("/api/v1/changes", "ana").await;
    assert_eq!(list["changes"].as_array().unwrap().len(), 0);
}

async fn the_sign_form_repeats_the_undo_plan_next_to_the_typed_count(app: TestApp) {
    app.load_fixture().await;
    // delete_site asks the implementer to type the count (confirm_above = 0).
    let (id, _) = app
        .submitted("ana", "delete_site", json!({"ids": [site(5)]}))
        .await;
    let c = app.change(id).await;
    let undo = c["summary"]["undo"]["text"].as_str().unwrap().to_string();
    assert!(undo.starts_with("Fully reversible for 30 days"), "{undo}");
    let b = sign_in(&app, "carla").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    let form = page
        .split(r#"data-action="sign_implementer""#)
        .nth(1)
        .and_then(|rest| rest.split("</form>").next())
        .unwrap_or_else(|| panic!("no implementer sign form: {page}"));
    let plan = format!(r#"<p class="small undo-ok" id="sign-undo-implementer">{undo}.</p>"#);
    let count = r#"<input type="number" id="confirm-implementer" name="confirm_count" required aria-describedby="sign-undo-implementer">"#;
    let (at_plan, at_count) = (form.find(&plan), form.find(count));
    assert!(at_plan.is_some() && at_count.is_some(), "{form}");
    assert!(
        at_plan < at_count,
        "the plan comes just before the count: {form}"
    );
    assert!(
        form.contains("Type the number of targets (1) to confirm"),
        "{form}"
    );
}

both_backends!(
    a_soft_delete_shows_each_purge_date_and_what_it_did,
    set_attributes_shows_each_value_now_and_after,
    a_rollback_of_a_delete_is_shown_as_the_restore_it_runs,
    a_bulk_restore_shows_what_each_target_goes_back_to,
    a_cascade_names_the_parent_that_took_each_child,
    a_purge_is_shown_as_permanent,
    a_long_list_pages_with_every_effect,
    the_new_change_preview_shows_what_happens,
    the_sign_form_repeats_the_undo_plan_next_to_the_typed_count,
);
both_backends!(backend: webhook_targets_name_the_endpoint_host);
