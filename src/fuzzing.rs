//! Bodies of the fuzz targets in `fuzz/` (cargo-fuzz, libFuzzer). They live in the library
//! so that `tests/fuzz_corpus.rs` runs the same bodies over the seed corpus and every
//! recorded crash on each `cargo test`, without cargo-fuzz. Each body takes the raw bytes,
//! calls the production code exactly as the server does, and panics when a property
//! fails: no panic anywhere, round trips where a value is written and read back, and
//! error messages that quote a bounded part of the input.

use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::db::inventory::{check_attrs, check_identity, parse_line};
use crate::domain::execution::{plan_waves, WaveSize};
use crate::domain::selector::{split_claimed_kind, Selector};
use crate::domain::Schema;
use crate::error::AppError;
use crate::exec::webhook::{parse_answer, Answer};
use crate::service::changes::{change_id, CreateChange};
use crate::service::views::number;
use crate::web::pages::{to_request, ChangeForm};

/// The longest error message, in characters, that an input may produce through the
/// fuzzed functions (with the fuzz schema below): the fixed words, the schema's own names
/// and syntax hints, and bounded quotes of the input. Unbounded quoting exceeds it.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// The example schema plus a prefix-only kind without attributes, so both kinds of ID
/// syntax (pattern, prefix) are reached.
const FUZZ_SCHEMA: &str = concat!(
    include_str!("../config/schema.example.toml"),
    r#"
[kinds.space]
label = "Team space"
prefix = "ts_"
example = "ts_1"
"#
);

fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::from_toml(FUZZ_SCHEMA).expect("the fuzz schema loads"))
}

fn bounded(what: &str, message: &str) {
    let n = message.chars().count();
    assert!(
        n <= MAX_MESSAGE_CHARS,
        "{what}: a {n}-character message quotes too much of the input: {}…",
        message.chars().take(300).collect::<String>()
    );
}

/// `Schema::from_toml`: the schema file.
pub fn schema_toml(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return; // the loader takes a &str (the file is read as UTF-8 first)
    };
    let schema = match Schema::from_toml(source) {
        Ok(s) => s,
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without problems");
            let lines = source.lines().count().max(1);
            for p in &errors.0 {
                assert!(!p.message.is_empty(), "a problem without a message");
                if let Some(l) = p.line {
                    assert!(
                        (1..=lines + 1).contains(&l),
                        "problem at line {l} of {lines}"
                    );
                }
            }
            let _ = errors.to_string();
            return;
        }
    };
    // The version hashes the content, not the layout: a trailing comment keeps it.
    let again = Schema::from_toml(&format!("{source}\n# fuzz\n"))
        .expect("a valid schema with a comment appended stays valid");
    assert_eq!(
        again.hash, schema.hash,
        "a comment changed the schema version"
    );
    assert!(!schema.kinds.is_empty());
    for k in schema.kinds.values() {
        if let Some(ex) = &k.example {
            assert!(k.matches(ex), "kind {}: its example does not match", k.name);
        }
        if let Some(p) = &k.parent {
            assert!(schema.kind(p).is_some(), "kind {}: unknown parent", k.name);
        }
        let chain = schema.ancestry(&k.name);
        assert!(chain.len() <= schema.kinds.len(), "parent chain loops");
        // The pattern is a whole regular expression, matched as a whole: the loader wraps
        // it in `^(?:…)$`, which a fragment such as `a)|(b` would escape.
        if let Some(p) = &k.pattern {
            assert!(
                regex::Regex::new(p).is_ok(),
                "kind {}: pattern `{p}` is not a regular expression of its own",
                k.name
            );
        }
    }
    for op in schema.operations.values() {
        assert!(
            schema.kind(&op.target).is_some(),
            "operation without target"
        );
        assert!(op.signoffs.implementer >= 1 && op.max_targets >= 1);
        for p in &op.params {
            if let Some(pat) = &p.pattern {
                assert!(
                    regex::Regex::new(pat).is_ok(),
                    "param {}: pattern `{pat}` is not a regular expression of its own",
                    p.name
                );
            }
        }
        for w in &op.waves {
            let text = w.to_string();
            assert_eq!(
                WaveSize::parse(&text).ok(),
                Some(*w),
                "wave `{text}` does not read back"
            );
        }
        for total in [0, 1, 2, 3, 10, 99, 1000, op.max_targets.min(1_000_000)] {
            let waves = plan_waves(total, &op.waves);
            let mut at = 0;
            for (i, w) in waves.iter().enumerate() {
                assert_eq!(w.number as usize, i + 1);
                assert_eq!(w.start, at, "waves leave a gap");
                assert!(w.end > w.start, "an empty wave");
                at = w.end;
            }
            assert_eq!(at, total, "waves do not cover the targets");
            assert!(waves.len() <= op.waves.len() + 1);
        }
    }
}

