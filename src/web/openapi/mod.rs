//! The OpenAPI 3.1 document of the JSON API (`GET /api/v1/openapi.json`) and its reference
//! page (`GET /api/docs`). Request, response and query schemas come from the types the
//! handlers read and write (`utoipa::ToSchema` / `IntoParams` derives); the endpoints are
//! described once in [`table`] (a test compares that list with the `/api/v1` scope in
//! `web/mod.rs`, both ways); the error body and its codes come from `error_codes!`.

mod page;
mod table;

use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use crate::error::ErrorCode;

pub use page::docs_page;

/// Where the documented paths live.
pub const PREFIX: &str = "/api/v1";

/// The schemas the endpoints refer to, collected while the table is built.
#[derive(Default)]
pub struct Registry {
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Registry {
    /// A `$ref` to `T`'s schema, which (and every schema it refers to) joins the components.
    pub fn r<T: ToSchema>(&mut self) -> Value {
        self.schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(&mut self.schemas);
        json!({"$ref": format!("#/components/schemas/{}", T::name())})
    }
}

/// What an endpoint answers on success.
pub enum Answer {
    /// JSON of this schema (optionally also `text/csv` with `?format=csv`).
    Json { schema: Value, csv: bool },
    /// Prometheus text, iCalendar: a content type and no schema.
    Text(&'static str),
}

/// One documented endpoint. `path` is below [`PREFIX`] unless `absolute`.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub absolute: bool,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// No bearer token needed.
    pub public: bool,
    pub query: Vec<Value>,
    /// The JSON body's schema and whether the body may be left out.
    pub body: Option<(Value, bool)>,
    /// An NDJSON upload: what each line is.
    pub ndjson: Option<&'static str>,
    pub status: u16,
    pub answer: Answer,
    pub errors: Vec<ErrorCode>,
}

impl Endpoint {
    pub fn new(method: &'static str, path: &'static str, tag: &'static str) -> Endpoint {
        Endpoint {
            method,
            path,
            absolute: false,
            tag,
            summary: "",
            description: "",
            public: false,
            query: vec![],
            body: None,
            ndjson: None,
            status: 200,
            answer: Answer::Json {
                schema: json!({"type": "object"}),
                csv: false,
            },
            errors: vec![],
        }
    }

    pub fn summary(mut self, s: &'static str) -> Self {
        self.summary = s;
        self
    }

    pub fn describe(mut self, s: &'static str) -> Self {
        self.description = s;
        self
    }

    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    pub fn absolute(mut self) -> Self {
        self.absolute = true;
        self
    }

    pub fn query<T: IntoParams>(mut self) -> Self {
        for p in T::into_params(|| Some(ParameterIn::Query)) {
            self.query.push(serde_json::to_value(p).unwrap_or_default());
        }
        self.errors.push(ErrorCode::InvalidQuery);
        self
    }

    fn with_body(mut self, schema: Value, optional: bool) -> Self {
        self.body = Some((schema, optional));
        self.errors
            .extend([ErrorCode::InvalidJson, ErrorCode::PayloadTooLarge]);
        self
    }

    pub fn body<T: ToSchema>(self, reg: &mut Registry) -> Self {
        let s = reg.r::<T>();
        self.with_body(s, false)
    }

    /// A body that may be left out (`{"reason": …}` on the controls).
    pub fn optional_body<T: ToSchema>(self, reg: &mut Registry) -> Self {
        let s = reg.r::<T>();
        self.with_body(s, true)
    }

    pub fn body_schema(self, schema: Value) -> Self {
        self.with_body(schema, false)
    }

    pub fn ndjson(mut self, lines: &'static str) -> Self {
        self.ndjson = Some(lines);
        self.errors.extend([
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnreadableBody,
            ErrorCode::UploadStalled,
            ErrorCode::InvalidLines,
        ]);
        self
    }

    pub fn ok(mut self, status: u16, schema: Value) -> Self {
        self.status = status;
        self.answer = Answer::Json { schema, csv: false };
        self
    }

