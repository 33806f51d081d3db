//! A team's hooks, managed: every problem of a bad hook named, members and admins only,
//! addresses masked, at most 20 per team, deletion audited; and the team's page.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};
use crate::hooks::{add_hook, app, delivered, Receiver};

async fn hooks_are_managed_by_their_team(app: TestApp) {
    let base = "/api/v1/teams/platform-ops/hooks";
    // Every problem at once, each named by its field.
    let (s, v) = app
        .post(
            base,
            "carla",
            json!({"name": "", "format": "irc", "url": "ftp://x", "events": ["approve"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"]["code"], "invalid_hook");
    let problems: Vec<&str> = v["error"]["details"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 4, "{v}");
    assert!(problems.iter().any(|p| p.starts_with("name:")));
    assert!(problems.iter().any(|p| p.starts_with("url:")));
    assert!(problems
        .iter()
        .any(|p| p.contains("`approve` is not an event")));
    assert!(problems.iter().any(|p| p.contains("`irc` is not one of")));
    let (s, v) = app
        .post(base, "carla", json!({"name": "x", "format": "slack", "url": "https://h/x", "events": ["approved"], "colour": "red"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("colour"),
        "{v}"
    );

    // Members and admins manage a team's hooks; nobody else sees them.
    let h = add_hook(&app, "carla", "platform-ops", json!({"name": "ops", "format": "slack",
        "url": "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX", "events": ["approved", "approved"]})).await;
    let id = h["hook"]["id"].as_i64().unwrap();
    assert_eq!(h["hook"]["events"], json!(["approved"]));
    for who in ["otto", "ana"] {
        let (s, v) = app.get(base, who).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {v}");
        assert_eq!(v["error"]["code"], "not_in_team");
        let (s, _) = app
            .send(reqwest::Method::DELETE, &format!("{base}/{id}"), who, None)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, v) = app.get(base, "root").await;
    assert_eq!(s, StatusCode::OK);
    let listed = v.to_string();
    assert!(
        !listed.contains("XXXXSECRETXXXX"),
        "the address is masked: {listed}"
    );
    assert_eq!(v["hooks"][0]["url"], "https://hooks.slack.com/services/…");
    let (s, v) = app.get("/api/v1/teams/nope/hooks", "root").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, _) = app
        .get(
            &format!("/api/v1/teams/outsiders/hooks/{id}/deliveries"),
            "root",
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another team's hook is not found");
    let (s, v) = app.get(&format!("{base}/abc/deliveries"), "root").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // At most 20 per team.
    for n in 1..20 {
        add_hook(&app, "dev", "platform-ops", json!({"name": format!("h{n}"), "format": "json", "url": "http://127.0.0.1:9/x", "events": ["approved"]})).await;
    }
    let (s, v) = app
        .post(base, "dev", json!({"name": "one too many", "format": "json", "url": "http://127.0.0.1:9/x", "events": ["approved"]}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 20"),
        "{v}"
    );

    // Deleting: gone from the list, its deliveries not found, audited.
    let (s, v) = app
        .send(
            reqwest::Method::DELETE,
            &format!("{base}/{id}"),
            "eli",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, _) = app
        .send(
            reqwest::Method::DELETE,
            &format!("{base}/{id}"),
            "eli",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, v) = app.get(base, "carla").await;
    assert_eq!(v["hooks"].as_array().unwrap().len(), 19);
    let (s, _) = app.get(&format!("{base}/{id}/deliveries"), "carla").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let actions: Vec<String> = {
        use countersign::db::schema::audit_events::dsl::*;
        use diesel::prelude::*;
        let mut conn = app.conn();
        audit_events
            .filter(action.like("hook_%"))
            .select(action)
            .load(&mut *conn)
            .unwrap()
    };
    assert_eq!(actions.iter().filter(|a| *a == "hook_created").count(), 20);
    assert_eq!(actions.iter().filter(|a| *a == "hook_deleted").count(), 1);
}

/// The team's page: the form re-shown with its problems and what was typed, a JSON
/// hook's secret shown once, test and delete buttons, other teams' pages refused.
async fn the_hooks_page(backend: Backend) {
    let app = app(backend).await;
    let r = Receiver::start().await;
    let b = crate::web::sign_in(&app, "carla").await;
    let (s, settings) = b.get("/settings").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        settings.contains("href=\"/teams/platform-ops/hooks\""),
        "settings link the team's hooks"
    );
    let (s, page) = b.get("/teams/platform-ops/hooks").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"no-hooks\""));
    let url = r.url("page");
    // Bad input: the form again, with every problem and what was typed.
    let (s, _, html) = b
        .post(
            "/teams/platform-ops/hooks",
            &[
                ("csrf", &b.csrf),
                ("name", "pager <b>"),
                ("format", "json"),
                ("url", "gopher://x"),
                ("events", "approved"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{html}");
    assert!(
        html.contains("is not an http:// or https:// address"),
        "{html}"
    );
    assert!(
        html.contains("value=\"pager &lt;b&gt;\""),
        "typed name kept, escaped"
    );
    assert!(html.contains("value=\"gopher://x\""));
    assert!(
        html.contains("value=\"approved\" checked"),
        "ticked events kept"
    );
    // Without a CSRF token: refused.
    let (s, _, _) = b
        .post(
            "/teams/platform-ops/hooks",
            &[
                ("name", "x"),
                ("format", "json"),
                ("url", url.as_str()),
                ("events", "approved"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A JSON hook: its secret on the answer page, once.
    let (s, _, html) = b
        .post(
            "/teams/platform-ops/hooks",
            &[
                ("csrf", &b.csrf),
                ("name", "pager"),
                ("format", "json"),
                ("url", url.as_str()),
                ("events", "approved"),
                ("events", "execution_halted"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("id=\"new-secret\""), "{html}");
    let (_, list) = app.get("/api/v1/teams/platform-ops/hooks", "carla").await;
    let id = list["hooks"][0]["id"].as_i64().unwrap();
    assert_eq!(
        list["hooks"][0]["events"],
        json!(["approved", "execution_halted"])
    );
    let (_, page) = b.get("/teams/platform-ops/hooks").await;
    assert!(!page.contains("id=\"new-secret\""), "shown once");
    assert!(page.contains(&format!("data-hook=\"{id}\"")));
    // Send a test message: it arrives and its delivery shows on the page.
    let (s, loc, _) = b
        .post(
            &format!("/teams/platform-ops/hooks/{id}/test"),
            &[("csrf", &b.csrf)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(loc, "/teams/platform-ops/hooks?done=hook_tested");
    let d = delivered(&app, "platform-ops", id, 1).await;
    let (_, page) = b.get("/teams/platform-ops/hooks").await;
    assert!(
        page.contains(&format!(
            "data-delivery=\"{}\"",
            d[0]["delivery_id"].as_str().unwrap()
        )),
        "{page}"
    );
    assert_eq!(r.accepted("page").len(), 1);
    let root = crate::web::sign_in(&app, "root").await;
    let (_, outbox) = root.get("/admin/outbox?state=sent").await;
    assert!(
        outbox.contains("hook pager (team platform-ops)"),
        "{outbox}"
    );
    // Another team's page is refused; delete removes the hook.
    let otto = crate::web::sign_in(&app, "otto").await;
    let (s, _) = otto.get("/teams/platform-ops/hooks").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = otto
        .post(
            &format!("/teams/platform-ops/hooks/{id}/delete"),
            &[("csrf", &otto.csrf)],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, loc, _) = b
        .post(
            &format!("/teams/platform-ops/hooks/{id}/delete"),
            &[("csrf", &b.csrf)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(loc, "/teams/platform-ops/hooks?done=hook_deleted");
    let (_, page) = b.get("/teams/platform-ops/hooks?done=hook_deleted").await;
    assert!(page.contains("id=\"no-hooks\""));
    assert!(page.contains("undelivered messages are given up"));
}

both_backends!(backend: the_hooks_page);
both_backends!(hooks_are_managed_by_their_team);
