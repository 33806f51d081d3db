//! Email notifications over a real SMTP conversation with a loopback server started by the
//! test: recipients, multipart bodies, threading, faults (server down, a rejected
//! recipient, a stalled server), digests and opt-outs, the outbox committing with its event,
//! customer contacts and notices. Every test runs on SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use countersign::config::{MailConfig, MailTransport, SmtpTls};
use countersign::db::schema::outbox;
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{inst, site, spawn_app_with, Backend, TestApp, ORG1};
use crate::smtp::{free_port, Mode, SmtpServer};

async fn app_with_smtp(backend: Backend, port: u16, digest_hours: f64) -> Option<TestApp> {
    app_with_smtp_and(backend, port, digest_hours, |_| {}).await
}

async fn app_with_smtp_and(
    backend: Backend,
    port: u16,
    digest_hours: f64,
    tweak: impl FnOnce(&mut countersign::config::Config),
) -> Option<TestApp> {
    spawn_app_with(backend, move |c| {
        tweak(c);
        c.mail = smtp_config(port, digest_hours);
    })
    .await
}

fn smtp_config(port: u16, digest_hours: f64) -> MailConfig {
    MailConfig {
        transport: MailTransport::Smtp {
            host: "127.0.0.1".into(),
            port,
            tls: SmtpTls::None,
            username: None,
            password: None,
        },
        mailer: true,
        from: "countersign <noreply@countersign.test>".into(),
        public_url: "http://countersign.test".into(),
        max_attempts: 6,
        retry_base_ms: 100,
        timeout_secs: 1,
        poll_ms: 50,
        digest_hours,
        lease_secs: 30,
    }
}

fn outbox_states(app: &TestApp) -> BTreeMap<String, i64> {
    let mut conn = app.conn();
    let rows: Vec<String> = outbox::table.select(outbox::state).load(&mut conn).unwrap();
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r).or_default() += 1;
    }
    m
}

/// Wait until `f` holds (10 s at most).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn recipients(server: &SmtpServer, subject_part: &str) -> BTreeSet<String> {
    server
        .mails()
        .into_iter()
        .filter(|m| {
            m.header("Subject")
                .unwrap_or_default()
                .contains(subject_part)
        })
        .flat_map(|m| m.to)
        .collect()
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn the_story_by_mail(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Normal).await;
    let Some(app) = app_with_smtp(backend, server.port, 24.0).await else {
        return;
    };
    app.load_fixture().await;
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "Remove <b>insight</b>", "rationale": "r", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1), inst(3)]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (_, v) = app
        .post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    // Needs sign-off: both teams but the author.
    let all_but_ana = set(&[
        "ben@req.example",
        "carla@ops.example",
        "dev@ops.example",
        "eli@ops.example",
    ]);
    until("needs-sign-off mails", || {
        recipients(&server, "Needs your sign-off") == all_but_ana
    })
    .await;
    let m = &server.to("carla@ops.example")[0];
    assert_eq!(
        m.header("Subject").unwrap(),
        format!("[CHG-{id}] Needs your sign-off: Remove <b>insight</b>")
    );
    assert_eq!(m.from, "noreply@countersign.test");
    let thread = format!("<change-{id}@countersign.test>");
    assert_eq!(m.header("In-Reply-To").unwrap(), thread);
    assert_eq!(m.header("References").unwrap(), thread);
    let mid = m.header("Message-ID").unwrap();
    assert!(
        mid.starts_with('<') && mid.ends_with("@countersign.test>"),
        "{mid}"
    );
    assert_eq!(
        m.header("List-Unsubscribe").unwrap(),
        "<http://countersign.test/settings/notifications>"
    );
    assert!(m
        .header("Content-Type")
        .unwrap()
        .starts_with("multipart/alternative"));
    let text = m.part("text/plain").expect("text part");
    assert!(
        text.contains(&format!("ana@req.example submitted CHG-{id} for sign-off")),
        "{text}"
    );
    assert!(text.contains("2 App installations"), "{text}");
    assert!(
        text.contains(&format!("http://countersign.test/changes/CHG-{id}")),
        "{text}"
    );
    let html = m.part("text/html").expect("html part");
    assert!(
        html.contains("Remove &lt;b&gt;insight&lt;/b&gt;"),
        "title escaped: {html}"
    );
    assert!(!html.contains("<b>insight"), "{html}");

    // Sign-offs: the author and the other side hear of each; approval goes to both teams.
    app.approve(id, &fp).await;
    until("approved mails", || {
        recipients(&server, "Approved")
            == set(&[
                "ana@req.example",
                "ben@req.example",
                "dev@ops.example",
                "eli@ops.example",
            ])
    })
    .await;
    let signed_by_ben = recipients(&server, "Signed by ben@req.example");
    assert_eq!(
        signed_by_ben,
        set(&[
            "ana@req.example",
            "carla@ops.example",
            "dev@ops.example",
            "eli@ops.example"
        ])
    );
    // A comment reaches the participants (author and signers) but not its writer.
    app.post(
        &format!("/api/v1/changes/{id}/comments"),
        "ben",
        json!({"body": "Customers were told."}),
    )
    .await;
    until("comment mails", || {
        recipients(&server, "Comment from") == set(&["ana@req.example", "carla@ops.example"])
    })
    .await;
    // Execution: started and finished go to the participants.
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    until("execution mails", || {
        recipients(&server, "Execution completed")
            == set(&["ana@req.example", "ben@req.example", "carla@ops.example"])
    })
    .await;
    assert_eq!(
        recipients(&server, "Execution started"),
        set(&["ana@req.example", "ben@req.example"]),
        "carla started it"
    );
    // Every mail is threaded under the change, and nobody got one event twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mails = server.mails();
    let mut seen = BTreeSet::new();
    for m in &mails {
        assert_eq!(m.header("References").unwrap(), thread);
        assert!(
            seen.insert(m.header("Message-ID").unwrap()),
            "duplicate Message-ID"
        );
        let key = (m.to.clone(), m.header("Subject").unwrap());
        assert_eq!(
            mails
                .iter()
                .filter(|x| (x.to.clone(), x.header("Subject").unwrap()) == key)
                .count(),
            1,
            "{key:?} mailed twice"
        );
    }
    let states = outbox_states(&app);
    assert_eq!(
        states.get("sent").copied(),
        Some(mails.len() as i64),
        "{states:?}"
    );
}

