//! The per-target rules and their descriptions on hand-written entities.

use super::*;
use crate::domain::execution::ChangeStep;

fn schema() -> Schema {
    Schema::from_toml(include_str!("../../../config/schema.example.toml")).expect("schema")
}

fn t(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn found(state: EntityState, attrs: &str) -> Found<'_> {
    Found {
        state,
        attrs,
        deleted_by: None,
        purge_after: None,
    }
}

fn rule(effect: Effect, params: &Attrs) -> Rule<'_> {
    Rule {
        effect,
        rollback: false,
        params,
        rollback_keys: &[],
    }
}

#[test]
fn a_soft_delete_says_when_it_may_be_purged() {
    let p = Attrs::new();
    let r = rule(Effect::SoftDelete, &p);
    let e = found(EntityState::Active, "{}");
    let now = t("2026-12-02 17:00");
    let o = decide(&r, e, None, now);
    assert_eq!(o, Outcome::Apply(EntityState::Deleted, "{}".into()));
    let fx = effect_of(&r, e, o, t("2027-01-01 17:00"), None);
    assert_eq!(fx.outcome, Standing::Applies);
    assert_eq!(
        fx.text,
        "soft-deleted; purged after 2027-01-01 unless restored"
    );
    let json = serde_json::to_value(&fx).unwrap();
    assert_eq!(json["type"], "soft_delete");
    assert_eq!(json["outcome"], "applies");
    assert_eq!(json["purge_after"], "2027-01-01T17:00:00");
    // Already deleted: skipped, and says by which change.
    let gone = Found {
        deleted_by: Some(7),
        ..found(EntityState::Deleted, "{}")
    };
    let o = decide(&r, gone, None, now);
    let fx = effect_of(&r, gone, o, now, None);
    assert_eq!(fx.outcome, Standing::Skipped);
    assert_eq!(fx.text, "skipped: already deleted by CHG-7");
    assert!(serde_json::to_value(&fx)
        .unwrap()
        .get("purge_after")
        .is_none());
}

