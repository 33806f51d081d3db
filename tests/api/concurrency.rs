use std::collections::BTreeSet;
use std::sync::Arc;

use countersign::db::{audit, changes as repo};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{inst, TestApp};

/// Race sign-offs from five people against author edits (which flip the target list,
/// and so the fingerprint) and re-resolutions. Afterwards, replay the change's audit
/// trail: every `approved` event must be backed by current sign-offs from distinct people
/// on both sides, nobody on both, and the stored rows must agree with the final state.
async fn signoffs_race_edits_and_reresolutions(app: TestApp) {
    app.load_fixture().await;
    let app = Arc::new(app);
    let set_a = json!({"ids": [inst(1), inst(2)]});
    let set_b = json!({"ids": [inst(1), inst(2), inst(3)]});
    for round in 0..3 {
        let (id, _) = app.submitted("ana", "uninstall_app", set_a.clone()).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..60usize {
            let app = app.clone();
            let (set_a, set_b) = (set_a.clone(), set_b.clone());
            tasks.spawn(async move {
                let who = ["ana", "ben", "carla", "dev", "eli", "ana"][i % 6];
                let (status, body) = match i % 6 {
                    0..=4 => {
                        let side = if i % 6 < 2 {
                            "requester"
                        } else {
                            "implementer"
                        };
                        let v = app.change(id).await;
                        let fp = v["fingerprint"].as_str().unwrap_or_default().to_string();
                        app.sign(id, who, side, &fp, None).await
                    }
                    _ if i % 12 == 5 => {
                        let targets = if (i / 12) % 2 == 0 { set_b } else { set_a };
                        app.patch(
                            &format!("/api/v1/changes/{id}"),
                            "ana",
                            json!({"targets": targets}),
                        )
                        .await
                    }
                    _ => {
                        app.post(&format!("/api/v1/changes/{id}/resolve"), "carla", json!({}))
                            .await
                    }
                };
                (status, body)
            });
        }
        let mut counts = std::collections::BTreeMap::new();
        while let Some(r) = tasks.join_next().await {
            let (status, body) = r.unwrap();
            assert!(
                [
                    StatusCode::OK,
                    StatusCode::CREATED,
                    StatusCode::CONFLICT,
                    StatusCode::FORBIDDEN
                ]
                .contains(&status),
                "unexpected {status}: {body}"
            );
            *counts.entry(status.as_u16()).or_insert(0) += 1;
        }
        assert!(
            counts.contains_key(&201),
            "round {round}: no sign-off went through: {counts:?}"
        );
        check_invariants(&app, id);
    }
}

fn check_invariants(app: &TestApp, id: i64) {
    let mut conn = app.conn();
    let change = repo::get(&mut conn, id).unwrap().unwrap();
    let fp = change.fingerprint.clone().unwrap();
    let rows = repo::signoffs(&mut conn, id).unwrap();
    for (s, email, _) in &rows {
        if !s.stale {
            assert_eq!(
                s.fingerprint, fp,
                "a current sign-off by {email} is for another fingerprint"
            );
        }
    }
    let current = |side: &str| -> BTreeSet<String> {
        rows.iter()
            .filter(|(s, _, _)| s.side.as_str() == side && !s.stale && s.fingerprint == fp)
            .map(|(_, e, _)| e.clone())
            .collect()
    };
    let (r, i) = (current("requester"), current("implementer"));
    let approved_now = !r.is_empty() && !i.is_empty() && r.is_disjoint(&i);
    match change.state.as_str() {
        "approved" => assert!(
            approved_now,
            "approved without current sign-offs: {r:?} {i:?}"
        ),
        "awaiting_signoff" => assert!(
            !approved_now,
            "enough sign-offs but not approved: {r:?} {i:?}"
        ),
        other => panic!("unexpected state {other}"),
    }
    // Replay the audit trail.
    let events = audit::for_change(&mut conn, id).unwrap();
    let mut current_fp = String::new();
    let mut signs: Vec<(String, String)> = Vec::new(); // (side, actor) on current_fp
    let mut approvals = 0;
    for e in events {
        let d: Value = serde_json::from_str(&e.detail).unwrap();
        match e.action.as_str() {
            "created" => current_fp = d["fingerprint"].as_str().unwrap().to_string(),
            "resolved" if d["changed"] == true => {
                current_fp = d["fingerprint"].as_str().unwrap().to_string();
                signs.clear();
            }
            "signed" => {
                assert_eq!(
                    d["fingerprint"].as_str().unwrap(),
                    current_fp,
                    "sign-off recorded for a non-current fingerprint"
                );
                signs.push((d["side"].as_str().unwrap().to_string(), e.actor.clone()));
            }
            "approved" => {
                approvals += 1;
                assert_eq!(d["fingerprint"].as_str().unwrap(), current_fp);
                let who = |side: &str| -> BTreeSet<&String> {
                    signs
                        .iter()
                        .filter(|(s, _)| s == side)
                        .map(|(_, a)| a)
                        .collect()
                };
                let (r, i) = (who("requester"), who("implementer"));
                assert!(
                    !r.is_empty() && !i.is_empty(),
                    "approved with requester {r:?} implementer {i:?}"
                );
                assert!(
                    r.is_disjoint(&i),
                    "someone counted on both sides: {r:?} {i:?}"
                );
            }
            _ => {}
        }
    }
    let _ = approvals;
}

/// Concurrent sign-offs by different implementers on a two-implementer policy: exactly
/// one approval event, never a double approval.
async fn concurrent_final_signoffs_approve_once(app: TestApp) {
    app.load_fixture().await;
    let app = Arc::new(app);
    let (id, fp) = app
        .submitted(
            "ana",
            "delete_site",
            json!({"ids": [crate::helpers::site(5)]}),
        )
        .await;
    app.sign(id, "ana", "requester", &fp, None).await;
    let mut tasks = tokio::task::JoinSet::new();
    for who in ["carla", "dev", "eli", "carla", "dev", "eli"] {
        let app = app.clone();
        let fp = fp.clone();
        tasks.spawn(async move { app.sign(id, who, "implementer", &fp, Some(1)).await.0 });
    }
    let mut created = 0;
    while let Some(s) = tasks.join_next().await {
        let s = s.unwrap();
        assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{s}");
        if s == StatusCode::CREATED {
            created += 1;
        }
    }
    assert_eq!(
        created, 2,
        "the second implementer approves; later ones find it approved"
    );
    let mut conn = app.conn();
    let approvals = audit::for_change(&mut conn, id)
        .unwrap()
        .iter()
        .filter(|e| e.action == "approved")
        .count();
    assert_eq!(approvals, 1);
    assert_eq!(app.change(id).await["state"], "approved");
}

both_backends!(
    signoffs_race_edits_and_reresolutions,
    concurrent_final_signoffs_approve_once
);