    pub fn ok_ref<T: ToSchema>(self, status: u16, reg: &mut Registry) -> Self {
        let s = reg.r::<T>();
        self.ok(status, s)
    }

    /// `?format=csv` answers the same list as CSV.
    pub fn csv(mut self) -> Self {
        if let Answer::Json { csv, .. } = &mut self.answer {
            *csv = true;
        }
        self.errors.push(ErrorCode::InvalidFormat);
        self
    }

    pub fn text(mut self, content_type: &'static str) -> Self {
        self.answer = Answer::Text(content_type);
        self
    }

    pub fn errors(mut self, codes: &[ErrorCode]) -> Self {
        self.errors.extend_from_slice(codes);
        self
    }

    /// The full path, as served.
    pub fn full_path(&self) -> String {
        if self.absolute {
            self.path.to_string()
        } else {
            format!("{PREFIX}{}", self.path)
        }
    }

    /// Every code this endpoint may answer with, sorted and once each.
    pub fn all_errors(&self) -> Vec<ErrorCode> {
        let mut v = self.errors.clone();
        if !self.public {
            v.extend([ErrorCode::Unauthenticated, ErrorCode::TokenExpired]);
        }
        if self.path.contains('{') {
            v.extend([ErrorCode::InvalidPath, ErrorCode::NotFound]);
        }
        v.sort_by_key(|c| (c.status().as_u16(), c.as_str()));
        v.dedup();
        v
    }
}

/// An object schema with these required properties (and no others).
pub fn object(props: &[(&str, Value)]) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert(k.to_string(), v.clone());
    }
    let required: Vec<&str> = props.iter().map(|(k, _)| *k).collect();
    json!({"type": "object", "properties": p, "required": required})
}

pub fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

pub fn string() -> Value {
    json!({"type": "string"})
}

pub fn integer() -> Value {
    json!({"type": "integer"})
}

pub fn nullable(t: &str) -> Value {
    json!({"type": [t, "null"]})
}

/// Any JSON object (a shape the README describes, not pinned down here).
pub fn any_object(description: &str) -> Value {
    json!({"type": "object", "description": description})
}

/// The error body: `{"error": {"code", "message", "details"?}}`, `code` one of
/// [`ErrorCode::ALL`].
fn error_schema() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "type": "object",
        "description": "Every error answer. `code` is stable and machine-readable (README \"Error codes\"); `message` is for people; `details`, when present, names what was wrong.",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": codes},
                "message": {"type": "string"},
                "details": {}
            }
        }}
    })
}

fn parameter(name: &str, int: bool) -> Value {
    let (schema, description) = match (name, int) {
        (_, true) => (integer(), "a number"),
        ("team", _) => (string(), "a team's name"),
        ("id", false) => (
            string(),
            "the change as `CHG-<n>` or `<n>` (an entity or import ID on `/inventory` and `/imports`)",
        ),
        _ => (string(), ""),
    };
    json!({"name": name, "in": "path", "required": true, "schema": schema, "description": description})
}

/// The path parameters of `path` (`{id}`, `{nid}`); integers where the handler reads one.
fn path_params(path: &str) -> Vec<Value> {
    let int_id = [
        "/calendar/freezes/",
        "/calendar/proposals/",
        "/outbox/",
        "/teams/",
    ]
    .iter()
    .any(|p| path.starts_with(p));
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| parameter(name, name == "nid" || (int_id && name == "id")))
        .collect()
}