#[test]
fn set_attributes_shows_now_and_after() {
    let mut p = Attrs::new();
    p.insert("tier".into(), serde_json::json!("platinum"));
    let r = rule(Effect::SetAttributes, &p);
    let e = found(EntityState::Active, r#"{"tier":"gold","url":"x"}"#);
    let o = decide(&r, e, None, t("2026-12-02 17:00"));
    let fx = effect_of(&r, e, o, t("2027-01-01 00:00"), None);
    assert_eq!(fx.text, "tier: gold → platinum");
    assert_eq!(fx.attributes().unwrap().len(), 1);
    // A deleted entity cannot be changed: the executor fails it, the preview says so.
    let d = found(EntityState::Deleted, "{}");
    let o = decide(&r, d, None, t("2026-12-02 17:00"));
    assert_eq!(
        effect_of(&r, d, o, t("2027-01-01 00:00"), None).text,
        "fails: the entity is deleted"
    );
}

#[test]
fn a_restore_names_the_state_and_the_deleting_change() {
    let p = Attrs::new();
    let r = rule(Effect::Restore, &p);
    let e = Found {
        deleted_by: Some(3),
        ..found(EntityState::Deleted, r#"{"app":"x"}"#)
    };
    let o = decide(&r, e, None, t("2026-12-02 17:00"));
    let fx = effect_of(&r, e, o, t("2027-01-01 00:00"), None);
    assert_eq!(fx.text, "restored to active; deleted by CHG-3");
    let json = serde_json::to_value(&fx).unwrap();
    assert_eq!(json["to_state"], "active");
    assert_eq!(json["deleted_by"], "CHG-3");
    // A purge deleted its attributes: the restore puts them back, and says which.
    let step = ChangeStep {
        before_attrs: r#"{"app":"x"}"#,
        after_attrs: "{}",
    };
    let e = Found {
        deleted_by: Some(3),
        ..found(EntityState::Deleted, "{}")
    };
    let o = decide(&r, e, Some(step), t("2026-12-02 17:00"));
    let fx = effect_of(&r, e, o, t("2027-01-01 00:00"), None);
    assert_eq!(
        fx.text,
        "restored to active; deleted by CHG-3; app: (none) → x"
    );
    let purged = found(EntityState::Purged, "{}");
    let o = decide(&r, purged, None, t("2026-12-02 17:00"));
    assert_eq!(
        effect_of(&r, purged, o, t("2027-01-01 00:00"), None).text,
        "fails: purged: it can no longer be restored"
    );
}

#[test]
fn a_purge_is_permanent_and_only_after_retention() {
    let p = Attrs::new();
    let r = rule(Effect::Purge, &p);
    let e = Found {
        purge_after: Some(t("2026-11-01 00:00")),
        ..found(EntityState::Deleted, "{}")
    };
    let now = t("2026-12-02 17:00");
    let o = decide(&r, e, None, now);
    assert_eq!(
        effect_of(&r, e, o, now, None).text,
        "purged permanently; retention ended 2026-11-01"
    );
    let early = Found {
        purge_after: Some(t("2027-01-01 00:00")),
        ..e
    };
    let o = decide(&r, early, None, now);
    assert!(matches!(o, Outcome::Fail(_)));
    assert!(effect_of(&r, early, o, now, None)
        .text
        .starts_with("fails: still within its retention period"));
}

#[test]
fn a_cascade_names_the_parent_that_pulled_the_child_in() {
    let s = schema();
    let op = s.operation("decommission_site").unwrap();
    let c = cascaded_from(&s, op, "app_install", "org-00000001/site-a").unwrap();
    assert_eq!(
        (c.kind.as_str(), c.id.as_str(), c.parent),
        ("site", "site-a", true)
    );
    assert!(cascaded_from(&s, op, "site", "org-00000001").is_none());
    // Not a cascading operation: nothing pulled in.
    let plain = s.operation("uninstall_app").unwrap();
    assert!(cascaded_from(&s, plain, "app_install", "org-1/site-a").is_none());
    let d = Detail::SoftDelete {
        purge_after: Some(t("2027-01-01 00:00")),
    };
    assert_eq!(
        describe(&d, Standing::Applies, None, Some(&c)),
        "soft-deleted with its parent cloud site site-a (cascade); purged after 2027-01-01 unless restored"
    );
    let r = Detail::Restore {
        to_state: Some(EntityState::Active),
        deleted_by: None,
        attributes: vec![],
    };
    assert_eq!(
        describe(&r, Standing::Applies, None, Some(&c)),
        "restored to active with its parent cloud site site-a (cascade)"
    );
    assert_eq!(
        describe(&r, Standing::Skipped, Some("already active"), Some(&c)),
        "skipped: already active; in the list with its parent cloud site site-a (cascade)"
    );
}

#[test]
fn webhook_hosts() {
    assert_eq!(
        endpoint_host("https://hooks.example.net/x?y"),
        "hooks.example.net"
    );
    assert_eq!(
        endpoint_host("http://u:p@127.0.0.1:8080/h"),
        "127.0.0.1:8080"
    );
    let d = Detail::bare(Effect::Webhook, "hooks.example.net");
    assert_eq!(
        describe(&d, Standing::Applies, None, None),
        "sent to the external executor at hooks.example.net"
    );
}

#[test]
fn what_an_execution_did_is_read_from_its_version_row() {
    let w = Written {
        after_state: EntityState::Deleted,
        before_attrs: "{}",
        after_attrs: "{}",
        at: t("2026-12-01 10:00"),
    };
    let e = Found {
        deleted_by: Some(4),
        purge_after: Some(t("2026-12-31 10:00")),
        ..found(EntityState::Deleted, "{}")
    };
    let fx = effect_done(Effect::SoftDelete, w, e, true, 30, &[], None);
    assert_eq!(fx.outcome, Standing::Done);
    assert_eq!(
        fx.text,
        "soft-deleted; purged after 2026-12-31 unless restored"
    );
    let w = Written {
        after_state: EntityState::Active,
        before_attrs: r#"{"version":"1"}"#,
        after_attrs: r#"{"version":"2"}"#,
        at: t("2026-12-01 10:00"),
    };
    let keys = vec!["version".to_string()];
    let fx = effect_done(Effect::SetAttributes, w, e, false, 30, &keys, None);
    assert_eq!(fx.text, "version: 1 → 2");
}

#[test]
fn a_bulk_restore_goes_back_to_its_point() {
    let e = found(EntityState::Deleted, r#"{"a":"2"}"#);
    assert_eq!(
        restore_to_point(e, Some((EntityState::Active, r#"{"a":"1"}"#))),
        Outcome::Apply(EntityState::Active, r#"{"a":"1"}"#.into())
    );
    assert!(matches!(
        restore_to_point(e, Some((EntityState::Deleted, "{}"))),
        Outcome::Skip(_)
    ));
    let active = found(EntityState::Active, "{}");
    assert_eq!(
        restore_to_point(active, None),
        Outcome::Skip("already as it was at that point".into())
    );
}