async fn smtp_down_then_back_delivers_everything_once(backend: Backend) {
    let port = free_port();
    let Some(app) = app_with_smtp(backend, port, 24.0).await else {
        return;
    };
    app.load_fixture().await;
    // A burst of events while nothing listens on the SMTP port.
    for n in [1u32, 3, 5] {
        app.submitted("ana", "uninstall_app", json!({"ids": [inst(n)]}))
            .await;
    }
    let total = outbox_states(&app).values().sum::<i64>();
    assert_eq!(total, 12, "4 recipients × 3 changes");
    until("failed attempts", || {
        let mut conn = app.conn();
        outbox::table
            .filter(outbox::attempts.ge(1))
            .count()
            .get_result::<i64>(&mut conn)
            .unwrap()
            == 12
    })
    .await;
    let (_, v) = app.get("/api/v1/outbox?state=pending", "root").await;
    assert!(v["mails"][0]["last_error"].as_str().is_some(), "{v}");
    let (s, _) = app.get("/api/v1/outbox", "carla").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins only");
    // A second mailer process joins (same database): leases keep them apart.
    let second =
        countersign::notify::mailer::Mailer::spawn(app.pool.clone(), smtp_config(port, 24.0));
    // The server comes back: everything is delivered, exactly once.
    let server = SmtpServer::start(port, Mode::Normal).await;
    until("delivery after the outage", || server.mails().len() == 12).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(server.mails().len(), 12);
    let ids: BTreeSet<String> = server
        .mails()
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(outbox_states(&app).get("sent"), Some(&12));
    tokio::task::spawn_blocking(move || second.stop())
        .await
        .unwrap();
}