/// Change numbers (`CHG-12`, `12`), pasted target lists, `kind:id` lines and the API's
/// JSON selectors.
pub fn selector_ids(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let schema = schema();

    match change_id(&text) {
        Ok(n) => {
            assert_eq!(
                change_id(&number(n)).ok(),
                Some(n),
                "CHG-{n} does not read back"
            );
            assert_eq!(change_id(&n.to_string()).ok(), Some(n));
        }
        Err(AppError::Client { message, .. }) => bounded("change number", &message),
        Err(e) => panic!("change number: not a client error: {e}"),
    }

    let ids = Selector::ids_from_text(&text);
    assert!(ids.len() <= text.lines().count());
    for id in &ids {
        assert!(!id.is_empty() && id.trim() == id && !id.starts_with('#'));
        assert!(!id.contains('\n'));
    }

    // Each line as the resolver reads it: trimmed, then an optional `kind:` claim.
    for line in text.lines() {
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        let (claimed, id) = split_claimed_kind(input);
        match claimed {
            Some(k) => {
                assert!(!k.is_empty());
                let rest = input
                    .strip_prefix(k)
                    .and_then(|r| r.strip_prefix(':'))
                    .expect("the claimed kind is the line's prefix");
                assert_eq!(id, rest.trim());
                assert!(!id.is_empty(), "`{input}`: a claimed kind with an empty ID");
            }
            None => assert_eq!(id, input),
        }
        for k in schema.kinds_matching(id) {
            if let Some(p) = &k.prefix {
                assert!(id.starts_with(p.as_str()) && id.len() > p.len());
            }
        }
    }

    // The API's selector: what is stored reads back as itself.
    if let Ok(sel) = serde_json::from_str::<Selector>(&text) {
        let stored = serde_json::to_string(&sel).expect("a selector serialises");
        let back: Selector = serde_json::from_str(&stored).expect("a stored selector reads back");
        assert_eq!(back, sel);
        assert_eq!(sel.is_empty(), sel.ids.is_empty() && !sel.has_query());
    }
}

/// One NDJSON body of an inventory import, split into lines as the handler splits it;
/// each line parsed and checked as the importer does before it looks at the inventory.
pub fn import_line(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        return; // the handler refuses a line that is not UTF-8 before parsing
    };
    let schema = schema();
    for line in body.split('\n') {
        let l = match parse_line(line) {
            Ok(None) => {
                assert!(line.trim().is_empty(), "a non-blank line was skipped");
                continue;
            }
            Ok(Some(l)) => l,
            Err(message) => {
                bounded("invalid_json", &message);
                continue;
            }
        };
        let kind = match check_identity(schema, &l) {
            Ok(kind) => kind,
            Err((code, message)) => {
                assert!(
                    ["unknown_kind", "invalid_id", "pattern_mismatch"].contains(&code),
                    "{code}"
                );
                bounded(code, &message);
                continue;
            }
        };
        assert_eq!(kind.name, l.kind);
        assert!(kind.matches(&l.id));
        assert!(!l.id.is_empty() && !l.id.chars().any(char::is_whitespace));
        match check_attrs(kind, &l) {
            Ok(attrs) => {
                assert_eq!(attrs.len(), l.attrs.len());
                for (k, v) in &attrs {
                    assert!(kind.attributes.contains(k));
                    assert_eq!(l.attrs.get(k).and_then(Value::as_str), Some(v.as_str()));
                }
                // What is stored reads back as the same attributes.
                let stored = serde_json::to_string(&attrs).expect("attributes serialise");
                let back: std::collections::BTreeMap<String, String> =
                    serde_json::from_str(&stored).expect("stored attributes read back");
                assert_eq!(back, attrs);
            }
            Err((code, message)) => {
                assert!(
                    ["unknown_attribute", "invalid_attribute"].contains(&code),
                    "{code}"
                );
                bounded(code, &message);
            }
        }
    }
}

