//! Accounts (issue #10): token expiry and last use, the password page, printed initial
//! passwords that must be replaced, the sessions page.

use std::process::{Command, Output};

use countersign::db::schema::{api_tokens, audit_events, users as users_t, web_sessions};
use countersign::db::users;
use diesel::prelude::*;
use reqwest::redirect::Policy;
use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::TestApp;
use crate::web::{client, field, sign_in, Browser};

/// The password `web::sign_in` gives people.
const PW: &str = "correct horse battery";
const NEW_PW: &str = "a much longer and better passphrase";

fn user_id(app: &TestApp, email: &str) -> i64 {
    users::find_user_by_email(&mut app.conn(), email)
        .unwrap()
        .expect("user")
        .id
}

fn token_last_used(app: &TestApp, token: &str) -> Option<chrono::NaiveDateTime> {
    api_tokens::table
        .filter(api_tokens::token_hash.eq(users::hash_token(token)))
        .select(api_tokens::last_used_at)
        .first(&mut *app.conn())
        .unwrap()
}

fn audit_details(app: &TestApp, action: &str) -> Vec<(String, String)> {
    audit_events::table
        .filter(audit_events::action.eq(action))
        .order(audit_events::id.asc())
        .select((audit_events::actor, audit_events::detail))
        .load(&mut *app.conn())
        .unwrap()
}

/// The `data-session` ids of the sessions page, and which one is marked current.
fn session_ids(page: &str) -> (Vec<String>, Option<String>) {
    let mut ids = vec![];
    let mut current = None;
    for part in page.split("<tr data-session=\"").skip(1) {
        let id = part.split('"').next().unwrap().to_string();
        let row = part.split("</tr>").next().unwrap();
        if row.contains("(this session)") {
            current = Some(id.clone());
        }
        ids.push(id);
    }
    (ids, current)
}

/// Sign in with the login form as it is (no password set first); returns the browser,
/// the status and where it was sent.
async fn login(
    app: &TestApp,
    email: &str,
    pw: &str,
    c: reqwest::Client,
) -> (Browser, StatusCode, String) {
    let base = app.address.clone();
    let r = crate::web::post_login(&c, &base, email, pw, "/").await;
    let status = r.status();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        Browser {
            c,
            base,
            csrf: String::new(),
        },
        status,
        loc,
    )
}

async fn location(b: &Browser, path: &str) -> (StatusCode, String) {
    let r = b.c.get(format!("{}{path}", b.base)).send().await.unwrap();
    let loc = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status(), loc)
}

async fn run_cli(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let url = app.database_url.clone();
    let o = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let fake = TestAppUrl(url);
        fake.run(&a)
    })
    .await
    .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// Just the database URL, to run the CLI off the async runtime.
struct TestAppUrl(String);

impl TestAppUrl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(args)
            .env("DATABASE_URL", &self.0)
            .env("RUST_LOG", "warn")
            .env("COUNTERSIGN_MAILER", "false")
            .env_remove("COUNTERSIGN_SCHEMA")
            .output()
            .expect("run countersign")
    }
}

// ---- tokens ------------------------------------------------------------------------------

