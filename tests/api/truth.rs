//! What every screen says a change does is what runs: a change of every effect and its
//! rollback, named in the API (change, list, queue), the change page, the lists and the
//! mails with the label and effect the executor then applies.

use countersign::db::models::OutboxRow;
use countersign::db::schema::outbox;
use countersign::notify::mail::{render, MailSettings};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{inst, site, TestApp};
use crate::web::sign_in;

struct Seen {
    label: String,
    effect: String,
}

/// Check every view of change `id` names `want`; returns what the API says.
async fn every_view_says(app: &TestApp, id: i64, want_label: &str, want_effect: &str) -> Seen {
    let c = app.change(id).await;
    let label = c["operation"]["label"].as_str().unwrap().to_string();
    let effect = c["operation"]["effect"].as_str().unwrap().to_string();
    assert_eq!(label, want_label, "API change {id}: {}", c["operation"]);
    assert_eq!(effect, want_effect, "API change {id}");
    let destructive = matches!(want_effect, "soft_delete" | "purge");
    assert_eq!(
        c["operation"]["destructive"], destructive,
        "{}",
        c["operation"]
    );
    // The list.
    let (_, list) = app.get("/api/v1/changes", "ana").await;
    let row = list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(row["operation_label"], want_label, "{row}");
    assert_eq!(row["effect"], want_effect, "{row}");
    assert_eq!(row["destructive"], destructive, "{row}");
    // The queue, while it waits for the implementer.
    if c["state"] == "awaiting_signoff" {
        let (_, q) = app.get("/api/v1/queue", "eli").await;
        let item = q["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("CHG-{id} not in the queue: {q}"))
            .clone();
        assert_eq!(item["operation_label"], want_label);
        assert_eq!(item["effect"], want_effect);
        assert_eq!(item["destructive"], destructive);
    }
    // The change page and the lists in the browser.
    let b = sign_in(app, "eli").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    let headline = format!(
        "<strong>{}</strong> — {}",
        want_label,
        c["operation"]["effect_text"].as_str().unwrap()
    );
    assert!(
        page.contains(&headline),
        "change page of CHG-{id} lacks {headline:?}"
    );
    if let Some(undoes) = c["operation"]["undoes"].as_str() {
        assert!(
            !page.contains(&format!("<strong>{undoes}</strong>")),
            "the page names the undone operation as what runs"
        );
    }
    for path in ["/changes", "/queue"] {
        let (_, html) = b.get(path).await;
        if let Some(rowhtml) = html
            .split("<tr")
            .find(|r| r.contains(&format!(">CHG-{id}<")))
        {
            assert!(
                rowhtml.contains(want_label),
                "{path} row of CHG-{id}: {rowhtml}"
            );
            assert!(
                rowhtml.contains(want_effect),
                "{path} row of CHG-{id}: {rowhtml}"
            );
        } else {
            assert_ne!(path, "/changes", "CHG-{id} is not listed");
        }
    }
    // The mails about it.
    let rows: Vec<OutboxRow> = {
        let mut conn = app.conn();
        outbox::table
            .filter(outbox::change_id.eq(id))
            .select(OutboxRow::as_select())
            .load(&mut *conn)
            .unwrap()
    };
    assert!(!rows.is_empty(), "no mail about CHG-{id}");
    let settings = MailSettings {
        from: "countersign@example.test".into(),
        public_url: "http://localhost".into(),
    };
    for r in rows.iter().filter(|r| r.event_kind != "customer_notice") {
        let m = render(r, &settings).unwrap();
        assert!(
            m.text.contains(&format!("{want_label} — ")),
            "mail {} about CHG-{id} does not name {want_label}: {}",
            r.event_kind,
            m.text
        );
    }
    Seen { label, effect }
}

/// The change page, both CSVs and the API's targets show `version: now → after` for inst 2.
async fn shows_attribute_change(app: &TestApp, id: i64, now: &str, after: &str) {
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/targets"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["targets"][0]["attributes"],
        json!([{"key": "version", "now": now, "after": after}]),
        "{v}"
    );
    let b = sign_in(app, "ana").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(
        page.contains(&format!("version: {now} → {after}")),
        "change page of CHG-{id}"
    );
    let (_, csv) = b.get(&format!("/changes/CHG-{id}/targets.csv")).await;
    assert!(
        csv.starts_with("kind,id,scope_path,name,effect,outcome,what_happens,cascaded_from,\"version now\",\"version after\"\n"),
        "{csv}"
    );
    assert!(csv.contains(&format!(",\"{now}\",\"{after}\"\n")), "{csv}");
    let r = app
        .client
        .get(format!(
            "{}/api/v1/changes/{id}/targets?format=csv",
            app.address
        ))
        .bearer_auth(app.token("ana"))
        .send()
        .await
        .unwrap();
    let csv = r.text().await.unwrap();
    assert!(csv.contains(&format!(",\"{now}\",\"{after}\"\n")), "{csv}");
}

