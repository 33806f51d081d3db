//! What a change will do, named once for every screen, mail, CSV and API answer. A
//! rollback runs the inverse of its original operation, so it is shown as that inverse
//! ("Restore app installations — restore deleted entities"), never as the deletion it
//! undoes.

use serde::Serialize;

use super::schema::{Effect, Operation, Schema};

/// The operation as it executes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executes {
    /// "Restore app installations"
    pub label: String,
    pub effect: Effect,
    /// "restore deleted entities", "soft delete, restorable for 30 days"
    pub effect_text: String,
    pub destructive: bool,
    /// For a rollback: the label of the operation it undoes.
    pub undoes: Option<String>,
}

/// How executing a change of `op` (a rollback of one when `rollback`) is named.
/// `None` when a rollback has no inverse (it cannot exist, but is never shown wrongly).
pub fn executes(schema: &Schema, op: &Operation, rollback: bool) -> Option<Executes> {
    if !rollback {
        return Some(Executes {
            label: op.label.clone(),
            effect: op.effect,
            effect_text: effect_text(op.effect, Some(op)),
            destructive: op.effect.is_destructive(),
            undoes: None,
        });
    }
    let effect = op.rollback_effect()?;
    if effect == Effect::Webhook {
        // A webhook's rollback calls the operation its `undo` names.
        let undo = schema.webhook_called(op, true)?;
        return Some(Executes {
            label: undo.label.clone(),
            effect,
            effect_text: calls(undo),
            destructive: false,
            undoes: Some(op.label.clone()),
        });
    }
    let plural = schema
        .kind(&op.target)
        .map(|k| k.plural.to_lowercase())
        .unwrap_or_else(|| op.target.clone());
    // The catalogue's own name for this effect on this kind, when it has one.
    let named = schema
        .operations
        .values()
        .find(|o| o.effect == effect && o.target == op.target && !o.cascade)
        .map(|o| o.label.clone());
    let label = match effect {
        Effect::Restore => named.unwrap_or_else(|| format!("Restore {plural}")),
        Effect::SetAttributes => format!("Put back the attributes “{}” changed", op.label),
        Effect::SoftDelete => format!("Delete again the {plural} “{}” brought back", op.label),
        Effect::Purge | Effect::Webhook => return None,
    };
    let effect_text = match effect {
        Effect::SetAttributes => "set attributes back to their previous values".to_string(),
        e => effect_text(e, None),
    };
    Some(Executes {
        label,
        effect,
        effect_text,
        destructive: effect.is_destructive(),
        undoes: Some(op.label.clone()),
    })
}

/// What a webhook rollback does: "calls Reprovision at the app vendor".
pub fn calls(undo: &Operation) -> String {
    format!("calls {}", undo.label)
}

/// The effect in plain words; a soft delete says how long it stays restorable.
pub fn effect_text(effect: Effect, op: Option<&Operation>) -> String {
    match (effect, op) {
        (Effect::SoftDelete, Some(o)) => format!(
            "soft delete, restorable for {} days{}",
            o.retention_days,
            if o.cascade {
                ", with everything below the targets"
            } else {
                ""
            }
        ),
        (e, _) => e.plain_words().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_toml(include_str!("../../config/schema.example.toml")).expect("schema")
    }

    #[test]
    fn a_rollback_of_an_uninstall_is_a_restore() {
        let s = schema();
        let op = s.operation("uninstall_app").unwrap();
        let plain = executes(&s, op, false).unwrap();
        assert_eq!(plain.effect, Effect::SoftDelete);
        assert!(plain.destructive);
        let rb = executes(&s, op, true).unwrap();
        assert_eq!(rb.label, "Restore app installations");
        assert_eq!(rb.effect, Effect::Restore);
        assert_eq!(rb.effect_text, "restore deleted entities");
        assert!(!rb.destructive);
        assert_eq!(rb.undoes.as_deref(), Some("Uninstall an app"));
    }

    #[test]
    fn every_reversible_operation_has_a_truthful_rollback_name() {
        let s = schema();
        for op in s.operations.values() {
            match executes(&s, op, true) {
                Some(rb) => {
                    assert_eq!(Some(rb.effect), op.rollback_effect(), "{}", op.name);
                    assert_ne!(rb.label, op.label, "{}", op.name);
                }
                None => assert!(!op.is_reversible(), "{}", op.name),
            }
        }
    }

    #[test]
    fn a_rollback_of_a_webhook_calls_its_undo() {
        let src = format!(
            "{}\n[operations.deprovision]\nlabel = \"Deprovision at the vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://h.example/d\"\nsecret_env = \"S\"\nundo = \"reprovision\"\n\n[operations.reprovision]\nlabel = \"Reprovision at the vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"https://h.example/r\"\nsecret_env = \"S\"\n",
            include_str!("../../config/schema.example.toml")
        );
        let s = Schema::from_toml(&src).expect("schema");
        let rb = executes(&s, s.operation("deprovision").unwrap(), true).unwrap();
        assert_eq!(rb.label, "Reprovision at the vendor");
        assert_eq!(rb.effect, Effect::Webhook);
        assert_eq!(rb.effect_text, "calls Reprovision at the vendor");
        assert!(!rb.destructive);
        assert_eq!(rb.undoes.as_deref(), Some("Deprovision at the vendor"));
        // The undo operation has no undo of its own.
        assert!(executes(&s, s.operation("reprovision").unwrap(), true).is_none());
    }
}
