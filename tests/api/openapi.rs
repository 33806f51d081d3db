//! The API description (issue #14): `GET /api/v1/openapi.json` is public and names every
//! route (the unit tests in `src/web/openapi/tests.rs` compare it with the route table);
//! the reference page renders it; real answers carry what the document says they do.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{inst, TestApp};

async fn document(app: &TestApp) -> Value {
    let res = app
        .client
        .get(format!("{}/api/v1/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// `schema`'s `$ref` target (or `schema` itself).
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    }
}

/// Shallow conformance: every required property is there, and each property present has
/// one of its declared JSON types; nested objects and `$ref`s recursively.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) {
    let schema = resolve(doc, schema);
    if let Some(all) = schema["allOf"].as_array() {
        for s in all {
            conforms(doc, s, v, at);
        }
    }
    if let Some(types) = match &schema["type"] {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect()),
        _ => None,
    } {
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        assert!(
            types.contains(&actual) || (actual == "integer" && types.contains(&"number")),
            "{at}: {actual} where the document says {types:?}: {v}"
        );
    }
    if let Some(e) = schema["enum"].as_array() {
        assert!(e.contains(v), "{at}: {v} is none of {e:?}");
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        let k = r.as_str().unwrap();
        assert!(
            v.get(k).is_some(),
            "{at}: `{k}` is required but missing: {v}"
        );
    }
    if let (Some(props), Some(obj)) = (schema["properties"].as_object(), v.as_object()) {
        for (k, s) in props {
            if let Some(x) = obj.get(k) {
                conforms(doc, s, x, &format!("{at}.{k}"));
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"));
        }
    }
}

/// The answer of `method path` with `status`, checked against the document.
fn check(doc: &Value, method: &str, path: &str, status: StatusCode, v: &Value) {
    let op = &doc["paths"][path][method];
    assert!(op.is_object(), "{method} {path} is not in the document");
    let r = &op["responses"][status.as_str()];
    assert!(
        r.is_object(),
        "{method} {path}: {status} is not documented: {v}"
    );
    let schema = &r["content"]["application/json"]["schema"];
    conforms(doc, schema, v, &format!("{method} {path} {status}"));
    if !status.is_success() {
        let code = v["error"]["code"].as_str().unwrap();
        assert!(
            op["x-error-codes"]
                .as_array()
                .unwrap()
                .contains(&json!(code)),
            "{method} {path}: `{code}` is not listed"
        );
    }
}

async fn the_document_describes_real_answers(app: TestApp) {
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    app.load_fixture().await;
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            json!({"title": "t", "rationale": "r", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1), inst(2)]}}),
        )
        .await;
    check(&doc, "post", "/api/v1/changes", s, &v);
    let id = v["id"].as_i64().unwrap();
    let (s, v) = app.get(&format!("/api/v1/changes/{id}"), "carla").await;
    check(&doc, "get", "/api/v1/changes/{id}", s, &v);
    let (s, v) = app.get("/api/v1/changes", "carla").await;
    check(&doc, "get", "/api/v1/changes", s, &v);
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/events"), "carla")
        .await;
    check(&doc, "get", "/api/v1/changes/{id}/events", s, &v);
    let (s, v) = app.get("/api/v1/me", "ana").await;
    check(&doc, "get", "/api/v1/me", s, &v);
    // Refusals: their codes are listed for the route, their body is the error schema.
    let (s, v) = app.get("/api/v1/changes/CHG-999999", "ana").await;
    check(&doc, "get", "/api/v1/changes/{id}", s, &v);
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/reject"), "carla", json!({}))
        .await;
    check(&doc, "post", "/api/v1/changes/{id}/reject", s, &v);
    let (s, v) = app.get("/api/v1/me", "nobody").await;
    check(&doc, "get", "/api/v1/me", s, &v);
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            json!({"title": "t", "unknown": 1}),
        )
        .await;
    check(&doc, "post", "/api/v1/changes", s, &v);
}

async fn the_reference_page_is_served_without_scripts_or_other_hosts(app: TestApp) {
    let res = app
        .client
        .get(format!("{}/api/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = res.text().await.unwrap();
    for want in [
        "POST /api/v1/changes/{id}/signoffs",
        "stale_fingerprint",
        "id=\"schema-SignRequest\"",
        "/static/app.css",
    ] {
        assert!(page.contains(want), "the page lacks {want}");
    }
    assert!(!page.contains("http://") && !page.contains("https://"));
}

both_backends!(
    the_document_describes_real_answers,
    the_reference_page_is_served_without_scripts_or_other_hosts
);
