//! `GET /api/docs`: the API reference, rendered on the server from the generated document
//! (no script, no external assets): endpoints grouped by tag with their parameters, body,
//! answer and error codes, then the schemas.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;
use serde_json::Value;

use crate::error::ErrorCode;
use crate::web::pages::{html, Layout};

pub struct Field {
    pub name: String,
    pub ty: String,
    pub required: bool,
    pub description: String,
}

pub struct ErrorRow {
    pub code: String,
    pub status: u16,
    pub meaning: String,
}

pub struct Op {
    pub method: String,
    pub path: String,
    pub anchor: String,
    pub summary: String,
    pub description: String,
    pub public: bool,
    pub params: Vec<Field>,
    /// The body's type and content type, when it has one.
    pub body: Option<(String, String)>,
    pub body_optional: bool,
    pub status: String,
    pub answer: String,
    pub errors: Vec<ErrorRow>,
}

pub struct Tag {
    pub name: String,
    pub ops: Vec<Op>,
}

pub struct SchemaView {
    pub name: String,
    pub ty: String,
    pub description: String,
    pub fields: Vec<Field>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
pub struct DocsPage {
    pub l: Layout,
    pub version: String,
    pub tags: Vec<Tag>,
    pub schemas: Vec<SchemaView>,
}

/// A schema in a few words: a `$ref`'s name, `[T]`, `string or null`, `one of a, b`.
pub fn type_of(v: &Value) -> String {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = v.get(key).and_then(Value::as_array) {
            let sep = if key == "allOf" { " and " } else { " or " };
            return list.iter().map(type_of).collect::<Vec<_>>().join(sep);
        }
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        let words: Vec<String> = e
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect();
        return format!("one of {}", words.join(", "));
    }
    if let Some(c) = v.get("const") {
        return format!("always {c}");
    }
    let types: Vec<String> = match v.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    };
    let words: Vec<String> = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("[{}]", v.get("items").map(type_of).unwrap_or_default()),
            "object" => match v.get("additionalProperties") {
                Some(a) if a.is_object() => format!("map of {}", type_of(a)),
                _ => "object".into(),
            },
            other => match v.get("format").and_then(Value::as_str) {
                Some(f) => format!("{other} ({f})"),
                None => other.to_string(),
            },
        })
        .collect();
    if words.is_empty() {
        "any".into()
    } else {
        words.join(" or ")
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for part in all {
            out.extend(fields(part));
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            out.push(Field {
                name: name.clone(),
                ty: type_of(p),
                required: required.contains(&name.as_str()),
                description: text(p, "description"),
            });
        }
    }
    out
}

fn op(method: &str, path: &str, o: &Value) -> Op {
    let params = o
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| Field {
                    name: format!("{} ({})", text(p, "name"), text(p, "in")),
                    ty: p.get("schema").map(type_of).unwrap_or_default(),
                    required: p.get("required").and_then(Value::as_bool).unwrap_or(false),
                    description: text(p, "description"),
                })
                .collect()
        })
        .unwrap_or_default();
    let body = o.get("requestBody");
    let body_view = body.and_then(|b| {
        let (ct, media) = b.get("content")?.as_object()?.iter().next()?;
        let ty = match media.get("schema") {
            Some(s) if ct == "application/json" => type_of(s),
            _ => text(b, "description"),
        };
        Some((ty, ct.clone()))
    });
    let responses = o.get("responses").and_then(Value::as_object);
    let (status, answer) = responses
        .and_then(|r| r.iter().find(|(s, _)| s.starts_with('2')))
        .map(|(s, r)| {
            let content = r.get("content").and_then(Value::as_object);
            let what = content
                .map(|c| {
                    c.iter()
                        .map(|(ct, m)| match m.get("schema") {
                            Some(s) if ct == "application/json" => {
                                let d = text(s, "description");
                                if d.is_empty() {
                                    type_of(s)
                                } else {
                                    format!("{}: {d}", type_of(s))
                                }
                            }
                            _ => ct.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join("; or ")
                })
                .unwrap_or_default();
            (s.clone(), what)
        })
        .unwrap_or_default();
    let errors = o
        .get("x-error-codes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| ErrorCode::parse(c.as_str()?))
                .map(|c| ErrorRow {
                    code: c.as_str().into(),
                    status: c.status().as_u16(),
                    meaning: c.meaning().into(),
                })
                .collect()
        })
        .unwrap_or_default();
    Op {
        method: method.to_uppercase(),
        path: path.to_string(),
        anchor: format!("{method}-{}", path.replace(['/', '{', '}', '.'], "-")),
        summary: text(o, "summary"),
        description: text(o, "description"),
        public: o
            .get("security")
            .is_some_and(|s| s.as_array().is_some_and(Vec::is_empty)),
        params,
        body: body_view,
        body_optional: body
            .is_some_and(|b| !b.get("required").and_then(Value::as_bool).unwrap_or(false)),
        status,
        answer,
        errors,
    }
}

/// The page's content from `doc`.
pub fn view(doc: &Value) -> (Vec<Tag>, Vec<SchemaView>) {
    let mut tags: Vec<Tag> = doc["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|t| Tag {
                    name: text(t, "name"),
                    ops: vec![],
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for (method, o) in item.as_object().into_iter().flatten() {
                let tag = o["tags"][0].as_str().unwrap_or_default();
                if let Some(t) = tags.iter_mut().find(|t| t.name == tag) {
                    t.ops.push(op(method, path, o));
                }
            }
        }
    }
    let schemas = doc["components"]["schemas"]
        .as_object()
        .map(|s| {
            s.iter()
                .map(|(name, v)| SchemaView {
                    name: name.clone(),
                    ty: type_of(v),
                    description: text(v, "description"),
                    fields: fields(v),
                })
                .collect()
        })
        .unwrap_or_default();
    (tags, schemas)
}

pub async fn docs_page() -> HttpResponse {
    let doc = super::document();
    let (tags, schemas) = view(doc);
    let page = DocsPage {
        l: Layout::anonymous(),
        version: text(&doc["info"], "version"),
        tags,
        schemas,
    };
    html(StatusCode::OK, page.render())
}
