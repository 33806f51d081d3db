use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, site, TestApp};

async fn signoff_rules(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    // Wrong fingerprint: 409 with the current one.
    let (s, v) = app
        .sign(id, "carla", "implementer", "sha256:0000", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"]["details"]["current_fingerprint"], fp);
    // Not in the side's team.
    let (s, v) = app.sign(id, "carla", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "not_in_team");
    let (s, _) = app.sign(id, "olga", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Requester signs; twice is refused.
    assert_eq!(
        app.sign(id, "ana", "requester", &fp, None).await.0,
        StatusCode::CREATED
    );
    let (s, v) = app.sign(id, "ana", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], "already_signed");
    let v = app.change(id).await;
    assert_eq!(v["state"], "awaiting_signoff");
    assert_eq!(v["requester_side"]["missing"], 0);
    assert_eq!(v["implementer_side"]["missing"], 1);
    // Implementer approves.
    let (s, v) = app.sign(id, "carla", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved");
    assert!(v["approved_at"].is_string());
    // No more sign-offs on an approved change.
    let (s, v) = app.sign(id, "dev", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(v["error"]["details"]["state"], "approved");
}

/// One person never counts on both sides; the author never signs as implementer; a member
/// of the implementing team never counts on the requester side.
async fn separation_of_duties(app: TestApp) {
    app.load_fixture().await;
    // Make carla a member of both teams, so only the rule (not membership) stops her.
    app.join("carla", "app-owners");
    let (id, fp) = app
        .submitted("carla", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (s, v) = app.sign(id, "carla", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "separation_of_duties");
    assert!(v["error"]["message"].as_str().unwrap().contains("author"));
    // In both teams: never on the requester side (that would be one team signing alone).
    let (s, v) = app.sign(id, "carla", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "separation_of_duties");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("implementing team `platform-ops`"),
        "{v}"
    );

    // Ben signs as requester, then joins the implementing team: he cannot sign the
    // implementer side too, and his requester sign-off no longer counts.
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    assert_eq!(
        app.sign(id, "ben", "requester", &fp, None).await.0,
        StatusCode::CREATED
    );
    app.join("ben", "platform-ops");
    let (s, v) = app.sign(id, "ben", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never counts on two sides"),
        "{v}"
    );
    let (s, v) = app.sign(id, "carla", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["state"], "awaiting_signoff",
        "ben's requester sign-off must not count"
    );
    assert_eq!(v["requester_side"]["missing"], 1);
    let (_, v) = app.sign(id, "ana", "requester", &fp, None).await;
    assert_eq!(v["state"], "approved");
}

async fn typed_count_and_two_implementers(app: TestApp) {
    app.load_fixture().await;
    // delete_site: confirm_above = 0 and two implementers.
    let (id, fp) = app
        .submitted("ana", "delete_site", json!({"ids": [site(5)]}))
        .await;
    assert_eq!(
        app.sign(id, "ana", "requester", &fp, None).await.0,
        StatusCode::CREATED
    );
    let (s, v) = app.sign(id, "carla", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "confirm_count_required");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(2)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["error"]["code"], "confirm_count_mismatch");
    assert_eq!(v["error"]["details"]["expected"], 1);
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(1)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["state"], "awaiting_signoff");
    assert_eq!(v["implementer_side"]["missing"], 1);
    assert_eq!(v["confirm_count_required"], true);
    let (s, v) = app.sign(id, "dev", "implementer", &fp, Some(1)).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(v["state"], "approved");
    let signers: Vec<&str> = v["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["by"]["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        signers,
        vec!["ana@req.example", "carla@ops.example", "dev@ops.example"]
    );
}

/// An edit of an approved change un-approves it; sign-offs go stale but stay listed.
async fn edit_after_approval(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    app.sign(id, "ana", "requester", &fp, None).await;
    app.sign(id, "carla", "implementer", &fp, None).await;
    // A title edit does not change the targets, but the signers read the old text: their
    // sign-offs go stale and the change needs them again.
    let (s, v) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"title": "Better title"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["state"], "awaiting_signoff", "{v}");
    assert_eq!(v["fingerprint"], fp);
    let v = app.change(id).await;
    assert!(v["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["stale"] == true));
    app.sign(id, "ana", "requester", &fp, None).await;
    let (_, v) = app.sign(id, "carla", "implementer", &fp, None).await;
    assert_eq!(v["state"], "approved");
    // A target edit does.
    let (_, v) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"targets": {"ids": [inst(1), inst(3)]}}),
        )
        .await;
    assert_eq!(v["state"], "awaiting_signoff");
    assert_ne!(v["fingerprint"], fp);
    assert!(v["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["stale"] == true));
    let fp2 = v["fingerprint"].as_str().unwrap().to_string();
    // The same people may sign the new list (on their own sides).
    assert_eq!(
        app.sign(id, "ana", "requester", &fp2, None).await.0,
        StatusCode::CREATED
    );
    let (_, v) = app.sign(id, "carla", "implementer", &fp2, None).await;
    assert_eq!(v["state"], "approved");
    // An edit that introduces an error sends it back to draft.
    let (_, v) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"targets": {"ids": [site(1)]}}),
        )
        .await;
    assert_eq!(v["state"], "draft");
}

