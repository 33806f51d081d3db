//! The document against the route table: every route of the `/api/v1` scope (and the public
//! ones beside it) has its entry, and every entry is a route; every `$ref` resolves.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{build, PREFIX};

/// `(method, path)` of every `.route("…", web::<method>().to(…))` in `body`.
fn routes_in(body: &str) -> BTreeSet<(String, String)> {
    let re = regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*web::([a-z]+)\(\)"#).unwrap();
    re.captures_iter(body)
        .map(|c| (c[2].to_string(), c[1].to_string()))
        .collect()
}

/// The text of `fn <name>` in `web/mod.rs`, up to the next top-level `fn`.
fn function(src: &str, name: &str) -> String {
    let start = src
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("web/mod.rs has no fn {name}"));
    let rest = &src[start..];
    let end = rest[1..]
        .find("\nfn ")
        .or_else(|| rest[1..].find("\npub fn "))
        .map_or(rest.len(), |i| i + 1);
    rest[..end].to_string()
}

fn registered() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/web/mod.rs"))
        .expect("read src/web/mod.rs");
    let mut all: BTreeSet<_> = routes_in(&function(&src, "api_routes"))
        .into_iter()
        .map(|(m, p)| (m, format!("{PREFIX}{p}")))
        .collect();
    // The public routes beside the API (health, metrics, the feed) in `routes`.
    let outer = function(&src, "routes");
    all.extend(routes_in(&outer));
    all
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.clone(), path.clone()));
        }
    }
    out
}

#[test]
fn every_route_has_an_entry_and_every_entry_a_route() {
    let doc = build();
    let routes = registered();
    assert!(
        routes.len() > 60,
        "found only {} routes: {routes:?}",
        routes.len()
    );
    let docs = documented(&doc);
    let missing: Vec<_> = routes.difference(&docs).collect();
    assert!(
        missing.is_empty(),
        "routes without an entry in the OpenAPI document (src/web/openapi/table.rs): {missing:?}"
    );
    let extra: Vec<_> = docs.difference(&routes).collect();
    assert!(
        extra.is_empty(),
        "entries in the OpenAPI document that are no route: {extra:?}"
    );
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("$ref") {
                out.push(r.clone());
            }
            o.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_operation_is_complete() {
    let doc = build();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} does not resolve"
        );
    }
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}: no summary"
            );
            assert!(
                ids.insert(op["operationId"].to_string()),
                "{method} {path}: operationId twice"
            );
            for p in path
                .split('/')
                .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            {
                assert!(
                    op["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["name"] == p && x["in"] == "path"),
                    "{method} {path}: path parameter {p} not described"
                );
            }
            for code in op["x-error-codes"].as_array().unwrap() {
                assert!(
                    crate::error::ErrorCode::parse(code.as_str().unwrap()).is_some(),
                    "{code}"
                );
            }
        }
    }
}

#[test]
fn the_reference_page_shows_every_endpoint() {
    use askama::Template;
    let doc = build();
    let (tags, schemas) = super::page::view(&doc);
    let page = super::page::DocsPage {
        l: crate::web::pages::Layout::anonymous(),
        version: "test".into(),
        tags,
        schemas,
    }
    .render()
    .unwrap();
    for (method, path) in documented(&doc) {
        assert!(
            page.contains(&format!("{} {}", method.to_uppercase(), path)),
            "{method} {path} missing from the page"
        );
    }
    assert!(page.contains("stale_fingerprint"));
    assert!(page.contains("id=\"schema-CreateChange\""));
}
