use reqwest::StatusCode;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::TestApp;

async fn health_and_auth(app: TestApp) {
    let r = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("x-request-id").is_some());
    let r: Value = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "ready");

    // No token, a malformed header, an unknown token: 401 with a JSON error.
    let r = app
        .client
        .get(format!("{}/api/v1/queue", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthenticated");
    let r = app
        .client
        .get(format!("{}/api/v1/queue", app.address))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .client
        .get(format!("{}/api/v1/queue", app.address))
        .bearer_auth("cs_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (s, v) = app.get("/api/v1/me", "carla").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["email"], "carla@ops.example");
    assert_eq!(v["teams"][0], "platform-ops");

    let (s, v) = app.get("/api/v1/nope", "carla").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "not_found");
}

async fn schema_endpoint(app: TestApp) {
    let (s, v) = app.get("/api/v1/schema", "olga").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["hash"].as_str().unwrap().starts_with("sha256:"));
    let site = &v["kinds"]["site"];
    assert_eq!(site["label"], "Cloud site");
    assert_eq!(site["parent"], "org");
    assert!(site["pattern"].as_str().unwrap().contains("[0-9a-f]{8}"));
    assert!(site["example"].is_string());
    assert!(site["description"].is_string());
    assert_eq!(v["kinds"]["app_install"]["attributes"][0], "app");
    let op = &v["operations"]["delete_site"];
    assert_eq!(op["target"], "site");
    assert_eq!(op["effect"], "soft_delete");
    assert_eq!(op["signoffs"]["implementer"], 2);
    assert_eq!(
        v["operations"]["set_app_version"]["params"][0]["name"],
        "version"
    );
}

async fn malformed_requests_get_json_errors(app: TestApp) {
    // Not JSON at all.
    let r = app
        .client
        .post(format!("{}/api/v1/changes", app.address))
        .bearer_auth(app.token("ana"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_json");
    // A misspelt field is named.
    let (s, v) = app.post("/api/v1/changes", "ana", serde_json::json!({"title": "x", "requesting_team": "app-owners", "operation": "uninstall_app", "targetz": {}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("targetz"),
        "{v}"
    );
    // Unknown change number.
    let (s, v) = app.get("/api/v1/changes/CHG-999", "ana").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["message"], "change `CHG-999` does not exist");
    let (s, _) = app.get("/api/v1/changes/banana", "ana").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

both_backends!(
    health_and_auth,
    schema_endpoint,
    malformed_requests_get_json_errors
);

async fn json_payload_limit_is_enforced(backend: crate::helpers::Backend) {
    let app = crate::helpers::spawn_app_with(backend, |c| c.max_json_bytes = 1024).await;
    let ids: Vec<String> = (0..200).map(crate::helpers::inst).collect();
    let (s, v) = app.post("/api/v1/changes", "ana", serde_json::json!({"title": "big", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": ids}})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large");
}

both_backends!(backend: json_payload_limit_is_enforced);
