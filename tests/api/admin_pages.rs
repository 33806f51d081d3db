//! The admin pages: people and teams (create a team, add and remove members, create a
//! person with an initial password they must replace, reset a password) through the same
//! services as the command line, each act audited; the audit chain's check; nobody but
//! admins gets in.

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, TestApp};
use crate::web::{client, field, post_login, sign_in};

fn password_on(html: &str) -> String {
    html.split("id=\"new-password\"")
        .nth(1)
        .and_then(|r| r.split("<code>").nth(1))
        .and_then(|r| r.split("</code>").next())
        .unwrap_or_default()
        .to_string()
}

async fn admins_manage_people_and_teams(app: TestApp) {
    app.load_fixture().await;
    let root = sign_in(&app, "root").await;
    let (s, page) = root.get("/admin/people").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"team-platform-ops\"") && page.contains("carla@ops.example"));

    // Teams: a good name, a bad one, a taken one.
    let (s, _, html) = root
        .post("/admin/teams", &[("csrf", &root.csrf), ("name", "sre")])
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("Team sre created."), "{html}");
    let (s, _, html) = root
        .post(
            "/admin/teams",
            &[("csrf", &root.csrf), ("name", "Bad Name")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("is not a team name"), "{html}");
    let (s, _, html) = root
        .post("/admin/teams", &[("csrf", &root.csrf), ("name", "sre")])
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("exists already"), "{html}");

    // Members.
    let (s, _, html) = root
        .post(
            "/admin/teams/sre/members",
            &[("csrf", &root.csrf), ("email", "Carla@ops.example")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(
        html.contains("carla@ops.example is a member of sre."),
        "{html}"
    );
    let (s, _, html) = root
        .post(
            "/admin/teams/sre/members",
            &[("csrf", &root.csrf), ("email", "nobody@x.example")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("nobody has the address"), "{html}");

    // A new person: an initial password, shown once, replaced at the first sign-in.
    let (s, _, html) = root
        .post(
            "/admin/people",
            &[
                ("csrf", &root.csrf),
                ("email", "zoe@ops.example"),
                ("name", "Zoe"),
                ("teams", "sre, platform-ops"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let initial = password_on(&html);
    assert_eq!(initial.len(), 20, "{html}");
    let (_, again) = root.get("/admin/people").await;
    assert!(!again.contains(&initial), "shown once");
    assert!(again.contains("data-person=\"zoe@ops.example\""));
    let (s, _, html) = root
        .post(
            "/admin/people",
            &[
                ("csrf", &root.csrf),
                ("email", "zoe@ops.example"),
                ("name", "Zoe again"),
                ("teams", ""),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("has an account already"), "{html}");
    assert!(
        html.contains("value=\"Zoe again\""),
        "what was typed is kept"
    );
    let zoe = client();
    let r = post_login(&zoe, &app.address, "zoe@ops.example", &initial, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = zoe
        .get(format!("{}/queue", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/settings/password"));

    // A reset: a new password shown once, the person's sessions end.
    let ben = sign_in(&app, "ben").await;
    let (s, _, html) = root
        .post(
            "/admin/people/reset",
            &[("csrf", &root.csrf), ("email", "ben@req.example")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    let reset = password_on(&html);
    assert_eq!(reset.len(), 20);
    let (s, _) = ben.get("/queue").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "ben's session ended");
    let r = post_login(&client(), &app.address, "ben@req.example", &reset, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the new password works");

    // Removing a signer: the approval that rested on them goes back for sign-off.
    let (id, _) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (s, _, html) = root
        .post(
            "/admin/teams/app-owners/members/remove",
            &[("csrf", &root.csrf), ("email", "ben@req.example")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("Back to awaiting sign-off"), "{html}");
    assert!(html.contains(&format!(": CHG-{id}.")), "{html}");
    assert_eq!(app.change(id).await["state"], "awaiting_signoff");

    // Audited, as from the command line.
    let actions: Vec<String> = {
        use countersign::db::schema::audit_events::dsl::*;
        use diesel::prelude::*;
        let mut conn = app.conn();
        audit_events.select(action).load(&mut *conn).unwrap()
    };
    for a in [
        "team_created",
        "team_member_added",
        "user_saved",
        "password_reset",
        "team_member_removed",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }

    // The audit page walks the chain.
    let (s, page) = root.get("/admin/audit").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<strong>Intact</strong>"), "{page}");
}

async fn only_admins_get_in(app: TestApp) {
    let carla = sign_in(&app, "carla").await;
    for path in ["/admin/people", "/admin/audit"] {
        let (s, _) = carla.get(path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    let (s, _) = carla.get("/").await;
    assert_eq!(s, StatusCode::OK);
    for (path, form) in [
        ("/admin/teams", vec![("name", "x")]),
        (
            "/admin/teams/platform-ops/members",
            vec![("email", "otto@outsiders.example")],
        ),
        (
            "/admin/teams/platform-ops/members/remove",
            vec![("email", "eli@ops.example")],
        ),
        (
            "/admin/people",
            vec![("email", "a@b.example"), ("name", "A")],
        ),
        ("/admin/people/reset", vec![("email", "root@admin.example")]),
    ] {
        let mut f = vec![("csrf", carla.csrf.as_str())];
        f.extend(form);
        let (s, _, _) = carla.post(path, &f).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    // Nothing changed; without a CSRF token even an admin is refused.
    let (_, me) = app.get("/api/v1/me", "eli").await;
    assert!(me.to_string().contains("platform-ops"), "{me}");
    let root = sign_in(&app, "root").await;
    let (s, _, _) = root.post("/admin/teams", &[("name", "y")]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, page) = root.get("/admin/people").await;
    assert!(!page.contains("id=\"team-y\""));
    assert!(!field(&page, "csrf").is_empty());
}

both_backends!(admins_manage_people_and_teams, only_admins_get_in);