both_backends!(
    signoff_rules,
    separation_of_duties,
    typed_count_and_two_implementers,
    edit_after_approval
);

/// A new schema version (here: a stricter policy) changes every open change's
/// fingerprint at start-up: approvals return to awaiting sign-off; a change whose
/// operation left the schema goes back to draft.
async fn schema_change_makes_signoffs_stale(app: TestApp) {
    use countersign::db::{audit, changes as repo};
    use countersign::domain::schema::{Schema, EXAMPLE_SCHEMA};
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    app.sign(id, "ana", "requester", &fp, None).await;
    assert_eq!(
        app.sign(id, "carla", "implementer", &fp, None).await.1["state"],
        "approved"
    );
    let (st, v) = app.post("/api/v1/changes", "ana", json!({"title": "v", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(2)]}})).await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{v}");
    let other = v["id"].as_i64().unwrap();
    assert_eq!(
        app.post(&format!("/api/v1/changes/{other}/submit"), "ana", json!({}))
            .await
            .0,
        reqwest::StatusCode::OK
    );

    let src = EXAMPLE_SCHEMA.replace("confirm_above = 20      #", "confirm_above = 0       #");
    let schema = Schema::from_toml(&src).unwrap();
    countersign::web::prepare_database(&app.pool, &schema, &src).unwrap();
    let mut conn = app.conn();
    let c = repo::get(&mut conn, id).unwrap().unwrap();
    assert_eq!(c.state.as_str(), "awaiting_signoff");
    assert_eq!(c.schema_hash, schema.hash);
    assert_ne!(c.fingerprint.as_deref(), Some(fp.as_str()));
    assert!(repo::signoffs(&mut conn, id)
        .unwrap()
        .iter()
        .all(|(s, _, _)| s.stale));
    let events = audit::for_change(&mut conn, id).unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "resolved" && e.detail.contains("the schema changed")));

    // An operation removed from the schema: its open changes cannot be signed any more.
    let mut cut = String::new();
    let mut skip = false;
    for line in src.lines() {
        if line.starts_with("[operations.set_app_version") {
            skip = true;
        } else if line.starts_with('[') {
            skip = false;
        }
        if !skip {
            cut.push_str(line);
            cut.push('\n');
        }
    }
    let schema2 = Schema::from_toml(&cut).unwrap();
    countersign::web::prepare_database(&app.pool, &schema2, &cut).unwrap();
    assert_eq!(
        repo::get(&mut conn, other).unwrap().unwrap().state.as_str(),
        "draft"
    );
}

both_backends!(schema_change_makes_signoffs_stale);
