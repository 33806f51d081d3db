//! Hostile and careless input: slow uploads, huge lines, unbounded fields. Each is
//! refused early with a clear, bounded answer, and nobody else waits for it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{fixture_lines, inst, spawn_app_with, Backend, TestApp, ORG1};

/// Start an upload that sends its headers and a few bytes, then stalls.
async fn stalled_upload(app: &TestApp, path: &str) -> tokio::net::TcpStream {
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 1000000\r\n\r\n{{\"kind\": \"org\", ",
        app.token("carla")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    s
}

async fn slow_uploads_hold_nothing(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.upload_idle_secs = 3).await;
    app.load_fixture().await;
    let (id, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    // More stalled uploads than the pool has connections (6 in tests).
    let mut stalled = Vec::new();
    for i in 0..8 {
        let path = if i % 2 == 0 {
            "/api/v1/inventory"
        } else {
            "/api/v1/contacts"
        };
        stalled.push(stalled_upload(&app, path).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Writers and readers go on as if nothing were pending.
    let work = async {
        let (s, v) = app
            .post(
                &format!("/api/v1/changes/{id}/comments"),
                "ben",
                json!({"body": "still here"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        for _ in 0..8 {
            let (s, v) = app.get(&format!("/api/v1/changes/{id}"), "ben").await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let (s, v) = app
            .import(
                "carla",
                &[json!({"kind": "org", "id": ORG1, "name": "Renamed"}).to_string()],
                false,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .expect("a stalled upload made others wait");
    // The stalled ones are answered once they have been quiet for the idle limit.
    for mut s in stalled {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
            .await
            .expect("the stalled upload is answered")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("upload_stalled"), "{text}");
    }
    // Nothing of them was written.
    let (_, v) = app.get(&format!("/api/v1/inventory/{ORG1}"), "ana").await;
    assert_eq!(v["name"], "Renamed", "{v}");
}

crate::both_backends!(backend: slow_uploads_hold_nothing);

async fn post_body(app: &TestApp, path: &str, body: Vec<u8>) -> (StatusCode, String) {
    let r = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(app.token("carla"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// A huge line, a line that is not UTF-8 and a 10,000-character ID: each one bad line
/// with a short message, and the rest of the file still imports with `partial`.
async fn lines_and_echoes_are_bounded(app: TestApp) {
    let mut lines = fixture_lines();
    let huge = json!({"kind": "org", "id": "o-huge", "name": "x".repeat(200_000)}).to_string();
    let long_id = json!({"kind": "org", "id": "y".repeat(10_000)}).to_string();
    lines.insert(1, huge);
    lines.insert(2, long_id);
    let mut body = lines.join("\n").into_bytes();
    body.extend_from_slice(b"\n\xff\xfe{\"kind\": \"org\"}\n");
    let (s, text) = post_body(&app, "/api/v1/inventory?partial=true", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(text.len() < 4_000, "{} bytes of report", text.len());
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["rejected"],
        3,
        "{}",
        serde_json::to_string_pretty(&v["errors"]).unwrap()
    );
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["code"], "line_too_long", "{v}");
    assert_eq!(errors[1]["line"], 3);
    assert_eq!(errors[1]["code"], "invalid_id", "{v}");
    assert!(
        errors[1]["id"].as_str().unwrap().chars().count() <= 101,
        "{v}"
    );
    assert_eq!(errors[2]["code"], "not_utf8", "{v}");
    for e in errors {
        assert!(e["message"].as_str().unwrap().len() < 400, "{e}");
    }
    // Without `partial`, the same file writes nothing and says why, just as briefly.
    let (s, text) = post_body(&app, "/api/v1/inventory", body).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.len() < 4_000, "{} bytes of error", text.len());

    // Contacts files: the same reader, the same bounds.
    let mut contacts = format!(
        "{}\n{}\n",
        json!({"entity": ORG1, "name": "A", "email": "a@x.example", "role": "admin"}),
        json!({"entity": ORG1, "name": "B", "email": "z".repeat(100_000), "role": "admin"}),
    )
    .into_bytes();
    contacts.extend_from_slice(&vec![b'q'; 70_000]);
    let (s, text) = post_body(&app, "/api/v1/contacts?partial=true", contacts).await;
    assert_eq!(s, StatusCode::OK, "{text}");
    assert!(text.len() < 2_000, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["inserted"], 1, "{v}");
    assert_eq!(v["rejected"], 2, "{v}");
}

crate::both_backends!(lines_and_echoes_are_bounded);

fn change_body(title: &str, targets: Value) -> Value {
    json!({"title": title, "rationale": "r", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": targets})
}

async fn count_changes(app: &TestApp) -> usize {
    let (_, v) = app.get("/api/v1/changes?limit=1000", "ana").await;
    v["changes"].as_array().map(Vec::len).unwrap_or(0)
}

/// The same limits on every path a change's words and targets enter: IDs as long as an
/// import allows and no more of them than `max_targets`, titles on one line, rollback
/// titles and rationales checked like any other. Nothing is stored when refused.
async fn every_input_is_bounded(app: TestApp) {
    app.load_fixture().await;
    let before = count_changes(&app).await;
    // A 10 MB ID: refused with the line, echoing a little of it.
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            change_body("t", json!({"ids": [inst(1), "y".repeat(10_000_000)]})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "invalid_selector", "{v}");
    assert_eq!(v["error"]["details"]["line"], 2, "{v}");
    assert!(v.to_string().len() < 1_000, "{} bytes", v.to_string().len());
    // Scopes and conditions too.
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            change_body(
                "t",
                json!({"within": {"kind": "org", "ids": ["z".repeat(300)]}}),
            ),
        )
        .await;
    assert_eq!(
        (s, v["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("within")),
        "{v}"
    );
    let (s, v) = app
        .post("/api/v1/changes", "ana", change_body("t", json!({"within": {"kind": "org", "ids": [ORG1]}, "where": {"app": "w".repeat(5000)}})))
        .await;
    assert_eq!(
        (s, v["error"]["details"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("where")),
        "{v}"
    );
    // More IDs than the operation may target.
    let many: Vec<String> = (0..100_001).map(|n| format!("i{n}")).collect();
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            change_body("t", json!({"ids": many})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_targets"),
        "{v}"
    );
    // Titles: one line of text, no terminal escapes.
    for bad in ["two\nlines", "red \u{1b}[31malert", "tab\there"] {
        let (s, v) = app
            .post(
                "/api/v1/changes",
                "ana",
                change_body(bad, json!({"ids": [inst(1)]})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}: {v}");
        assert_eq!(v["error"]["code"], "invalid_title", "{v}");
    }
    assert_eq!(count_changes(&app).await, before, "nothing stored");
    // Edits go through the same checks.
    let c = app
        .create("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let id = c["id"].as_i64().unwrap();
    let (s, v) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"targets": {"ids": ["q".repeat(1000)]}}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_selector")),
        "{v}"
    );
    let (s, v) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"title": "bell\u{7}"}),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_title")),
        "{v}"
    );
    // Rollbacks: their title and rationale have the same limits.
    app.post(&format!("/api/v1/changes/{id}/cancel"), "ana", json!({}))
        .await;
    let (eid, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    app.execute(eid, &fp).await;
    app.wait_execution(eid, &["completed"]).await;
    let rb = |body: Value| {
        let app = &app;
        async move {
            app.post(&format!("/api/v1/changes/{eid}/rollback"), "ana", body)
                .await
        }
    };
    let (s, v) = rb(json!({"title": "t".repeat(1_000_000)})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_title")),
        "{v}"
    );
    let (s, v) = rb(json!({"rationale": "r".repeat(1_000_000)})).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_rationale")),
        "{v}"
    );
    let (s, v) = rb(json!({"title": "Undo it"})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

crate::both_backends!(every_input_is_bounded);

/// `where` without `within` is answered by the database: exactly the matching targets,
/// the deleted ones counted and left out, and a refusal with the true count when there
/// are more than the operation's limit (without loading them all).
async fn a_query_over_a_whole_kind(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let schema = format!(
        "{}\n\n[operations.uninstall_few]\nlabel = \"Uninstall a few apps\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nrequested_by = [\"app-owners\"]\nsignoffs = {{ requester = 1, implementer = 1 }}\nmax_targets = 3\n",
        countersign::domain::schema::EXAMPLE_SCHEMA
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, |c| c.schema_path = Some(path.clone())).await;
    app.load_fixture().await;
    // inst(1) deleted first: the query then finds 3 active insight installs.
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    let c = app
        .create("ana", "uninstall_few", json!({"where": {"app": "insight"}}))
        .await;
    let ids: Vec<String> = {
        let id = c["id"].as_i64().unwrap();
        let (_, v) = app
            .get(&format!("/api/v1/changes/{id}/targets"), "ana")
            .await;
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids, vec![inst(3), inst(5), inst(7)], "{c}");
    assert!(
        c.to_string()
            .contains("1 App installations matched the query but are already deleted"),
        "{c}"
    );
    // Both apps: 7 active matches, more than 3 — refused with the real number.
    let (s, v) = app
        .post("/api/v1/changes", "ana", json!({"title": "t", "rationale": "", "requesting_team": "app-owners", "operation": "uninstall_few", "targets": {"where": {"version": "1.0.0"}}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let msg = v.to_string();
    let n = {
        let (_, all) = app
            .get("/api/v1/inventory?kind=app_install&limit=1000", "ana")
            .await;
        all["entities"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["attrs"]["version"] == "1.0.0" && e["state"] == "active")
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(n > 3, "the fixture has more than 3 such installs ({n})");
    assert!(
        msg.contains(&format!("resolves to {n} App installations")),
        "{n}: {msg}"
    );
}

crate::both_backends!(backend: a_query_over_a_whole_kind);
