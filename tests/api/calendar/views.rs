//! The lockdown with a running execution, the calendar over a range (API and pages) and
//! the iCalendar feed.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;

use super::{agreed, app, code, freeze, versioned};
use crate::both_backends;
use crate::helpers::{inst, Backend, TestApp};

async fn a_lockdown_pauses_within_one_batch_and_its_lift_resumes(backend: Backend) {
    let app = app(backend, 1, 250).await;
    let ids: Vec<String> = (1..=8).map(inst).collect();
    let (c, fp) = app.approved("uninstall_app", json!({"ids": ids})).await;
    let (other, other_fp) = versioned(&app, json!({"ids": [inst(1)]})).await;
    let (s, v) = app.execute(c, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    // Running, something done.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, e) = app
            .get(&format!("/api/v1/changes/{c}/execution"), "ana")
            .await;
        if e["done"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{e}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (s, v) = app
        .post("/api/v1/calendar/lockdown", "root", json!({}))
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "reason_required"),
        "{v}"
    );
    agreed(
        &app,
        "/api/v1/calendar/lockdown",
        json!({"reason": "incident INC-7"}),
    )
    .await;
    let (_, e) = app
        .get(&format!("/api/v1/changes/{c}/execution"), "ana")
        .await;
    let done_at_lockdown = e["done"].as_u64().unwrap();
    let e = app.wait_execution(c, &["paused"]).await;
    // Within one batch (of one target) of the confirmation.
    assert!(
        e["done"].as_u64().unwrap() <= done_at_lockdown + 1,
        "{e} vs {done_at_lockdown}"
    );
    assert!(e["done"].as_u64().unwrap() < 8, "{e}");
    assert!(
        e["pause_reason"].as_str().unwrap().contains("lockdown"),
        "{e}"
    );
    // It stays paused; nothing starts, nothing continues; a second lockdown is refused.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (_, e2) = app
        .get(&format!("/api/v1/changes/{c}/execution"), "ana")
        .await;
    assert_eq!(
        (&e2["state"], &e2["done"]),
        (&json!("paused"), &e["done"]),
        "{e2}"
    );
    let (s, v) = app.execute(other, &other_fp).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "lockdown"), "{v}");
    let (s, v) = app
        .post(&format!("/api/v1/changes/{c}/continue"), "carla", json!({}))
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "lockdown"), "{v}");
    let (s, v) = app
        .post(
            "/api/v1/calendar/lockdown",
            "rita",
            json!({"reason": "again"}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "lockdown_state"),
        "{v}"
    );
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    assert_eq!(st["lockdown"]["reason"], "incident INC-7", "{st}");
    // Everyone involved is mailed: the approved and the executing change's people.
    {
        use countersign::db::schema::outbox;
        use diesel::prelude::*;
        let conn = &mut app.conn();
        let mails: Vec<(Option<i64>, String)> = outbox::table
            .filter(outbox::payload.like("%lockdown_declared%"))
            .select((outbox::change_id, outbox::recipient))
            .load(conn)
            .unwrap();
        let changes: std::collections::BTreeSet<i64> = mails.iter().filter_map(|m| m.0).collect();
        assert!(
            changes.contains(&c) && changes.contains(&other),
            "{mails:?}"
        );
        assert!(mails.iter().any(|m| m.1 == "ana@req.example"), "{mails:?}");
    }
    // The banner is on every page.
    let b = crate::web::sign_in(&app, "ana").await;
    let (_, home) = b.get("/").await;
    assert!(
        home.contains("Lockdown since") && home.contains("incident INC-7"),
        "{home}"
    );
    // Lifting takes two; the execution goes on by itself and completes.
    let (s, v) = app
        .post(
            "/api/v1/calendar/lockdown/lift",
            "root",
            json!({"reason": "resolved"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let pid = v["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/confirm"),
            "root",
            json!({}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::FORBIDDEN, "own_proposal"),
        "{v}"
    );
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/confirm"),
            "rita",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let e = app.wait_execution(c, &["completed"]).await;
    assert_eq!(
        (e["done"].as_u64(), e["failed"].as_u64()),
        (Some(8), Some(0)),
        "{e}"
    );
    let (_, events) = app.get(&format!("/api/v1/changes/{c}/events"), "ana").await;
    let actions: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "lockdown_declared",
        "execution_paused_by_lockdown",
        "execution_resumed_after_lockdown",
        "lockdown_lifted",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    // Each target exactly once.
    let (_, items) = app
        .get(&format!("/api/v1/changes/{c}/execution/items"), "ana")
        .await;
    let mut seen: HashMap<String, u32> = HashMap::new();
    for i in items["items"].as_array().unwrap() {
        *seen
            .entry(i["id"].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
        assert_eq!(i["status"], "done", "{i}");
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    let (_, home) = b.get("/").await;
    assert!(!home.contains("Lockdown since"), "banner gone");
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    assert!(st["lockdown"].is_null(), "{st}");
}

async fn the_calendar_api_answers_a_checked_range(app: TestApp) {
    freeze(&app, json!({"name": "Weekend", "severity": "soft", "starts_at": "2026-11-01T00:00:00Z", "recurrence": "FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h"})).await;
    freeze(&app, json!({"name": "Year end", "severity": "hard", "starts_at": "2026-12-20T00:00:00Z", "ends_at": "2027-01-04T00:00:00Z", "operations": ["uninstall_app"]})).await;
    let (s, v) = app
        .post("/api/v1/changes", "ana", json!({"title": "Over the holidays", "rationale": "r", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(6)]}, "not_before": "2026-12-22T09:00:00Z", "not_after": "2026-12-22T17:00:00Z", "submit": true}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v) = app
        .get("/api/v1/calendar?from=2026-12-01&to=2027-01-01", "otto")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let freezes = v["freezes"].as_array().unwrap();
    assert_eq!(freezes.len(), 2, "{v}");
    let weekend = freezes.iter().find(|f| f["name"] == "Weekend").unwrap();
    assert_eq!(
        weekend["occurrences"].as_array().unwrap().len(),
        4,
        "{weekend}"
    );
    assert_eq!(weekend["occurrences"][0]["start"], "2026-12-04T16:00:00");
    assert_eq!(weekend["occurrences"][0]["end"], "2026-12-07T08:00:00");
    let ch = v["changes"].as_array().unwrap();
    assert_eq!(ch.len(), 1, "{v}");
    assert_eq!(ch[0]["change"], format!("CHG-{id}"));
    assert_eq!(ch[0]["freezes"], json!(["Year end (hard)"]), "{v}");
    for (q, want) in [
        ("from=2027-01-01&to=2026-12-01", "invalid_range"),
        ("from=2026-01-01&to=2027-06-01", "invalid_range"),
        ("from=yesterday", "invalid_range"),
        ("from=2026-01-01&until=2026-02-01", "invalid_query"),
        // Years chrono parses but no date arithmetic survives (a panic before the bound).
        ("from=%2B262142-12-01", "invalid_range"),
        ("from=-262143-01-01", "invalid_range"),
        ("from=1999-12-31&to=2000-01-02", "invalid_range"),
    ] {
        let (s, v) = app.get(&format!("/api/v1/calendar?{q}"), "ana").await;
        assert!(s.is_client_error(), "{q}: {s}");
        assert_eq!(code(&v), want, "{q}: {v}");
    }
    // The page too: a clear refusal, never a 500.
    let page = crate::web::sign_in(&app, "ana").await;
    for q in ["from=%2B262142-12-01", "from=-262143-01-01&view=list"] {
        let (s, _) = page.get(&format!("/calendar?{q}")).await;
        assert!(s.is_client_error(), "/calendar?{q}: {s}");
    }
    // A change window outside the years 2000-9999 is refused at creation.
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "far", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [crate::helpers::inst(1)]}, "not_after": "9999-12-31T23:59:59Z", "not_before": "1970-01-01T00:00:00Z"})).await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_window"),
        "{v}"
    );
    let (s, _) = app.get("/api/v1/calendar", "nobody").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The new-change form warns about the overlap; the queue marks the change.
    let b = crate::web::sign_in(&app, "ben").await;
    let (_, queue) = b.get("/queue").await;
    assert!(queue.contains("frozen: Year end (hard)"), "{queue}");
    let (_, q) = app.get("/api/v1/queue", "ben").await;
    assert_eq!(
        q["changes"][0]["freezes"],
        json!(["Year end (hard)"]),
        "{q}"
    );
    // The new-change form's preview warns about a window that overlaps a freeze.
    let (s, _, form) = b
        .post(
            "/changes/new",
            &[
                ("csrf", b.csrf.as_str()),
                ("operation", "uninstall_app"),
                ("requesting_team", "app-owners"),
                ("title", "During the freeze"),
                ("ids", inst(7).as_str()),
                ("not_before", "2026-12-24T10:00"),
                ("not_after", "2026-12-24T12:00"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{form}");
    assert!(
        form.contains("The chosen window overlaps a freeze: the hard freeze “Year end”"),
        "{form}"
    );
    let (_, _, form) = b
        .post(
            "/changes/new",
            &[
                ("csrf", b.csrf.as_str()),
                ("operation", "uninstall_app"),
                ("requesting_team", "app-owners"),
                ("title", "After the freeze"),
                ("ids", inst(7).as_str()),
                ("not_before", "2027-01-05T10:00"),
                ("not_after", "2027-01-05T12:00"),
                ("action", "preview"),
            ],
        )
        .await;
    assert!(
        !form.contains("overlaps a freeze: the hard"),
        "only the weekend: {form}"
    );
    let (s, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("Year end"),
        "the change page names the freeze"
    );
    let (s, cal) = b.get("/calendar?from=2026-12-01&to=2027-01-01").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        cal.contains("Weekend") && cal.contains(&format!("CHG-{id}")),
        "{cal}"
    );
    let (s, list) = b
        .get("/calendar?view=list&from=2026-12-01&to=2027-01-01")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.contains("Year end"), "{list}");
    let (s, _) = b.get("/calendar?from=2027-01-01&to=2026-01-01").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn the_ics_feed_is_rfc_5545(app: TestApp) {
    freeze(&app, json!({"name": "Weekend, EMEA; all ops", "severity": "hard", "starts_at": "2026-11-01T00:00:00Z", "ends_at": "2027-06-01T00:00:00Z", "recurrence": "FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h", "reason": "A long reason that goes on and on so that the description line is longer than seventy-five octets — with ünïcödé."})).await;
    freeze(&app, json!({"name": "Year end", "severity": "soft", "starts_at": "2026-12-20T00:00:00Z", "ends_at": "2027-01-04T00:00:00Z"})).await;
    // No token, a wrong token, a bearer token instead: refused.
    for q in [
        "",
        "?token=csf_nope",
        &format!("?token={}", app.token("ana")),
    ] {
        let r = app
            .client
            .get(format!("{}/calendar.ics{q}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{q}");
    }
    let (s, v) = app
        .post("/api/v1/me/calendar-token", "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    assert!(v["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/calendar.ics?token={token}")));
    let r = app
        .client
        .get(format!("{}/calendar.ics?token={token}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/calendar"));
    let body = r.text().await.unwrap();
    assert!(
        body.starts_with("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:"),
        "{body}"
    );
    assert!(body.ends_with("END:VCALENDAR\r\n"));
    assert!(
        !body.replace("\r\n", "").contains('\n'),
        "only CRLF line ends"
    );
    for line in body.split("\r\n") {
        assert!(line.len() <= 75, "{} octets: {line}", line.len());
    }
    let unfolded = body.replace("\r\n ", "");
    assert!(
        unfolded.contains("SUMMARY:Freeze (hard): Weekend\\, EMEA\\; all ops\r\n"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("RRULE:FREQ=WEEKLY;BYDAY=FR;UNTIL=20270531T235959Z\r\n"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("DTSTART:20261106T160000Z\r\nDURATION:PT64H\r\n"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("DTSTART:20261220T000000Z\r\nDTEND:20270104T000000Z\r\n"),
        "{unfolded}"
    );
    assert!(unfolded.contains("ünïcödé"), "characters are not split");
    let events = unfolded.matches("BEGIN:VEVENT").count();
    assert_eq!(events, 2);
    assert_eq!(unfolded.matches("\r\nUID:freeze-").count(), 2);
    assert_eq!(unfolded.matches("\r\nDTSTAMP:").count(), 2);
    // A new token replaces the old one.
    let (_, v) = app
        .post("/api/v1/me/calendar-token", "ana", json!({}))
        .await;
    assert_ne!(v["token"], json!(token));
    let r = app
        .client
        .get(format!("{}/calendar.ics?token={token}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

both_backends!(backend: a_lockdown_pauses_within_one_batch_and_its_lift_resumes);

mod plain {
    use super::*;

    pub async fn the_calendar_api_answers_a_checked_range(b: Backend) {
        super::the_calendar_api_answers_a_checked_range(app(b, 100, 0).await).await
    }
    pub async fn the_ics_feed_is_rfc_5545(b: Backend) {
        super::the_ics_feed_is_rfc_5545(app(b, 100, 0).await).await
    }

    crate::both_backends!(backend: the_calendar_api_answers_a_checked_range, the_ics_feed_is_rfc_5545);
}

async fn the_command_line_takes_two_admins_too(app: TestApp) {
    let db = app.database_url.clone();
    let run = move |args: &[&str]| {
        let db = db.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
                .args(&args)
                .env("DATABASE_URL", db)
                .env("RUST_LOG", "warn")
                .env("COUNTERSIGN_MAILER", "false")
                .output()
                .unwrap()
        })
    };
    let out = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let o = run(&[
        "freeze",
        "propose",
        "--as",
        "root@admin.example",
        "--name",
        "Weekend",
        "--severity",
        "soft",
        "--from",
        "2026-11-01T00:00:00Z",
        "--every",
        "FREQ=WEEKLY;BYDAY=XX;START=16:00;DURATION=64h",
    ])
    .await
    .unwrap();
    assert!(
        !o.status.success() && out(&o).contains("`XX` is not a day"),
        "{}",
        out(&o)
    );
    let o = run(&[
        "freeze",
        "propose",
        "--as",
        "root@admin.example",
        "--name",
        "Weekend",
        "--severity",
        "soft",
        "--from",
        "2026-11-01T00:00:00Z",
        "--every",
        "FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h",
        "--operation",
        "uninstall_app",
    ])
    .await
    .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    let pid = st["pending"][0]["id"].as_i64().unwrap().to_string();
    let o = run(&["calendar", "confirm", &pid, "--as", "root@admin.example"])
        .await
        .unwrap();
    assert!(
        !o.status.success() && out(&o).contains("a different admin confirms it"),
        "{}",
        out(&o)
    );
    let o = run(&["calendar", "confirm", &pid, "--as", "rita@admin.example"])
        .await
        .unwrap();
    assert!(
        o.status.success() && out(&o).contains("confirmed"),
        "{}",
        out(&o)
    );
    let o = run(&["freeze", "list"]).await.unwrap();
    assert!(out(&o).contains("“Weekend” (soft"), "{}", out(&o));
    let o = run(&["lockdown", "status"]).await.unwrap();
    assert!(
        o.status.success() && out(&o).contains("no lockdown"),
        "{}",
        out(&o)
    );
    let o = run(&[
        "lockdown",
        "declare",
        "--as",
        "carla@ops.example",
        "--reason",
        "x",
    ])
    .await
    .unwrap();
    assert!(
        !o.status.success() && out(&o).contains("only an admin"),
        "{}",
        out(&o)
    );
}

mod cli {
    use super::*;

    pub async fn the_command_line_takes_two_admins_too(b: Backend) {
        super::the_command_line_takes_two_admins_too(app(b, 100, 0).await).await
    }

    crate::both_backends!(backend: the_command_line_takes_two_admins_too);
}

async fn the_calendar_page_forms_propose_and_check_csrf(app: TestApp) {
    let b = crate::web::sign_in(&app, "root").await;
    let form = |csrf: &str, name: &'static str| {
        vec![
            ("csrf", csrf.to_string()),
            ("name", name.to_string()),
            ("severity", "soft".to_string()),
            ("starts_at", "2026-12-20T00:00".to_string()),
            ("ends_at", "2027-01-04T00:00".to_string()),
            ("operations", "uninstall_app, set_app_version".to_string()),
        ]
    };
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let b = &b;
        async move {
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post(&path, &f).await
        }
    };
    let (s, _, _) = post("/calendar/freezes".into(), form("wrong", "Year end")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "CSRF");
    let (s, loc, _) = post("/calendar/freezes".into(), form(&b.csrf, "Year end")).await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/calendar?done=proposed")
    );
    let (_, page) = b.get("/calendar?done=proposed").await;
    assert!(page.contains("Another admin confirms it"), "{page}");
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    let pid = st["pending"][0]["id"].as_i64().unwrap();
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{pid}/confirm"),
            "rita",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    let f = &st["freezes"][0];
    assert_eq!(
        f["operations"],
        json!(["set_app_version", "uninstall_app"]),
        "{f}"
    );
    let fid = f["id"].as_i64().unwrap();
    // The page's edit form proposes new fields; a bad rule is a clear 422.
    let (_, page) = b.get("/calendar").await;
    assert!(
        page.contains(&format!("/calendar/freezes/{fid}/edit")),
        "{page}"
    );
    let mut bad = form(&b.csrf, "Year end");
    bad.push(("recurrence", "FREQ=HOURLY".to_string()));
    let path = format!("/calendar/freezes/{fid}/edit");
    let (s, _, body) = post(path.clone(), bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("HOURLY"), "{body}");
    let (s, loc, _) = post(path, form(&b.csrf, "Year end, all of it")).await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/calendar?done=proposed")
    );
    let (_, st) = app.get("/api/v1/calendar/state", "ana").await;
    assert_eq!(st["pending"][0]["action"], "edit_freeze", "{st}");
    // Not an admin: the forms are not shown, and posting them is refused.
    let ana = crate::web::sign_in(&app, "ana").await;
    let (_, page) = ana.get("/calendar").await;
    assert!(!page.contains("Propose a freeze"), "{page}");
    let (s, _, _) = ana
        .post(
            "/calendar/lockdown",
            &[("csrf", ana.csrf.as_str()), ("reason", "x")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

mod page_forms {
    use super::*;

    pub async fn the_calendar_page_forms_propose_and_check_csrf(b: Backend) {
        super::the_calendar_page_forms_propose_and_check_csrf(app(b, 100, 0).await).await
    }

    crate::both_backends!(backend: the_calendar_page_forms_propose_and_check_csrf);
}
