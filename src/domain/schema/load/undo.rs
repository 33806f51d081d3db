//! A webhook operation's `undo` (issue #12): the operation its rollback calls. Checked
//! across the catalogue once every operation is read: the named operation exists, is
//! another webhook operation, acts on the same kind and is implemented by the same team.
//! The undo operation stays an operation of its own (it may be requested directly).

use std::collections::BTreeMap;

use super::super::Effect;
use super::{header_line, Problems, RawOperation};

const WEBHOOK: &str = "webhook";

pub(super) fn undos(source: &str, ops: &BTreeMap<String, RawOperation>, p: &mut Problems) {
    for (name, o) in ops {
        let Some(undo) = &o.undo else { continue };
        let line = header_line(source, "operations", name);
        let mut push = |field: &str, message: String| {
            p.push(format!("operations.{name}.{field}"), line, message)
        };
        if o.effect.as_deref().is_some_and(|e| e != WEBHOOK) {
            push(
                "undo",
                format!(
                    "only a webhook operation names an undo (its inverse external call); a {} is undone by its built-in inverse",
                    o.effect.as_deref().unwrap_or_default()
                ),
            );
            continue;
        }
        if undo == name {
            push(
                "undo",
                "an operation cannot be its own undo: name the webhook operation that reverses this call".into(),
            );
            continue;
        }
        let Some(u) = ops.get(undo) else {
            let known = ops
                .iter()
                .filter(|(n, x)| *n != name && x.effect.as_deref() == Some(WEBHOOK))
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>();
            let known = if known.is_empty() {
                "the schema has no other webhook operation".to_string()
            } else {
                format!("webhook operations: {}", known.join(", "))
            };
            push("undo", format!("unknown operation `{undo}` ({known})"));
            continue;
        };
        if u.effect.as_deref().is_some_and(|e| e != WEBHOOK) {
            push(
                "undo",
                format!(
                    "`{undo}` is a {} operation: the undo of a webhook call is another webhook operation",
                    u.effect.as_deref().unwrap_or_default()
                ),
            );
        }
        if u.target.is_some() && u.target != o.target {
            push(
                "undo",
                format!(
                    "`{undo}` acts on `{}` and this operation on `{}`: the undo acts on the same kind",
                    u.target.as_deref().unwrap_or_default(),
                    o.target.as_deref().unwrap_or_default()
                ),
            );
        }
        if u.implemented_by.is_some() && u.implemented_by != o.implemented_by {
            push(
                "undo",
                format!(
                    "`{undo}` is implemented by `{}` and this operation by `{}`: the team that makes a call also carries out its undo",
                    u.implemented_by.as_deref().unwrap_or_default(),
                    o.implemented_by.as_deref().unwrap_or_default()
                ),
            );
        }
        if o.irreversible_signoffs.is_some() {
            push(
                "irreversible_signoffs",
                format!("this operation can be rolled back (its undo is `{undo}`): extra sign-offs are only for operations nothing can undo"),
            );
        }
    }
}

/// The undo an operation keeps: only a webhook operation's ([`undos`] reports any other).
pub(super) fn undo_of(o: &RawOperation, effect: Option<Effect>) -> Option<String> {
    o.undo.clone().filter(|_| effect == Some(Effect::Webhook))
}
