//! Authors edit their drafts through the pages (split from `web.rs`).

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, site, TestApp};
use crate::web::sign_in;

async fn authors_edit_their_drafts(app: TestApp) {
    app.load_fixture().await;
    // A draft with the outage's mistake, created through the API.
    let v = app
        .create("ana", "uninstall_app", json!({"ids": [inst(1), site(2)]}))
        .await;
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["error_count"], 1, "{v}");
    let b = sign_in(&app, "ana").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains("id=\"edit\""));
    let (s, form) = b.get(&format!("/changes/CHG-{id}/edit")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(form.contains(&format!("Edit CHG-{id}")));
    assert!(form.contains(&site(2)), "the IDs are prefilled");
    assert!(
        form.contains("is a Cloud site"),
        "with the current problems"
    );
    let ids = format!("{}\n{}", inst(1), inst(3));
    let (s, loc, _) = b
        .post(
            &format!("/changes/CHG-{id}/edit"),
            &[
                ("csrf", b.csrf.as_str()),
                ("operation", "uninstall_app"),
                ("requesting_team", "app-owners"),
                ("title", "Fixed list"),
                ("rationale", "Two installations"),
                ("ids", ids.as_str()),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{loc}");
    let c = app.change(id).await;
    assert_eq!(c["error_count"], 0, "{c}");
    assert_eq!(c["title"], "Fixed list");
    assert_eq!(c["summary"]["targets"], 2);
    // Only the author edits.
    let carla = sign_in(&app, "carla").await;
    let (s, page) = carla.get(&format!("/changes/CHG-{id}/edit")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(page.contains("Only the author"));
}

both_backends!(authors_edit_their_drafts);