async fn a_rejected_recipient_goes_dead_and_can_be_retried(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Reject("ben@req.example".into())).await;
    let Some(app) = app_with_smtp(backend, server.port, 24.0).await else {
        return;
    };
    app.load_fixture().await;
    app.submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    until("the other three delivered", || server.mails().len() == 3).await;
    until("ben's mail dead", || {
        outbox_states(&app).get("dead") == Some(&1)
    })
    .await;
    let (_, v) = app.get("/api/v1/outbox?state=dead", "root").await;
    let dead = &v["mails"][0];
    assert_eq!(dead["recipient"], "ben@req.example");
    assert_eq!(dead["attempts"], 1, "a permanent rejection is not retried");
    assert!(
        dead["last_error"].as_str().unwrap().contains("550"),
        "{dead}"
    );
    // The admin retries it once the mailbox exists.
    server.set_mode(Mode::Normal);
    let (s, v) = app
        .post(
            &format!("/api/v1/outbox/{}/retry", dead["id"]),
            "root",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "pending");
    let (s, _) = app
        .post(
            &format!("/api/v1/outbox/{}/retry", dead["id"]),
            "root",
            json!({}),
        )
        .await;
    assert!(s == StatusCode::CONFLICT || s == StatusCode::OK);
    until("ben's mail delivered", || {
        server.to("ben@req.example").len() == 1
    })
    .await;
    // The server has the mail before the mailer records it as sent: wait for the record.
    until("the retried mail recorded as sent", || {
        outbox_states(&app).get("sent") == Some(&4)
    })
    .await;
    assert_eq!(server.to("ben@req.example").len(), 1);
}

async fn a_stalled_server_times_out_and_is_retried(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Stall).await;
    let Some(app) = app_with_smtp(backend, server.port, 24.0).await else {
        return;
    };
    app.load_fixture().await;
    app.submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    until("a timed-out attempt", || {
        let mut conn = app.conn();
        outbox::table
            .filter(outbox::last_error.is_not_null())
            .count()
            .get_result::<i64>(&mut conn)
            .unwrap()
            >= 1
    })
    .await;
    assert!(server.mails().is_empty());
    server.set_mode(Mode::Normal);
    until("delivery after the stall", || server.mails().len() == 4).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.mails().len(), 4, "each mail once");
}

