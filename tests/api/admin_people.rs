//! The admin pages added for issue #14's rest: deactivating and reactivating a person (and
//! what stops with it: sign-in, sessions, API tokens, sign-offs), the API tokens of
//! someone else, and the schema's version history. Each through the service the command
//! line uses too, each act audited, nobody but admins gets in.

use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, TestApp};
use crate::web::{client, post_login, sign_in};

const PW: &str = "correct horse battery";

fn bin(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(args)
        .env("DATABASE_URL", &app.database_url)
        .env("RUST_LOG", "warn")
        .env("COUNTERSIGN_MAILER", "false")
        .env_remove("COUNTERSIGN_SCHEMA")
        .output()
        .expect("run countersign")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn actions(app: &TestApp) -> Vec<(String, String)> {
    use countersign::db::schema::audit_events::dsl::*;
    use diesel::prelude::*;
    let mut conn = app.conn();
    audit_events
        .order(id.asc())
        .select((action, detail))
        .load(&mut *conn)
        .unwrap()
}

async fn api_status(app: &TestApp, token: &str) -> StatusCode {
    app.client
        .get(format!("{}/api/v1/me", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

async fn login_page(app: &TestApp, email: &str, pw: &str) -> (StatusCode, String) {
    let r = post_login(&client(), &app.address, email, pw, "/").await;
    (r.status(), r.text().await.unwrap())
}

async fn deactivation_stops_sign_in_sessions_tokens_and_signoffs(app: TestApp) {
    app.load_fixture().await;
    let root = sign_in(&app, "root").await;
    let ben = sign_in(&app, "ben").await;
    assert_eq!(api_status(&app, app.token("ben")).await, StatusCode::OK);
    // An approved change and one awaiting sign-off, both signed by ben.
    let (approved, _) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (pending, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(2)]}))
        .await;
    let (s, v) = app.sign(pending, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let (s, _, html) = root
        .post(
            "/admin/people/deactivate",
            &[("csrf", &root.csrf), ("email", "Ben@req.example")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("ben@req.example is deactivated"), "{html}");
    assert!(html.contains("1 session(s) ended"), "{html}");
    assert!(
        html.contains(&format!("Back to awaiting sign-off (their approval rested on ben@req.example&#x27;s sign-off): CHG-{approved}.")),
        "{html}"
    );
    assert!(
        html.contains("data-person=\"ben@req.example\" class=\"muted\" data-deactivated=\"yes\"")
    );
    assert!(
        html.contains("action=\"/admin/people/reactivate\""),
        "{html}"
    );

    // Everything of theirs stops at once.
    let (s, _) = ben.get("/queue").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the session ended");
    assert_eq!(
        api_status(&app, app.token("ben")).await,
        StatusCode::UNAUTHORIZED
    );
    let (s, page) = login_page(&app, "ben@req.example", PW).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(page.contains("This account is deactivated"), "{page}");
    let (s, page) = login_page(&app, "ben@req.example", "wrong password!").await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a wrong password tells nothing"
    );
    assert!(page.contains("That email and password do not match."));
    assert!(!page.contains("deactivated"));

    // Their sign-offs count no more: on the approved change and on the pending one.
    let c = app.change(approved).await;
    assert_eq!(c["state"], "awaiting_signoff", "{c}");
    let ben_signoff = |c: &serde_json::Value| {
        c["signoffs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["by"]["email"] == "ben@req.example")
            .cloned()
            .unwrap()
    };
    let s = ben_signoff(&c);
    assert_eq!(s["counts"], false, "{s}");
    assert!(
        s["why_not"].as_str().unwrap().contains("is deactivated"),
        "{s}"
    );
    let (s, v) = app
        .sign(pending, "carla", "implementer", &fp, Some(1))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        v["state"], "awaiting_signoff",
        "ben's sign-off does not count: {v}"
    );

    // Twice is a no-op; nobody deactivates themselves or the last active admin.
    let (_, _, html) = root
        .post(
            "/admin/people/deactivate",
            &[("csrf", &root.csrf), ("email", "ben@req.example")],
        )
        .await;
    assert!(html.contains("was deactivated already"), "{html}");
    let (s, _, html) = root
        .post(
            "/admin/people/deactivate",
            &[("csrf", &root.csrf), ("email", "root@admin.example")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("you cannot deactivate your own account"),
        "{html}"
    );
    let o = bin(&app, &["person", "deactivate", "root@admin.example"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is the last active admin"),
        "{}",
        text(&o)
    );
    let (s, _, html) = root
        .post(
            "/admin/people/deactivate",
            &[("csrf", &root.csrf), ("email", "nobody@x.example")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("nobody has the address"), "{html}");

    // Reactivated: they sign in again, their token works again, their sign-off counts
    // again where it still applies.
    let (s, _, html) = root
        .post(
            "/admin/people/reactivate",
            &[("csrf", &root.csrf), ("email", "ben@req.example")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("ben@req.example is active again"), "{html}");
    assert_eq!(api_status(&app, app.token("ben")).await, StatusCode::OK);
    let (s, _) = login_page(&app, "ben@req.example", PW).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(ben_signoff(&app.change(pending).await)["counts"], true);

    // The same from the command line (`person` is `user`).
    let o = bin(&app, &["person", "deactivate", "ben@req.example"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("deactivated ben@req.example"),
        "{}",
        text(&o)
    );
    assert_eq!(
        api_status(&app, app.token("ben")).await,
        StatusCode::UNAUTHORIZED
    );
    let (_, page) = root.get("/admin/people").await;
    assert!(page.contains("by the command line"), "{page}");
    let o = bin(&app, &["user", "reactivate", "ben@req.example"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(api_status(&app, app.token("ben")).await, StatusCode::OK);

    let a = actions(&app);
    let deactivated: Vec<&(String, String)> = a
        .iter()
        .filter(|(x, _)| x == "person_deactivated")
        .collect();
    assert_eq!(deactivated.len(), 2, "{a:?}");
    assert!(deactivated[0].1.contains("\"email\":\"ben@req.example\""));
    assert_eq!(
        a.iter().filter(|(x, _)| x == "person_reactivated").count(),
        2
    );
    assert!(a
        .iter()
        .any(|(x, d)| x == "state_changed" && d.contains("ben@req.example is deactivated")));
    let (s, page) = root.get("/admin/audit").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<strong>Intact</strong>"), "{page}");
}

fn token_id(html: &str, label: &str) -> i64 {
    html.split("<tr data-token=\"")
        .skip(1)
        .find(|row| row.contains(&format!("<td>{label}</td>")))
        .and_then(|row| row.split('"').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no token {label} in {html}"))
}

async fn admins_manage_the_tokens_of_others(app: TestApp) {
    let root = sign_in(&app, "root").await;
    let (s, page) = root.get("/admin/people").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("/admin/people/tokens?email=carla%40ops.example"));
    let (s, page) = root
        .get("/admin/people/tokens?email=carla%40ops.example")
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("<td>test</td>"), "the seeded token: {page}");

    // A new one: its secret shown once, not cached; it is carla's.
    let r = root
        .c
        .post(format!("{}/admin/people/tokens", app.address))
        .form(&[
            ("csrf", root.csrf.as_str()),
            ("email", "carla@ops.example"),
            ("label", "ci <pipeline>"),
            ("expires", "30"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let secret = html
        .split("<code id=\"new-token\">")
        .nth(1)
        .and_then(|r| r.split("</code>").next())
        .unwrap()
        .to_string();
    assert!(secret.starts_with("cs_"), "{html}");
    assert!(
        html.contains("<td>ci &lt;pipeline&gt;</td>"),
        "escaped: {html}"
    );
    let (s, me) = {
        let r = app
            .client
            .get(format!("{}/api/v1/me", app.address))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(s, StatusCode::OK);
    assert!(me.contains("carla@ops.example"), "{me}");
    let (_, again) = root
        .get("/admin/people/tokens?email=carla%40ops.example")
        .await;
    assert!(!again.contains(&secret), "shown once");
    let id = token_id(&again, "ci &lt;pipeline&gt;");

    // Bad input: the page again with the reason and what was typed.
    let (s, _, html) = root
        .post(
            "/admin/people/tokens",
            &[
                ("csrf", &root.csrf),
                ("email", "carla@ops.example"),
                ("label", "deploys"),
                ("expires", "12"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("is not a token lifetime"), "{html}");
    assert!(html.contains("value=\"deploys\""), "{html}");
    let long = "x".repeat(81);
    let (s, _, html) = root
        .post(
            "/admin/people/tokens",
            &[
                ("csrf", &root.csrf),
                ("email", "carla@ops.example"),
                ("label", &long),
                ("expires", "never"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("at most 80 characters"), "{html}");
    assert!(html.contains("<option value=\"never\" selected>"), "{html}");

    // Revoked: it stops at once; twice, or under someone else's address, is refused.
    let (s, _, html) = root
        .post(
            &format!("/admin/people/tokens/{id}/revoke"),
            &[("csrf", &root.csrf), ("email", "ana@req.example")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("ana@req.example has no such token"), "{html}");
    let (s, _, html) = root
        .post(
            &format!("/admin/people/tokens/{id}/revoke"),
            &[("csrf", &root.csrf), ("email", "carla@ops.example")],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains(&format!("Token {id} is revoked")), "{html}");
    assert!(html.contains("revoked 20"), "{html}");
    assert_eq!(api_status(&app, &secret).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api_status(&app, app.token("carla")).await, StatusCode::OK);
    let (s, _, _) = root
        .post(
            &format!("/admin/people/tokens/{id}/revoke"),
            &[("csrf", &root.csrf), ("email", "carla@ops.example")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // The command line sees and does the same.
    let o = bin(&app, &["token", "list", "carla@ops.example"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{id}\tci <pipeline>\t")),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("revoked "), "{}", text(&o));
    let seeded = token_id(&again, "test");
    let o = bin(
        &app,
        &["token", "revoke", "carla@ops.example", &seeded.to_string()],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        api_status(&app, app.token("carla")).await,
        StatusCode::UNAUTHORIZED
    );

    let a = actions(&app);
    assert!(a.iter().any(|(x, d)| x == "token_created"
        && d.contains("\"email\":\"carla@ops.example\"")
        && d.contains("ci <pipeline>")));
    assert_eq!(
        a.iter()
            .filter(|(x, d)| x == "token_revoked" && d.contains("\"email\":\"carla@ops.example\""))
            .count(),
        2,
        "{a:?}"
    );
}

async fn the_schema_history_shows_versions_and_their_differences(app: TestApp) {
    let root = sign_in(&app, "root").await;
    let (s, page) = root.get("/admin/schema").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(page.contains("href=\"/admin/schema\""), "in the navigation");
    assert!(page.contains("data-in-use=\"yes\""), "{page}");
    assert!(page.contains("the first version recorded"), "{page}");
    let first = page
        .split("data-version=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();

    // A later version (as a restart with an edited file records it).
    let source = include_str!("../../config/schema.example.toml")
        .replacen("[operations.uninstall_app]", "[operations.remove_app]", 1)
        .replacen(
            "# countersign example schema.",
            "# countersign example schema. <script>alert(1)</script>",
            1,
        );
    let schema = countersign::domain::Schema::from_toml(&source).unwrap();
    {
        let mut conn = app.conn();
        let recorded = countersign::service::record_schema(
            &mut conn,
            &schema,
            &source,
            &countersign::db::audit::Actor::cli(),
        )
        .unwrap();
        assert!(recorded);
    }
    let (_, page) = root.get("/admin/schema").await;
    let newest = page
        .split("data-version=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    assert_eq!(newest, schema.hash, "the newest first");
    assert!(
        page.contains(&format!("data-version=\"{first}\" data-in-use=\"yes\"")),
        "the running one is marked: {page}"
    );
    assert!(page.contains("operations added: remove_app"), "{page}");
    assert!(page.contains("operations removed: uninstall_app"), "{page}");

    let (s, page) = root.get(&format!("/admin/schema/{}", schema.hash)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains(&format!("href=\"/admin/schema/{first}\"")),
        "{page}"
    );
    assert!(
        page.contains("<tr class=\"added\"><td class=\"n\"></td><td class=\"n\">32</td><td class=\"n\">+</td><td class=\"t\">[operations.remove_app]</td></tr>"),
        "{page}"
    );
    assert!(
        page.contains("<td class=\"t\">[operations.uninstall_app]</td>"),
        "{page}"
    );
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped"
    );
    assert!(!page.contains("<script>alert(1)"));
    let (s, page) = root.get(&format!("/admin/schema/{first}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("none: the first version recorded"), "{page}");
    assert!(!page.contains("id=\"source-diff\""));
    let (s, _) = root.get("/admin/schema/0123abcd").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn only_admins_reach_the_new_admin_pages(app: TestApp) {
    let carla = sign_in(&app, "carla").await;
    let hash =
        countersign::domain::Schema::from_toml(include_str!("../../config/schema.example.toml"))
            .unwrap()
            .hash;
    for path in [
        "/admin/schema".to_string(),
        format!("/admin/schema/{hash}"),
        "/admin/people/tokens?email=carla%40ops.example".to_string(),
    ] {
        let (s, page) = carla.get(&path).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        assert!(!page.contains("[operations."), "{path}");
    }
    let (_, home) = carla.get("/").await;
    assert!(!home.contains("href=\"/admin/schema\""));
    for (path, form) in [
        (
            "/admin/people/deactivate",
            vec![("email", "ana@req.example")],
        ),
        (
            "/admin/people/reactivate",
            vec![("email", "ana@req.example")],
        ),
        (
            "/admin/people/tokens",
            vec![("email", "carla@ops.example"), ("label", "mine")],
        ),
        (
            "/admin/people/tokens/1/revoke",
            vec![("email", "ana@req.example")],
        ),
    ] {
        let mut f = vec![("csrf", carla.csrf.as_str())];
        f.extend(form);
        let (s, _, _) = carla.post(path, &f).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
    }
    // Nothing happened: ana still works, carla got no token.
    assert_eq!(api_status(&app, app.token("ana")).await, StatusCode::OK);
    assert!(!actions(&app)
        .iter()
        .any(|(x, _)| x == "person_deactivated" || x == "token_created" || x == "token_revoked"));
    // Without the CSRF token even an admin is refused.
    let root = sign_in(&app, "root").await;
    let (s, _, _) = root
        .post("/admin/people/deactivate", &[("email", "ana@req.example")])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(api_status(&app, app.token("ana")).await, StatusCode::OK);
}

both_backends!(
    deactivation_stops_sign_in_sessions_tokens_and_signoffs,
    admins_manage_the_tokens_of_others,
    the_schema_history_shows_versions_and_their_differences,
    only_admins_reach_the_new_admin_pages,
);