fn operation(e: &Endpoint) -> Value {
    let mut op = json!({
        "tags": [e.tag],
        "summary": e.summary,
        "operationId": format!("{}_{}", e.method, e.full_path().trim_start_matches('/').replace(['/', '-', '.'], "_").replace(['{', '}'], "")),
    });
    if !e.description.is_empty() {
        op["description"] = json!(e.description);
    }
    let mut params = path_params(e.path);
    params.extend(e.query.iter().cloned());
    if !params.is_empty() {
        op["parameters"] = json!(params);
    }
    if let Some((schema, optional)) = &e.body {
        op["requestBody"] =
            json!({"required": !optional, "content": {"application/json": {"schema": schema}}});
    }
    if let Some(lines) = e.ndjson {
        op["requestBody"] = json!({"required": true, "description": lines, "content": {"application/x-ndjson": {"schema": {"type": "string"}}}});
    }
    let mut responses = Map::new();
    let ok = match &e.answer {
        Answer::Json { schema, csv } => {
            let mut content = json!({"application/json": {"schema": schema}});
            if *csv {
                content["text/csv"] = json!({"schema": {"type": "string"}});
            }
            json!({"description": "success", "content": content})
        }
        Answer::Text(ct) => {
            json!({"description": "success", "content": {*ct: {"schema": {"type": "string"}}}})
        }
    };
    responses.insert(e.status.to_string(), ok);
    let errors = e.all_errors();
    let mut by_status: std::collections::BTreeMap<u16, Vec<ErrorCode>> = Default::default();
    for c in &errors {
        by_status.entry(c.status().as_u16()).or_default().push(*c);
    }
    let error_ref = json!({"$ref": "#/components/schemas/Error"});
    for (status, codes) in by_status {
        let text: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
        responses.insert(
            status.to_string(),
            json!({"description": text.join(", "), "content": {"application/json": {"schema": error_ref}}}),
        );
    }
    responses.insert(
        "default".into(),
        json!({"description": "any other error: `internal` (500), `unavailable` (503)", "content": {"application/json": {"schema": error_ref}}}),
    );
    op["responses"] = Value::Object(responses);
    op["x-error-codes"] = json!(errors.iter().map(|c| c.as_str()).collect::<Vec<_>>());
    if e.public {
        op["security"] = json!([]);
    }
    op
}

/// The response views whose times are UTC without an offset (`NaiveDateTime`, written as
/// `2026-12-03T15:48:12.746317`): not RFC 3339 `date-time`, so described by a pattern.
const NAIVE_TIMES: &[&str] = &[
    "ChangeView",
    "ChangeSummaryView",
    "SignoffView",
    "EventView",
    "ScheduleView",
];

/// Every `"format": "date-time"` in `v` becomes the pattern of a time in UTC without offset.
fn naive_times(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("format").and_then(Value::as_str) == Some("date-time") {
                o.remove("format");
                o.insert(
                    "pattern".into(),
                    json!(
                        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?$"
                    ),
                );
                o.entry("description")
                    .or_insert_with(|| json!("a time in UTC, without an offset"));
            }
            o.values_mut().for_each(naive_times);
        }
        Value::Array(a) => a.iter_mut().for_each(naive_times),
        _ => {}
    }
}

/// The document, built from [`table::endpoints`].
pub fn build() -> Value {
    let mut reg = Registry::default();
    let endpoints = table::endpoints(&mut reg);
    let mut paths = Map::new();
    for e in &endpoints {
        let item = paths
            .entry(e.full_path())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object");
        item.insert(e.method.to_string(), operation(e));
    }
    let mut schemas = Map::new();
    for (name, schema) in reg.schemas {
        schemas
            .entry(name)
            .or_insert_with(|| serde_json::to_value(schema).unwrap_or_default());
    }
    for name in NAIVE_TIMES {
        if let Some(s) = schemas.get_mut(*name) {
            naive_times(s);
        }
    }
    schemas.insert("Error".into(), error_schema());
    let mut tags: Vec<&str> = endpoints.iter().map(|e| e.tag).collect();
    tags.dedup();
    let mut seen = std::collections::BTreeSet::new();
    tags.retain(|t| seen.insert(*t));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "countersign",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The JSON API of countersign, a change-request workflow engine: typed targets, fingerprinted resolutions, sign-off by both teams. Every answer is JSON (a CSV export where `format=csv` is offered); every error is `{\"error\": {\"code\", \"message\", \"details\"?}}` with a stable `code`. Authenticate with `Authorization: Bearer <token>` (an API token: Settings, or `countersign token create EMAIL`).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token (`cs_…`): created under Settings or with `countersign token create EMAIL`; a revoked or unknown token is 401 `unauthenticated`, an expired one 401 `token_expired`.",
            }},
        },
    })
}

/// The document, built once per process.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

#[cfg(test)]
mod tests;
