//! The settings as documentation: the README's table and `.env.example`, rendered from
//! the declarations (a test fails when either file is stale).

use super::settings::{IfUnset, Type, SETTINGS};

/// The README's configuration table (between its `config:begin`/`config:end` markers).
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | type | default | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let var = match s.ty {
            Type::NamedSecret => format!("*(the operation's `{}`)*", s.var),
            _ => format!("`{}`", s.var),
        };
        let default = match s.default {
            IfUnset::Value(v) => format!("`{v}`"),
            IfUnset::Glossed(v, gloss) => format!("`{v}` ({gloss})"),
            IfUnset::Nothing(what) | IfUnset::Derived(what) => what.to_string(),
        };
        out.push_str(&format!(
            "| {var} | {} | {default} | {} |\n",
            s.ty.label(),
            s.doc
        ));
    }
    out
}

/// `.env.example`: every setting a deployment may set, commented out at its default.
pub fn env_example() -> String {
    let mut out = String::from(
        "# countersign's environment variables, each commented out at its default.\n\
         # Generated from src/config.rs by `countersign config --env-example`: edit the\n\
         # declarations there, not this file. countersign reads only its environment: load\n\
         # this file with your service manager (systemd EnvironmentFile=) or `set -a; . ./.env`.\n",
    );
    for s in SETTINGS.iter().filter(|s| s.field != "tests") {
        out.push('\n');
        let unset = match s.default {
            IfUnset::Value(_) => String::new(),
            IfUnset::Glossed(_, gloss) => format!(" Default: {gloss}."),
            IfUnset::Nothing("unset") => String::new(),
            IfUnset::Nothing(what) => format!(" Unset: {what}."),
            IfUnset::Derived(what) => format!(" Default: {what}."),
        };
        let doc = s.doc.trim_end_matches('.');
        let text = format!("{}. Type: {}.{unset}", capitalised(doc), s.ty.label()).replace('`', "");
        for line in wrap(&text, 86) {
            out.push_str(&format!("# {line}\n"));
        }
        let var = match s.ty {
            Type::NamedSecret => "CS_EXAMPLE_HOOK_SECRET",
            _ => s.var,
        };
        let value = s.default.value().unwrap_or_default();
        let value = if value.contains([' ', '<', '>']) {
            format!("\"{value}\"")
        } else {
            value.to_string()
        };
        out.push_str(&format!("#{var}={value}\n"));
    }
    out
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Words into lines of at most `width` characters (a longer word gets its own line).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