/// The new-change (and edit) form: the urlencoded body decoded as `web::Form` decodes
/// it, then turned into the service request by the page's own `to_request`.
pub fn change_form(data: &[u8]) {
    let Ok(form) = serde_urlencoded::from_bytes::<ChangeForm>(data) else {
        return; // actix answers 400 before the handler runs
    };
    let req = match to_request(&form) {
        Ok(r) => r,
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a reason");
            return;
        }
    };
    // Line numbers of the pasted IDs are the resolver's: one entry per line, in order.
    let lines: Vec<&str> = form.ids.lines().collect();
    assert!(req.targets.ids.len() <= lines.len());
    for (i, id) in req.targets.ids.iter().enumerate() {
        assert_eq!(id, lines[i].trim(), "line {} moved", i + 1);
    }
    assert!(req.targets.ids.last().map_or(true, |l| !l.is_empty()));
    match &req.targets.within {
        Some(scope) => {
            assert_eq!(scope.kind, form.scope_kind);
            assert!(!scope.ids.is_empty());
            assert!(scope.ids.iter().all(|s| !s.is_empty() && s.trim() == s));
        }
        None => assert!(form.scope_ids.trim().is_empty()),
    }
    for (k, v) in &req.targets.filter {
        assert!(k.trim() == k && v.trim() == v);
    }
    // The browser and the API reach the same service: the request, written as the API's
    // JSON, decodes to the same request.
    let api = json!({
        "title": req.title,
        "rationale": req.rationale,
        "requesting_team": req.requesting_team,
        "operation": req.operation,
        "params": req.params,
        "targets": req.targets,
        "expect": req.expect,
        "not_before": req.not_before.map(|t| t.to_rfc3339()),
        "not_after": req.not_after.map(|t| t.to_rfc3339()),
    });
    let back: CreateChange =
        serde_json::from_value(api).expect("the form's request is a valid API request");
    assert_eq!(back.targets, req.targets);
    assert_eq!(back.params, req.params);
    assert_eq!(back.expect, req.expect);
    assert_eq!(back.not_before, req.not_before);
    assert_eq!(back.not_after, req.not_after);
    assert_eq!(back.title, req.title);
    assert!(req
        .params
        .as_object()
        .is_some_and(|m| m.values().all(Value::is_string)));
}

/// The executor's answer. The first two bytes choose the status (100–999), the rest is
/// the body; the target is an app installation of the example schema.
pub fn webhook_answer(data: &[u8]) {
    let Some((head, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let code = 100 + u16::from_be_bytes(*head) % 900;
    let status = reqwest::StatusCode::from_u16(code).expect("100..=999 is a status");
    let (kind, id) = ("app_install", "0b1c2d3e-0000-4000-8000-000000000001");
    match parse_answer(status, body, kind, id) {
        Answer::Done => {
            assert!(status.is_success(), "{status} confirmed a target");
            let v: Value = serde_json::from_str(&String::from_utf8_lossy(body))
                .expect("a confirmation is JSON");
            assert_eq!(v["id"], id);
            assert_eq!(v["kind"], kind);
        }
        Answer::Retry(why) => {
            assert!(status.is_server_error(), "{status} retried");
            bounded("retry", &why);
        }
        Answer::Fail(why) => {
            assert!(!status.is_server_error(), "{status} failed at once");
            bounded("failure", &why);
        }
    }
}

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by its name, for the corpus test and the fuzz binaries.
pub const TARGETS: [(&str, Target); 5] = [
    ("schema_toml", schema_toml),
    ("selector_ids", selector_ids),
    ("import_line", import_line),
    ("change_form", change_form),
    ("webhook_answer", webhook_answer),
];