async fn digests_and_opt_outs(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Normal).await;
    // A digest goes out once its oldest notification is ~1.5 s old.
    let Some(app) = app_with_smtp(backend, server.port, 0.0004).await else {
        return;
    };
    app.load_fixture().await;
    // A sign-off request can be digested but never muted.
    let (s, v) = app
        .send(
            reqwest::Method::PUT,
            "/api/v1/me/notifications",
            "ben",
            Some(json!({"needs_signoff": "never"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = app
        .send(
            reqwest::Method::PUT,
            "/api/v1/me/notifications",
            "ben",
            Some(json!({"needs_signoff": "digest", "commented": "never"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let prefs = v["preferences"].as_array().unwrap();
    let mode = |k: &str| {
        prefs
            .iter()
            .find(|p| p["kind"] == k)
            .map(|p| p["mode"].clone())
            .unwrap()
    };
    assert_eq!(mode("needs_signoff"), "digest");
    assert_eq!(mode("commented"), "never");
    assert_eq!(mode("approved"), "immediately");

    let (a, afp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (b, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    // Ben becomes a participant of A, then a comment on A does not reach him.
    let (s, v) = app.sign(a, "ben", "requester", &afp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    app.post(
        &format!("/api/v1/changes/{a}/comments"),
        "carla",
        json!({"body": "Looks right."}),
    )
    .await;
    until("ben's digest", || server.to("ben@req.example").len() == 1).await;
    until("ana hears of the comment", || {
        !server
            .to("ana@req.example")
            .iter()
            .all(|m| !m.header("Subject").unwrap().contains("Comment"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ben = server.to("ben@req.example");
    assert_eq!(ben.len(), 1, "one digest, nothing else");
    let d = &ben[0];
    assert!(
        d.header("Subject")
            .unwrap()
            .starts_with("countersign digest: 2"),
        "{:?}",
        d.header("Subject")
    );
    let text = d.part("text/plain").unwrap();
    assert!(
        text.contains(&format!("CHG-{a}")) && text.contains(&format!("CHG-{b}")),
        "{text}"
    );
    assert!(d.part("text/html").unwrap().contains(&format!("CHG-{b}")));
    let mut conn = app.conn();
    let digested: i64 = outbox::table
        .filter(outbox::state.eq("digested"))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(digested, 2);
}

async fn the_outbox_commits_with_its_event(backend: Backend) {
    use countersign::db::audit::Actor;
    use countersign::db::write_tx;
    use countersign::domain::event::Event;
    use countersign::service::events::record;
    let submitted = || Event::Submitted {
        fingerprint: None,
        targets: 1,
        roots: 1,
    };
    use countersign::error::{AppError, ErrorCode};
    let Some(app) = app_with_smtp(backend, free_port(), 24.0).await else {
        return;
    };
    app.load_fixture().await;
    let v = app
        .create("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let id = v["id"].as_i64().unwrap();
    let before = outbox_states(&app).values().sum::<i64>();
    let mut conn = app.conn();
    // An event whose transaction fails leaves no mail...
    let r: Result<(), AppError> = write_tx(&mut conn, |c| {
        record(c, &Actor("ana@req.example".into()), Some(id), submitted())?;
        Err(AppError::new(
            ErrorCode::IllegalTransition,
            "the rest of the transaction failed",
        ))
    });
    assert!(r.is_err());
    assert_eq!(outbox_states(&app).values().sum::<i64>(), before);
    // ...and a committed one has all of its mails.
    write_tx(&mut conn, |c| -> Result<(), AppError> {
        record(c, &Actor("ana@req.example".into()), Some(id), submitted())?;
        Ok(())
    })
    .unwrap();
    assert_eq!(outbox_states(&app).values().sum::<i64>(), before + 4);
}

async fn contacts_outlive_their_entities_and_get_notices(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Normal).await;
    let Some(app) = app_with_smtp(backend, server.port, 24.0).await else {
        return;
    };
    app.load_fixture().await;
    let import = |body: String| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(format!("{}/api/v1/contacts", app.address))
                .bearer_auth(app.token("carla"))
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let good = [
        json!({"entity": ORG1, "name": "Alice Admin", "email": "alice@acme.example", "role": "admin"}),
        json!({"entity": ORG1, "name": "Bill Billing", "email": "bill@acme.example", "role": "billing"}),
        json!({"entity": site(1), "name": "Tina Tech", "email": "tina@acme.example", "role": "technical"}),
    ];
    let mut lines: Vec<String> = good.iter().map(|j| j.to_string()).collect();
    lines.push(json!({"entity": "org-ffffffff", "name": "Nobody", "email": "n@x.example", "role": "admin"}).to_string());
    lines.push(
        json!({"entity": ORG1, "name": "Bad", "email": "not-an-address", "role": "admin"})
            .to_string(),
    );
    let (s, v) = import(lines.join("\n")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let errs = &v["error"]["details"]["errors"];
    assert_eq!(errs[0]["line"], 4, "{v}");
    assert!(errs[0]["message"]
        .as_str()
        .unwrap()
        .contains("not in the inventory"));
    assert_eq!(errs[1]["line"], 5);
    let (_, v) = app
        .get(&format!("/api/v1/inventory/{ORG1}/contacts"), "root")
        .await;
    assert_eq!(
        v["contacts"].as_array().unwrap().len(),
        0,
        "nothing written"
    );
    let (s, v) = import(lines[..3].join("\n")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["inserted"], 3);
    let (s, _) = app
        .client
        .post(format!("{}/api/v1/contacts", app.address))
        .bearer_auth(app.token("ana"))
        .body(lines[0].clone())
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "requesters do not import contacts"
    );

    // Decommission site 1 (and its installations): the contacts stay, and the change
    // lists the affected customer with them.
    let (id, fp) = app
        .approved("decommission_site", json!({"ids": [site(1)]}))
        .await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    assert_eq!(app.entity(&site(1)).await["state"], "deleted");
    let (_, v) = app
        .get(&format!("/api/v1/inventory/{}/contacts", site(1)), "ana")
        .await;
    assert_eq!(v["contacts"][0]["email"], "tina@acme.example");
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/contacts"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["roots"], 1);
    let root = &v["affected"][0];
    assert_eq!(root["root"], ORG1);
    assert_eq!(root["root_name"], "Acme Corp");
    assert_eq!(root["targets"], 3);
    let emails: BTreeSet<String> = root["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        emails,
        set(&[
            "alice@acme.example",
            "bill@acme.example",
            "tina@acme.example"
        ])
    );
    let r = app
        .client
        .get(format!(
            "{}/api/v1/changes/{id}/contacts?format=csv",
            app.address
        ))
        .bearer_auth(app.token("ana"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("root,root_name,root_state,targets,entity,name,email,role\n"));
    assert!(csv.contains("\"alice@acme.example\",\"admin\""), "{csv}");

    // A customer notice: preview, draft, then a member of the other team approves it, which
    // sends it to the admins and technical contacts.
    let path = format!("/api/v1/changes/{id}/notices");
    let body = json!({"subject": "Your site was removed", "body": "Dear {customer},\n\nyour site was removed by {change}.", "roles": ["admin", "technical"], "preview": true});
    let (s, v) = app.post(&path, "carla", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["recipient_count"], 2);
    assert!(
        v["sample"].as_str().unwrap().starts_with("Dear Acme Corp,"),
        "{v}"
    );
    assert!(server
        .mails()
        .iter()
        .all(|m| !m.to.contains(&"alice@acme.example".to_string())));
    let (s, v) = app.post(&path, "olga", body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let mut send = body;
    send["preview"] = json!(false);
    let (s, v) = app.post(&path, "carla", send).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "draft");
    let (s, v) = app
        .post(&format!("{path}/{}/approve", v["id"]), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    until("the notice delivered", || {
        server.to("alice@acme.example").len() == 1 && server.to("tina@acme.example").len() == 1
    })
    .await;
    assert!(
        server.to("bill@acme.example").is_empty(),
        "billing was not asked for"
    );
    let m = &server.to("alice@acme.example")[0];
    assert_eq!(m.header("Subject").unwrap(), "Your site was removed");
    assert!(m.header("List-Unsubscribe").is_none());
    let text = m.part("text/plain").unwrap();
    assert!(
        text.contains(&format!(
            "Dear Acme Corp,\r\n\r\nyour site was removed by CHG-{id}."
        )) || text.contains(&format!(
            "Dear Acme Corp,\n\nyour site was removed by CHG-{id}."
        )),
        "{text}"
    );
    let (_, v) = app.get(&path, "ana").await;
    assert_eq!(v["notices"][0]["recipient_count"], 2);
    assert_eq!(v["notices"][0]["drafted_by"], "carla@ops.example");
    assert_eq!(v["notices"][0]["sent_by"], "ben@req.example");
}

async fn stale_rejected_cancelled_halted_and_rollback_mails(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(
        &schema,
        format!(
            "{}\n\n[operations.deprovision_app]\nlabel = \"Deprovision at the vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"http://127.0.0.1:{}/hook\"\nsecret_env = \"CS_MAIL_HOOK\"\ntimeout_ms = 300\nmax_attempts = 1\n",
            countersign::domain::schema::EXAMPLE_SCHEMA,
            free_port()
        ),
    )
    .unwrap();
    let Some(app) = app_with_smtp_and(backend, server.port, 24.0, move |c| {
        c.schema_path = Some(schema);
        c.secrets.insert("CS_MAIL_HOOK".into(), "s3cret".into());
    })
    .await
    else {
        return;
    };
    app.load_fixture().await;
    let subjects = |to: &str| -> Vec<String> {
        server
            .to(to)
            .iter()
            .map(|m| m.header("Subject").unwrap())
            .collect()
    };

    // Stale: ben signed, then the inventory moved under the selector.
    let sel = json!({"within": {"kind": "site", "ids": [site(1)]}, "where": {"app": "insight"}});
    let (a, afp) = app.submitted("ana", "uninstall_app", sel).await;
    app.sign(a, "ben", "requester", &afp, None).await;
    let line = json!({"kind": "app_install", "id": inst(99), "parent": site(1), "name": "insight again", "attrs": {"app": "insight", "version": "1.0.0"}}).to_string();
    app.import("carla", &[line], false).await;
    let (s, v) = app
        .post(&format!("/api/v1/changes/{a}/resolve"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    until("the stale mail", || {
        subjects("ben@req.example")
            .iter()
            .any(|s| s.contains("Your sign-off went stale"))
    })
    .await;
    let m = server
        .to("ben@req.example")
        .into_iter()
        .find(|m| m.header("Subject").unwrap().contains("stale"))
        .unwrap();
    let text = m.part("text/plain").unwrap();
    assert!(text.contains("1 added, 0 removed"), "{text}");
    assert!(
        text.contains(&inst(99)),
        "the added target is named: {text}"
    );

    // Rejected, with the reason, to the author.
    let (b, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    app.post(
        &format!("/api/v1/changes/{b}/reject"),
        "carla",
        json!({"reason": "Legal hold on site 2."}),
    )
    .await;
    until("the rejection", || {
        server.to("ana@req.example").iter().any(|m| {
            m.header("Subject").unwrap() == format!("[CHG-{b}] Rejected: t")
                && m.part("text/plain")
                    .unwrap()
                    .contains("Legal hold on site 2.")
        })
    })
    .await;

    // Cancelled by the author: the signer hears of it.
    let (c, cfp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(5)]}))
        .await;
    app.sign(c, "ben", "requester", &cfp, None).await;
    app.post(
        &format!("/api/v1/changes/{c}/cancel"),
        "ana",
        json!({"reason": "Not needed after all."}),
    )
    .await;
    until("the cancellation", || {
        subjects("ben@req.example").contains(&format!("[CHG-{c}] Cancelled: t"))
    })
    .await;

    // Halted: the external executor is down; the implementing team is told why.
    let (d, dfp) = app
        .approved("deprovision_app", json!({"ids": [inst(7)]}))
        .await;
    app.execute(d, &dfp).await;
    app.wait_execution(d, &["halted"]).await;
    until("the halt", || {
        subjects("eli@ops.example").contains(&format!("[CHG-{d}] Execution HALTED: t"))
    })
    .await;
    let m = server
        .to("eli@ops.example")
        .into_iter()
        .find(|m| m.header("Subject").unwrap().contains("HALTED"))
        .unwrap();
    assert!(m.part("text/plain").unwrap().contains("resumes or aborts"));

    // Aborted: the author hears what was skipped and why (not the counts of a finished run,
    // which an abort does not have).
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{d}/abort"),
            "dev",
            json!({"reason": "receiver retired"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    until("the abort", || {
        subjects("ana@req.example").contains(&format!("[CHG-{d}] Execution aborted: t"))
    })
    .await;
    let m = server
        .to("ana@req.example")
        .into_iter()
        .find(|m| m.header("Subject").unwrap().contains("Execution aborted"))
        .unwrap();
    let text = m.part("text/plain").unwrap();
    assert!(
        text.contains("pending targets were skipped")
            && text.contains("Reason: aborted by dev@ops.example: receiver retired")
            && !text.contains(" done,  failed"),
        "{text}"
    );

    // A rollback: the other participants hear of it.
    let (e, efp) = app
        .approved("uninstall_app", json!({"ids": [inst(2)]}))
        .await;
    app.execute(e, &efp).await;
    app.wait_execution(e, &["completed"]).await;
    let (s, v) = app
        .post(&format!("/api/v1/changes/{e}/rollback"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    until("the rollback mail", || {
        subjects("carla@ops.example").contains(&format!("[CHG-{e}] Rollback created: t"))
            && subjects("ana@req.example").contains(&format!("[CHG-{e}] Rollback created: t"))
    })
    .await;
    assert!(!subjects("ben@req.example").contains(&format!("[CHG-{e}] Rollback created: t")));
}

/// Without SMTP, mails are `.eml` files in a directory.
async fn without_smtp_mails_are_files(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail");
    let p2 = path.clone();
    let Some(app) = spawn_app_with(backend, move |c| {
        c.mail = MailConfig {
            transport: MailTransport::Dir(p2),
            mailer: true,
            poll_ms: 50,
            ..MailConfig::off()
        };
    })
    .await
    else {
        return;
    };
    app.load_fixture().await;
    app.submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    until("four .eml files", || {
        std::fs::read_dir(&path)
            .map(|d| d.count() == 4)
            .unwrap_or(false)
    })
    .await;
    let f = std::fs::read_dir(&path).unwrap().next().unwrap().unwrap();
    assert!(f
        .file_name()
        .to_string_lossy()
        .ends_with("-needs_signoff.eml"));
    let text = std::fs::read_to_string(f.path()).unwrap();
    assert!(
        text.contains("Subject: [CHG-1] Needs your sign-off: t"),
        "{text}"
    );
    assert!(text.contains("multipart/alternative"));
}

macro_rules! mail_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::helpers::Backend;
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }
            }
        )*
    };
}

mail_tests!(
    the_story_by_mail,
    smtp_down_then_back_delivers_everything_once,
    a_rejected_recipient_goes_dead_and_can_be_retried,
    a_stalled_server_times_out_and_is_retried,
    digests_and_opt_outs,
    the_outbox_commits_with_its_event,
    contacts_outlive_their_entities_and_get_notices,
    stale_rejected_cancelled_halted_and_rollback_mails,
    without_smtp_mails_are_files,
);