async fn expired_tokens_are_refused_with_their_code(app: TestApp) {
    let ana = user_id(&app, "ana@req.example");
    let (past, future) = {
        let mut conn = app.conn();
        let t = countersign::db::now();
        (
            users::create_token_expiring(
                &mut conn,
                ana,
                "old",
                Some(t - chrono::Duration::minutes(1)),
            )
            .unwrap(),
            users::create_token_expiring(
                &mut conn,
                ana,
                "new",
                Some(t + chrono::Duration::days(1)),
            )
            .unwrap(),
        )
    };
    let me = |token: String| {
        let c = app.client.clone();
        let url = format!("{}/api/v1/me", app.address);
        async move {
            let r = c.get(url).bearer_auth(token).send().await.unwrap();
            let s = r.status();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (s, v) = me(past.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "token_expired", "{v}");
    assert!(v["error"]["details"]["expired_at"].is_string(), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("expired"),
        "{v}"
    );
    assert_eq!(
        token_last_used(&app, &past),
        None,
        "a refused use is not recorded"
    );
    let (s, v) = me(future).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["email"], "ana@req.example", "{v}");
    // Unknown and revoked tokens keep their own code.
    let (s, v) = me("cs_nope".into()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthenticated", "{v}");

    // The settings page creates tokens with a lifetime and shows it.
    let b = sign_in(&app, "ana").await;
    let (s, _, page) = b
        .post(
            "/settings/tokens",
            &[("csrf", &b.csrf), ("label", "week"), ("expires", "7")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let token = page
        .split("<code id=\"new-token\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    let expires: Option<chrono::NaiveDateTime> = api_tokens::table
        .filter(api_tokens::token_hash.eq(users::hash_token(&token)))
        .select(api_tokens::expires_at)
        .first(&mut *app.conn())
        .unwrap();
    let days = (expires.expect("an expiry") - countersign::db::now()).num_hours();
    assert!((7 * 24 - 1..=7 * 24).contains(&days), "{days} hours");
    let shown = expires.unwrap().format("%Y-%m-%d %H:%M UTC").to_string();
    assert!(page.contains(&shown), "expiry {shown} not shown");
    assert!(
        page.contains("<option value=\"90\" selected>"),
        "90 days preselected"
    );
    let (s, _, page) = b
        .post(
            "/settings/tokens",
            &[
                ("csrf", &b.csrf),
                ("label", "forever"),
                ("expires", "never"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("<td>forever</td><td>") && page.contains("<td>never</td>"));
    let (s, _, _) = b
        .post(
            "/settings/tokens",
            &[("csrf", &b.csrf), ("label", "odd"), ("expires", "12")],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The expired one is listed as expired, without a revoke button.
    let (_, settings) = b.get("/settings").await;
    assert!(settings.contains("<td>old</td>"), "{settings}");
    let old_row = settings
        .split("<td>old</td>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(old_row.contains(">expired<"), "{old_row}");
}

async fn token_and_session_use_is_recorded_once_a_minute(app: TestApp) {
    let token = app.token("ana").to_string();
    assert_eq!(token_last_used(&app, &token), None);
    let (s, _) = app.get("/api/v1/me", "ana").await;
    assert_eq!(s, StatusCode::OK);
    let first = token_last_used(&app, &token).expect("the use is recorded");
    let age = countersign::db::now() - first;
    assert!(
        age >= chrono::Duration::zero() && age < chrono::Duration::seconds(30),
        "{age}"
    );
    // Within the minute: no second write.
    for _ in 0..3 {
        app.get("/api/v1/queue", "ana").await;
    }
    assert_eq!(token_last_used(&app, &token), Some(first), "throttled");
    // A minute later, the next use is recorded.
    let earlier = first - chrono::Duration::seconds(90);
    diesel::update(api_tokens::table.filter(api_tokens::token_hash.eq(users::hash_token(&token))))
        .set(api_tokens::last_used_at.eq(Some(earlier)))
        .execute(&mut *app.conn())
        .unwrap();
    app.get("/api/v1/me", "ana").await;
    let second = token_last_used(&app, &token).unwrap();
    assert!(second >= first, "{second} after {first}");
    if app.database_url.starts_with("sqlite") {
        // Recording a use never queues behind SQLite's write lock: within the minute no
        // write is even tried, and a due one gives up at once instead of holding the request.
        use diesel::connection::SimpleConnection;
        let mut lock = app.conn();
        lock.batch_execute("BEGIN IMMEDIATE").unwrap();
        let mut c = app.conn();
        let t = users::token_use(&mut c, &token).unwrap().unwrap();
        assert!(
            !users::touch_token(&mut c, &t).expect("no write tried, so not busy"),
            "within the minute"
        );
        lock.batch_execute("ROLLBACK").unwrap();
        diesel::update(
            api_tokens::table.filter(api_tokens::token_hash.eq(users::hash_token(&token))),
        )
        .set(api_tokens::last_used_at.eq(Some(earlier)))
        .execute(&mut *app.conn())
        .unwrap();
        lock.batch_execute("BEGIN IMMEDIATE").unwrap();
        let started = std::time::Instant::now();
        assert_eq!(app.get("/api/v1/me", "ana").await.0, StatusCode::OK);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        lock.batch_execute("ROLLBACK").unwrap();
        assert_eq!(
            token_last_used(&app, &token),
            Some(earlier),
            "skipped, not waited for"
        );
        app.get("/api/v1/me", "ana").await;
        assert!(
            token_last_used(&app, &token).unwrap() >= second,
            "recorded next time"
        );
    }
    let second = token_last_used(&app, &token).unwrap();
    // The settings page shows it.
    let b = sign_in(&app, "ana").await;
    let (_, page) = b.get("/settings").await;
    let shown = second.format("%Y-%m-%d %H:%M UTC").to_string();
    let row = page
        .split("<td>test</td>")
        .nth(1)
        .unwrap()
        .split("</tr>")
        .next()
        .unwrap();
    assert!(row.contains(&shown), "last use {shown} missing in {row}");

    // Sessions likewise: seen at sign-in's first page, not again within the minute.
    let ana = user_id(&app, "ana@req.example");
    let seen = || -> Vec<Option<chrono::NaiveDateTime>> {
        web_sessions::table
            .filter(web_sessions::user_id.eq(ana))
            .select(web_sessions::last_seen_at)
            .load(&mut *app.conn())
            .unwrap()
    };
    let before = seen();
    assert_eq!(before.len(), 1);
    assert!(before[0].is_some(), "the session's use is recorded");
    b.get("/queue").await;
    b.get("/settings").await;
    assert_eq!(seen(), before, "throttled");
}

// ---- the password page -------------------------------------------------------------------

async fn changing_the_password_ends_the_other_sessions(app: TestApp) {
    let b = sign_in(&app, "ana").await;
    let other = sign_in(&app, "ana").await;
    assert_eq!(other.get("/").await.0, StatusCode::OK);
    let (s, page) = b.get("/settings/password").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("name=\"current\"") && page.contains("name=\"repeat\""));
    assert!(!page.contains("id=\"must-change\""), "not forced");

    let post = |current: &'static str, new: &'static str, repeat: &'static str| {
        let b = &b;
        async move {
            b.post(
                "/settings/password",
                &[
                    ("csrf", b.csrf.as_str()),
                    ("current", current),
                    ("new", new),
                    ("repeat", repeat),
                    ("next", "/"),
                ],
            )
            .await
        }
    };
    // Wrong current password: the form again, with the reason, nothing echoed.
    let (s, _, page) = post("not my password", NEW_PW, NEW_PW).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"password-errors\""), "{page}");
    assert!(
        page.contains("The current password is not right."),
        "{page}"
    );
    assert!(!page.contains(NEW_PW) && !page.contains("not my password"));
    assert!(page.contains("name=\"current\""), "the form is there again");
    // Too short, not repeated, the email, the same as now.
    let (s, _, page) = post(PW, "short", "short").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("too short: use at least 12 characters"),
        "{page}"
    );
    assert!(!page.contains("current password is not right"));
    let (_, _, page) = post(PW, NEW_PW, "something else entirely").await;
    assert!(
        page.contains("The two new passwords are not the same."),
        "{page}"
    );
    let (_, _, page) = post(PW, "ana@req.example", "ana@req.example").await;
    assert!(page.contains("must not be your email address"), "{page}");
    let (_, _, page) = post(PW, PW, PW).await;
    assert!(page.contains("must differ from the current one"), "{page}");
    // A form without the CSRF token changes nothing.
    let (s, _, _) = b
        .post(
            "/settings/password",
            &[("current", PW), ("new", NEW_PW), ("repeat", NEW_PW)],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        other.get("/").await.0,
        StatusCode::OK,
        "nothing changed yet"
    );

    let (s, loc, _) = post(PW, NEW_PW, NEW_PW).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(loc, "/settings/password?done=password");
    let (s, page) = b.get(&loc).await;
    assert_eq!(s, StatusCode::OK, "this browser stays signed in");
    assert!(page.contains("Your password is changed"), "{page}");
    let (s, loc) = location(&other, "/queue").await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the other session is over");
    assert_eq!(loc, "/login?next=/queue");
    // One session left (the re-issued one), and only the new password signs in.
    let ana = user_id(&app, "ana@req.example");
    let n: i64 = web_sessions::table
        .filter(web_sessions::user_id.eq(ana))
        .count()
        .get_result(&mut *app.conn())
        .unwrap();
    assert_eq!(n, 1);
    let (_, s, _) = login(&app, "ana@req.example", PW, client()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the old password is gone");
    let (_, s, _) = login(&app, "ana@req.example", NEW_PW, client()).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // API tokens are separate credentials.
    assert_eq!(app.get("/api/v1/me", "ana").await.0, StatusCode::OK);
    // Audited, without secrets.
    let events = audit_details(&app, "password_changed");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "ana@req.example");
    assert!(
        events[0].1.contains("\"other_sessions_ended\":1"),
        "{events:?}"
    );
    assert!(!events[0].1.contains(NEW_PW) && !events[0].1.contains(PW));
    assert!(!events[0].1.contains("argon2"), "{events:?}");
}

// ---- printed initial passwords ---------------------------------------------------------------

async fn printed_initial_passwords_must_be_replaced(app: TestApp) {
    let email = "newbie@req.example";
    let (ok, out, err) = run_cli(
        &app,
        &[
            "user",
            "add",
            email,
            "--name",
            "Newbie",
            "--team",
            "app-owners",
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    let initial = out
        .split("initial password (shown once): ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no password printed: {out}"))
        .to_string();
    assert!(
        out.contains("must be replaced at the first sign-in"),
        "{out}"
    );
    // An API token works regardless; the CLI gives it a lifetime.
    let (ok, token, err) =
        run_cli(&app, &["token", "create", email, "--expires-in-days", "30"]).await;
    assert!(ok, "{err}");
    assert!(err.contains("valid until"), "{err}");
    let token = token.trim().to_string();
    let r = app
        .client
        .get(format!("{}/api/v1/me", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "tokens are not held back");
    let (ok, _, err) = run_cli(&app, &["token", "create", email, "--expires-in-days", "0"]).await;
    assert!(!ok, "0 days is refused: {err}");

    let (b, s, loc) = login(&app, email, &initial, client()).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // Straight to the password page, or to `next`, which sends there.
    assert!(loc == "/" || loc.starts_with("/settings/password"), "{loc}");
    for (path, to) in [
        ("/", "/settings/password"),
        ("/queue", "/settings/password?next=/queue"),
        ("/changes/new", "/settings/password?next=/changes/new"),
        ("/settings", "/settings/password?next=/settings"),
        (
            "/settings/sessions",
            "/settings/password?next=/settings/sessions",
        ),
        ("/glossary", "/settings/password?next=/glossary"),
    ] {
        let (s, l) = location(&b, path).await;
        assert_eq!(s, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(l, to, "{path}");
    }
    assert_eq!(location(&b, "/static/app.css").await.0, StatusCode::OK);
    let (s, page) = b.get("/settings/password?next=/queue").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("id=\"must-change\""), "{page}");
    assert!(page.contains("Choose your own password before you continue"));
    let csrf = field(&page, "csrf");
    // Forms are held back too (here: creating a token).
    let (s, loc, _) = b
        .post(
            "/settings/tokens",
            &[("csrf", csrf.as_str()), ("label", "x")],
        )
        .await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/settings/password")
    );
    let (s, loc, _) = b
        .post(
            "/settings/password",
            &[
                ("csrf", csrf.as_str()),
                ("current", initial.as_str()),
                ("new", NEW_PW),
                ("repeat", NEW_PW),
                ("next", "/queue"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(loc, "/queue?done=password", "back where they were going");
    for path in ["/", "/queue", "/settings", "/settings/sessions"] {
        assert_eq!(b.get(path).await.0, StatusCode::OK, "{path}");
    }
    let flag: bool = users_t::table
        .filter(users_t::email.eq(email))
        .select(users_t::must_change_password)
        .first(&mut *app.conn())
        .unwrap();
    assert!(!flag);

    // A reset from the command line: a new printed password, the sessions end, the flag again.
    let (ok, out, err) = run_cli(&app, &["user", "reset-password", email]).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("1 session(s) signed out"), "{err}");
    let reset = out
        .split("new password (shown once; to be replaced at the next sign-in): ")
        .nth(1)
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|| panic!("{out}"));
    let (s, loc) = location(&b, "/queue").await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/login?next=/queue")
    );
    let (_, s, _) = login(&app, email, NEW_PW, client()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "the own password is replaced");
    let (b2, s, _) = login(&app, email, &reset, client()).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        location(&b2, "/queue").await,
        (
            StatusCode::SEE_OTHER,
            "/settings/password?next=/queue".to_string()
        )
    );
    let resets = audit_details(&app, "password_reset");
    assert_eq!(resets.len(), 2, "user add and reset-password: {resets:?}");
    assert!(resets
        .iter()
        .all(|(_, d)| !d.contains(&initial) && !d.contains(&reset)));
    assert!(
        resets[1].1.contains("\"must_change_password\":true"),
        "{resets:?}"
    );
    // Logging out is allowed while the password must be changed.
    let (_, page) = b2.get("/settings/password").await;
    let (s, loc, _) = b2
        .post("/logout", &[("csrf", field(&page, "csrf").as_str())])
        .await;
    assert_eq!((s, loc.as_str()), (StatusCode::SEE_OTHER, "/login"));
}

// ---- sessions ----------------------------------------------------------------------------------

async fn sessions_are_listed_and_revoked(app: TestApp) {
    let b = sign_in(&app, "ana").await;
    let agent = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .user_agent("AccountsTest/1.0 (second browser)")
        .build()
        .unwrap();
    let (other, s, _) = login(&app, "ana@req.example", PW, agent).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(other.get("/").await.0, StatusCode::OK);
    let (s, page) = b.get("/settings/sessions").await;
    assert_eq!(s, StatusCode::OK);
    let (ids, current) = session_ids(&page);
    assert_eq!(ids.len(), 2, "{page}");
    let current = current.expect("the current session is marked");
    let other_id = ids.iter().find(|i| **i != current).unwrap().clone();
    assert!(page.contains("AccountsTest/1.0 (second browser)"), "{page}");
    assert!(page.contains("127.0.0.0/24"), "{page}");
    assert!(page.contains("Sign out everywhere else (1)"));
    // Ids are not token hashes.
    let hashes: Vec<String> = web_sessions::table
        .select(web_sessions::token_hash)
        .load(&mut *app.conn())
        .unwrap();
    assert!(hashes.iter().all(|h| !page.contains(h.as_str())));

    // Someone else's session: 404, and it lives on.
    let ben = sign_in(&app, "ben").await;
    let (_, ben_page) = ben.get("/settings/sessions").await;
    let ben_id = session_ids(&ben_page).1.unwrap();
    let (s, _, _) = b
        .post(
            &format!("/settings/sessions/{ben_id}/revoke"),
            &[("csrf", &b.csrf)],
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(ben.get("/").await.0, StatusCode::OK);
    // Without the CSRF token: refused.
    let (s, _, _) = b
        .post(&format!("/settings/sessions/{other_id}/revoke"), &[])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(other.get("/").await.0, StatusCode::OK);

    let (s, loc, _) = b
        .post(
            &format!("/settings/sessions/{other_id}/revoke"),
            &[("csrf", &b.csrf)],
        )
        .await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/settings/sessions?done=session")
    );
    assert_eq!(
        location(&other, "/").await,
        (StatusCode::SEE_OTHER, "/login?next=/".into())
    );
    let (_, page) = b.get("/settings/sessions?done=session").await;
    assert!(page.contains("That session is signed out."));
    assert_eq!(session_ids(&page).0, vec![current.clone()]);
    let revoked = audit_details(&app, "session_revoked");
    assert_eq!(revoked.len(), 1);
    assert!(revoked[0].1.contains(&other_id) && revoked[0].0 == "ana@req.example");

    // Sign out everywhere else.
    let third = sign_in(&app, "ana").await;
    let fourth = sign_in(&app, "ana").await;
    let (s, loc, _) = b
        .post("/settings/sessions/others/revoke", &[("csrf", &b.csrf)])
        .await;
    assert_eq!(
        (s, loc.as_str()),
        (StatusCode::SEE_OTHER, "/settings/sessions?done=sessions")
    );
    assert_eq!(location(&third, "/").await.0, StatusCode::SEE_OTHER);
    assert_eq!(location(&fourth, "/").await.0, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/").await.0, StatusCode::OK);
    assert_eq!(ben.get("/").await.0, StatusCode::OK, "only one's own");
    let all = audit_details(&app, "other_sessions_revoked");
    assert!(
        all.len() == 1 && all[0].1.contains("\"sessions\":2"),
        "{all:?}"
    );

    // Signing out the current session from the list is a logout.
    let (s, loc, _) = b
        .post(
            &format!("/settings/sessions/{current}/revoke"),
            &[("csrf", &b.csrf)],
        )
        .await;
    assert_eq!((s, loc.as_str()), (StatusCode::SEE_OTHER, "/login"));
    assert_eq!(location(&b, "/").await.0, StatusCode::SEE_OTHER);
}

both_backends!(
    expired_tokens_are_refused_with_their_code,
    token_and_session_use_is_recorded_once_a_minute,
    changing_the_password_ends_the_other_sessions,
    printed_initial_passwords_must_be_replaced,
    sessions_are_listed_and_revoked,
);