/// Execute `id` (approve first when needed) and return the effect the executor applied.
async fn executed_effect(app: &TestApp, id: i64) -> String {
    let c = app.change(id).await;
    let fp = c["fingerprint"].as_str().unwrap().to_string();
    if c["state"] == "awaiting_signoff" {
        app.approve(id, &fp).await;
    }
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let v = app.wait_execution(id, &["completed"]).await;
    v["effect"].as_str().unwrap().to_string()
}

async fn rollback(app: &TestApp, id: i64) -> i64 {
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

async fn submitted(app: &TestApp, body: Value) -> i64 {
    let (s, v) = app.post("/api/v1/changes", "ana", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    id
}

async fn what_you_see_is_what_runs(app: TestApp) {
    app.load_fixture().await;
    // soft_delete, and its rollback: a restore.
    let del = submitted(&app, json!({"title": "Uninstall insight", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1), inst(3)]}})).await;
    let seen = every_view_says(&app, del, "Uninstall an app", "soft_delete").await;
    assert_eq!(executed_effect(&app, del).await, seen.effect);
    let rb = rollback(&app, del).await;
    let seen = every_view_says(&app, rb, "Restore app installations", "restore").await;
    assert_eq!(executed_effect(&app, rb).await, seen.effect);
    assert_eq!(app.entity(&inst(1)).await["state"], "active");
    let _ = seen.label;

    // restore (a bulk restore of what the deletion changed… after deleting again), and its
    // rollback: a soft delete again.
    let del2 = submitted(&app, json!({"title": "Uninstall once more", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(5)]}})).await;
    executed_effect(&app, del2).await;
    let res = submitted(&app, json!({"title": "Bring it back", "requesting_team": "app-owners", "operation": "restore_app", "targets": {"ids": [inst(5)]}})).await;
    let seen = every_view_says(&app, res, "Restore app installations", "restore").await;
    assert_eq!(executed_effect(&app, res).await, seen.effect);
    let rb = rollback(&app, res).await;
    let seen = every_view_says(
        &app,
        rb,
        "Delete again the app installations “Restore app installations” brought back",
        "soft_delete",
    )
    .await;
    assert_eq!(executed_effect(&app, rb).await, seen.effect);
    assert_eq!(app.entity(&inst(5)).await["state"], "deleted");

    // set_attributes, and its rollback: the previous values back. Every view shows each
    // target's value now and after.
    let b = sign_in(&app, "ana").await;
    let (s, _, preview) = b
        .post(
            "/changes/new",
            &[
                ("csrf", b.csrf.as_str()),
                ("operation", "set_app_version"),
                ("requesting_team", "app-owners"),
                ("title", "Version 2"),
                ("params", "version = 2.0.0"),
                ("ids", inst(2).as_str()),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        preview.contains("version: 1.0.0 → 2.0.0"),
        "the preview shows now → after"
    );
    let set = submitted(&app, json!({"title": "Version 2", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(2)]}})).await;
    let seen = every_view_says(&app, set, "Set the app version", "set_attributes").await;
    shows_attribute_change(&app, set, "1.0.0", "2.0.0").await;
    assert_eq!(executed_effect(&app, set).await, seen.effect);
    assert_eq!(app.entity(&inst(2)).await["attrs"]["version"], "2.0.0");
    let rb = rollback(&app, set).await;
    let seen = every_view_says(
        &app,
        rb,
        "Put back the attributes “Set the app version” changed",
        "set_attributes",
    )
    .await;
    shows_attribute_change(&app, rb, "2.0.0", "1.0.0").await;
    assert_eq!(executed_effect(&app, rb).await, seen.effect);
    assert_eq!(app.entity(&inst(2)).await["attrs"]["version"], "1.0.0");

    // A cascading soft delete of a site, and its rollback: sites and installs restored.
    let dec = submitted(&app, json!({"title": "Decommission", "requesting_team": "app-owners", "operation": "decommission_site", "targets": {"ids": [site(4)]}})).await;
    let seen = every_view_says(&app, dec, "Decommission a cloud site", "soft_delete").await;
    assert_eq!(executed_effect(&app, dec).await, seen.effect);
    let rb = rollback(&app, dec).await;
    let seen = every_view_says(&app, rb, "Restore cloud sites", "restore").await;
    assert_eq!(executed_effect(&app, rb).await, seen.effect);
    assert_eq!(app.entity(&site(4)).await["state"], "active");

    // A rollback is not rolled back: no such action is offered.
    let c = app.change(rb).await;
    assert!(!c["allowed_actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "rollback"));
}

both_backends!(what_you_see_is_what_runs);
