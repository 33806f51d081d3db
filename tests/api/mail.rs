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

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::smtp::{free_port, Mode, SmtpServer};

pub(crate) async fn app_with_smtp(backend: Backend, port: u16, digest_hours: f64) -> TestApp {
    app_with_smtp_and(backend, port, digest_hours, |_| {}).await
}

pub(crate) async fn app_with_smtp_and(
    backend: Backend,
    port: u16,
    digest_hours: f64,
    tweak: impl FnOnce(&mut countersign::config::Config),
) -> TestApp {
    spawn_app_with(backend, move |c| {
        tweak(c);
        c.mail = smtp_config(port, digest_hours);
    })
    .await
}

pub(crate) fn smtp_config(port: u16, digest_hours: f64) -> MailConfig {
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
        hook_timeout_secs: 1,
        poll_ms: 50,
        digest_hours,
        lease_secs: 30,
    }
}

pub(crate) fn outbox_states(app: &TestApp) -> BTreeMap<String, i64> {
    let mut conn = app.conn();
    let rows: Vec<String> = outbox::table.select(outbox::state).load(&mut conn).unwrap();
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r).or_default() += 1;
    }
    m
}

/// Wait until `f` holds (10 s at most).
pub(crate) async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn recipients(server: &SmtpServer, subject_part: &str) -> BTreeSet<String> {
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

pub(crate) fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn the_story_by_mail(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Normal).await;
    let app = app_with_smtp(backend, server.port, 24.0).await;
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
    let app = app_with_smtp(backend, port, 24.0).await;
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
    let app = app_with_smtp(backend, server.port, 24.0).await;
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
    let app = app_with_smtp(backend, server.port, 24.0).await;
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
    let app = app_with_smtp(backend, server.port, 0.0004).await;
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
    let app = app_with_smtp(backend, free_port(), 24.0).await;
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

/// Without SMTP, mails are `.eml` files in a directory.
async fn without_smtp_mails_are_files(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail");
    let p2 = path.clone();
    let app = spawn_app_with(backend, move |c| {
        c.mail = MailConfig {
            transport: MailTransport::Dir(p2),
            mailer: true,
            poll_ms: 50,
            ..MailConfig::off()
        };
    })
    .await;
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

both_backends!(
    backend:
    the_story_by_mail,
    smtp_down_then_back_delivers_everything_once,
    a_rejected_recipient_goes_dead_and_can_be_retried,
    a_stalled_server_times_out_and_is_retried,
    digests_and_opt_outs,
    the_outbox_commits_with_its_event,
    without_smtp_mails_are_files,
);
