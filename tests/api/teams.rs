//! Both teams, by construction: the requesting team is never the implementing team and is
//! one the operation allows; restores are for the teams of what they undo; sign-offs stay
//! earned until execution and cover the text the signer read; the audit chain holds under
//! parallel logins, comments and token creations; multi-statement reads are one snapshot.

use countersign::db::audit::{self, Verdict};
use countersign::db::{self, users};
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, TestApp};

fn body(team: &str, op: &str, targets: serde_json::Value) -> serde_json::Value {
    json!({"title": "t", "rationale": "r", "requesting_team": team, "operation": op, "targets": targets})
}

/// The implementing team cannot request its own operation; an unrelated team cannot request
/// an operation whose `requested_by` leaves it out; nothing is stored when refused.
async fn one_team_cannot_play_both_sides(app: TestApp) {
    app.load_fixture().await;
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "carla",
            body("platform-ops", "uninstall_app", json!({"ids": [inst(1)]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "same_team");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`platform-ops` implements Uninstall an app"),
        "{v}"
    );
    // Same for an operation without `requested_by`.
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "carla",
            json!({"title": "t", "requesting_team": "platform-ops", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(1)]}}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "same_team");
    // An unrelated team and an operation that names its requesters.
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "otto",
            body("outsiders", "uninstall_app", json!({"ids": [inst(1)]})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "not_requester_team");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may be requested only by `app-owners`"),
        "{v}"
    );
    let (_, list) = app.get("/api/v1/changes", "root").await;
    assert_eq!(
        list["changes"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "nothing stored: {list}"
    );
    // Without `requested_by`, another team may request.
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "otto",
            json!({"title": "t", "requesting_team": "outsiders", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(1)]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// `POST /api/v1/restores` of another team's change is refused like its rollback is.
async fn restores_are_for_the_teams_of_what_they_undo(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1), inst(3)]}))
        .await;
    assert_eq!(app.execute(id, &fp).await.0, StatusCode::ACCEPTED);
    app.wait_execution(id, &["completed"]).await;
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/rollback"), "otto", json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = app
        .post(
            "/api/v1/restores",
            "otto",
            json!({"requesting_team": "outsiders", "changes": [format!("CHG-{id}")]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("only the teams of CHG-{id}")),
        "{v}"
    );
    // Going back to before another team's change is undoing it, too.
    let (s, v) = app
        .post(
            "/api/v1/restores",
            "otto",
            json!({"requesting_team": "outsiders", "entities": [inst(1)], "before_change": id}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // Named entities: the team must be allowed to request the restore operation; the
    // implementing team never is.
    let (s, v) = app
        .post(
            "/api/v1/restores",
            "carla",
            json!({"requesting_team": "platform-ops", "entities": [inst(1)], "before_change": id}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "same_team");
    // The requesting team of the change may.
    let (s, v) = app
        .post(
            "/api/v1/restores",
            "ana",
            json!({"requesting_team": "app-owners", "changes": [id]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// A restore to before a change also undoes the later changes on the same entities; each of
/// those is for its own teams too.
async fn a_restore_cannot_undo_another_teams_later_change(app: TestApp) {
    app.load_fixture().await;
    let version = |team: &str, v: &str| json!({"title": "v", "requesting_team": team, "operation": "set_app_version", "params": {"version": v}, "targets": {"ids": [inst(2)]}});
    let run = |who: &'static str, requester: &'static str, body: serde_json::Value| {
        let app = &app;
        async move {
            let (s, v) = app.post("/api/v1/changes", who, body).await;
            assert_eq!(s, StatusCode::CREATED, "{v}");
            let id = v["id"].as_i64().unwrap();
            let (_, v) = app
                .post(&format!("/api/v1/changes/{id}/submit"), who, json!({}))
                .await;
            let fp = v["fingerprint"].as_str().unwrap().to_string();
            app.sign(id, requester, "requester", &fp, None).await;
            let (_, v) = app.sign(id, "carla", "implementer", &fp, Some(1)).await;
            assert_eq!(v["state"], "approved", "{v}");
            assert_eq!(app.execute(id, &fp).await.0, StatusCode::ACCEPTED);
            app.wait_execution(id, &["completed"]).await;
            id
        }
    };
    let ours = run("ana", "ben", version("app-owners", "2.0.0")).await;
    let theirs = run("otto", "otto", version("outsiders", "3.0.0")).await;
    let (s, v) = app
        .post(
            "/api/v1/restores",
            "ana",
            json!({"requesting_team": "app-owners", "changes": [ours]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("would also undo CHG-{theirs}")),
        "{v}"
    );
    // Its own later change alone is fine for the other team.
    let (s, v) = app
        .post(
            "/api/v1/restores",
            "otto",
            json!({"requesting_team": "outsiders", "changes": [theirs]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

/// A schema that no longer lets the requesting team request the operation sends open
/// changes back to draft, saying why; they cannot be submitted again.
async fn schema_change_invalidates_the_requesting_team(app: TestApp) {
    use countersign::db::changes as repo;
    use countersign::domain::schema::{Schema, EXAMPLE_SCHEMA};
    app.load_fixture().await;
    let id = id_for_version(&app).await;
    assert_eq!(app.change(id).await["state"], "approved");
    let src = EXAMPLE_SCHEMA.replace(
        "[operations.set_app_version]\n",
        "[operations.set_app_version]\nrequested_by = [\"release-managers\"]\n",
    );
    assert_ne!(src, EXAMPLE_SCHEMA);
    let schema = Schema::from_toml(&src).unwrap();
    countersign::web::prepare_database(&app.pool, &schema, &src).unwrap();
    let mut conn = app.conn();
    let c = repo::get(&mut conn, id).unwrap().unwrap();
    assert_eq!(c.state.as_str(), "draft");
    let events = audit::for_change(&mut conn, id).unwrap();
    assert!(
        events.iter().any(|e| e.action == "state_changed"
            && e.detail
                .contains("may be requested only by `release-managers`")),
        "{events:?}"
    );
}

/// An approved set_app_version change by app-owners (ana → ben, carla).
async fn id_for_version(app: &TestApp) -> i64 {
    let (s, v) = app
        .post(
            "/api/v1/changes",
            "ana",
            json!({"title": "v", "requesting_team": "app-owners", "operation": "set_app_version", "params": {"version": "2.0.0"}, "targets": {"ids": [inst(2)]}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.approve(id, v["fingerprint"].as_str().unwrap()).await;
    id
}

/// A signer who left the side's team no longer counts: the execute gate sends the change
/// back for sign-off and names them.
async fn signoffs_stay_earned_until_execution(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    app.leave("carla", "platform-ops");
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/execute"),
            "dev",
            json!({"fingerprint": fp}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "signoffs_no_longer_count");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(
            "carla@ops.example (implementer side) is no longer a member of `platform-ops`"
        ),
        "{v}"
    );
    let c = app.change(id).await;
    assert_eq!(c["state"], "awaiting_signoff", "{c}");
    assert_eq!(c["implementer_side"]["missing"], 1, "{c}");
    assert!(
        c["state_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("carla@ops.example (implementer side) is no longer a member"),
        "the change says why: {c}"
    );
    let carla_line = c["signoffs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["by"]["email"] == "carla@ops.example")
        .unwrap()
        .clone();
    assert_eq!(carla_line["counts"], false, "{carla_line}");
    let b = crate::web::sign_in(&app, "dev").await;
    let (_, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert!(page.contains("id=\"state-reason\""), "the page says why");
    assert!(
        page.contains("no longer counts"),
        "the sign-off line says why"
    );
    // Another implementer signs; now it runs.
    let (s, v) = app.sign(id, "dev", "implementer", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved");
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/execute"),
            "dev",
            json!({"fingerprint": fp}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
}

/// Taking someone out of a team sends the approved changes that rested on their sign-off
/// back for sign-off at once: no screen offers to execute them or notify their customers.
async fn leaving_a_team_unapproves_at_once(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .approved("uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    // Another change that dev, not carla, signed: carla leaving does not touch it.
    let (other, ofp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    app.sign(other, "ben", "requester", &ofp, None).await;
    let (_, v) = app.sign(other, "dev", "implementer", &ofp, None).await;
    assert_eq!(v["state"], "approved");
    let schema =
        countersign::domain::schema::Schema::from_toml(countersign::domain::schema::EXAMPLE_SCHEMA)
            .unwrap();
    let back = {
        let mut conn = app.conn();
        countersign::service::remove_member(
            &mut conn,
            &schema,
            "platform-ops",
            "carla@ops.example",
            &audit::Actor::cli(),
        )
        .unwrap()
        .unwrap()
    };
    assert_eq!(back, vec![id]);
    let c = app.change(id).await;
    assert_eq!(c["state"], "awaiting_signoff", "{c}");
    assert!(c["state_reason"]
        .as_str()
        .unwrap()
        .contains("carla@ops.example is no longer a member of `platform-ops`"));
    let (_, v) = app.get(&format!("/api/v1/changes/{id}"), "eli").await;
    let allowed: Vec<&str> = v["allowed_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        !allowed.contains(&"execute") && !allowed.contains(&"draft_notice"),
        "{allowed:?}"
    );
    assert!(allowed.contains(&"sign_implementer"), "{allowed:?}");
    assert_eq!(app.change(other).await["state"], "approved");
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/execute"),
            "eli",
            json!({"fingerprint": fp}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}

/// A sign-off covers the text the signer read: a signer who sends the `text_hash` of what
/// they read is refused once the author rewrote it.
async fn a_signoff_covers_the_text_read(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let read = app.change(id).await["text_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(read.len(), 64);
    let (s, v) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"rationale": "Also the billing data, trust me."}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/signoffs"),
            "carla",
            json!({"side": "implementer", "fingerprint": fp, "text_hash": read}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "stale_text");
    let now = app.change(id).await["text_hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(now, read);
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/signoffs"),
            "carla",
            json!({"side": "implementer", "fingerprint": fp, "text_hash": now}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // A signer whose sign-off a rewording made stale is told so, in those words.
    let (s, v) = app
        .patch(
            &format!("/api/v1/changes/{id}"),
            "ana",
            json!({"title": "Uninstall insight (and more)"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows: Vec<countersign::db::models::OutboxRow> = {
        use countersign::db::schema::outbox;
        use diesel::prelude::*;
        let mut conn = app.conn();
        outbox::table
            .filter(outbox::event_kind.eq("stale"))
            .filter(outbox::recipient.eq("carla@ops.example"))
            .select(countersign::db::models::OutboxRow::as_select())
            .load(&mut *conn)
            .unwrap()
    };
    assert_eq!(rows.len(), 1, "carla is told once");
    let m = countersign::notify::mail::render(
        &rows[0],
        &countersign::notify::mail::MailSettings {
            from: "cs@example.test".into(),
            public_url: "http://localhost".into(),
        },
    )
    .unwrap();
    assert!(
        m.subject.contains("Text changed, sign again"),
        "{}",
        m.subject
    );
    assert!(
        m.text.contains("rewrote the title after you signed"),
        "{}",
        m.text
    );
    let c = app.change(id).await;
    assert_eq!(c["implementer_side"]["missing"], 1, "{c}");
}

/// 40 browser logins, 50 comments and 20 token creations at once: the chain stays one.
async fn audit_chain_holds_under_parallel_use(app: TestApp) {
    app.load_fixture().await;
    let (id, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    const PW: &str = "parallel horse battery";
    // Forty people with passwords (own addresses, so the per-address delays stay out of
    // it; forty is the server's burst of sign-ins at the default 20 per second).
    let emails: Vec<String> = {
        let mut conn = app.conn();
        let hash = users::hash_password(PW);
        (0..40)
            .map(|i| {
                let email = format!("p{i}@req.example");
                let u = users::create_user(&mut conn, &email, &format!("P{i}"), false).unwrap();
                {
                    use countersign::db::schema::users as u_t;
                    use diesel::prelude::*;
                    diesel::update(u_t::table.find(u.id))
                        .set(u_t::password_hash.eq(Some(hash.clone())))
                        .execute(&mut *conn)
                        .unwrap();
                }
                email
            })
            .collect()
    };
    let mut tasks = Vec::new();
    for email in emails {
        let base = app.address.clone();
        tasks.push(tokio::spawn(async move {
            let c = crate::web::client();
            let r = crate::web::post_login(&c, &base, &email, PW, "/").await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {email}");
            // Each signed-in person creates a token from the settings page (20 of them).
            (c, base)
        }));
    }
    for i in 0..50 {
        let (path, who) = (
            format!("/api/v1/changes/{id}/comments"),
            ["ana", "ben", "carla", "dev"][i % 4],
        );
        let app_client = app.client.clone();
        let base = app.address.clone();
        let token = app.token(who).to_string();
        tasks.push(tokio::spawn(async move {
            let r = app_client
                .post(format!("{base}{path}"))
                .bearer_auth(token)
                .json(&json!({"body": format!("comment {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            (reqwest::Client::new(), String::new())
        }));
    }
    let mut browsers = Vec::new();
    for t in tasks {
        let (c, base) = t.await.unwrap();
        if !base.is_empty() {
            browsers.push((c, base));
        }
    }
    assert_eq!(browsers.len(), 40);
    let mut tokens = Vec::new();
    for (c, base) in browsers.into_iter().take(20) {
        tokens.push(tokio::spawn(async move {
            let page = c
                .get(format!("{base}/settings"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let csrf = crate::web::field(&page, "csrf");
            let r = c
                .post(format!("{base}/settings/tokens"))
                .form(&[("csrf", csrf.as_str()), ("label", "parallel")])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }));
    }
    for t in tokens {
        t.await.unwrap();
    }
    let mut conn = app.conn();
    match audit::verify(&mut conn).unwrap() {
        Verdict::Intact { events } => assert!(events > 110, "{events} events"),
        other => panic!("the audit chain forked: {other:?}"),
    }
    let mut count = |action: &str| {
        use countersign::db::schema::audit_events as a;
        use diesel::prelude::*;
        a::table
            .filter(a::action.eq(action))
            .count()
            .get_result::<i64>(&mut *conn)
            .unwrap()
    };
    assert_eq!(count("signed_in"), 40);
    assert_eq!(count("commented"), 50);
    assert_eq!(count("token_created"), 20);
}

/// `db::snapshot` reads one moment: a row committed by another connection in the middle
/// is not seen (REPEATABLE READ on PostgreSQL, a WAL read transaction on SQLite).
async fn reads_are_one_snapshot(app: TestApp) {
    use countersign::db::schema::changes as c_t;
    use diesel::prelude::*;
    app.load_fixture().await;
    let (id, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let mut reader = app.conn();
    let mut writer = app.conn();
    let (before, after): (String, String) = db::snapshot(&mut reader, |conn| {
        let before: String = c_t::table.find(id).select(c_t::title).first(conn)?;
        db::write_tx(&mut writer, |w| {
            diesel::update(c_t::table.find(id))
                .set(c_t::title.eq("changed meanwhile"))
                .execute(w.conn())
        })?;
        let after: String = c_t::table.find(id).select(c_t::title).first(conn)?;
        Ok::<_, diesel::result::Error>((before, after))
    })
    .unwrap();
    assert_eq!(before, after, "one snapshot sees one moment");
    let now: String = c_t::table
        .find(id)
        .select(c_t::title)
        .first(&mut *reader)
        .unwrap();
    assert_eq!(now, "changed meanwhile");
    // A write inside a snapshot is refused on PostgreSQL (READ ONLY).
    if matches!(&*reader, db::DbConn::Pg(_)) {
        let r = db::snapshot(&mut reader, |conn| {
            diesel::update(c_t::table.find(id))
                .set(c_t::title.eq("nope"))
                .execute(conn)
        });
        assert!(r.is_err());
    }
}

both_backends!(
    one_team_cannot_play_both_sides,
    restores_are_for_the_teams_of_what_they_undo,
    a_restore_cannot_undo_another_teams_later_change,
    schema_change_invalidates_the_requesting_team,
    signoffs_stay_earned_until_execution,
    leaving_a_team_unapproves_at_once,
    a_signoff_covers_the_text_read,
    audit_chain_holds_under_parallel_use,
    reads_are_one_snapshot
);
