//! The web app's pages without a browser: sign-in, sessions, CSRF, rate limiting, security
//! headers, escaping, the new-change form (errors keep the input), the change page's forms.

use reqwest::redirect::Policy;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, site, TestApp};

const PW: &str = "correct horse battery";

pub(crate) struct Browser {
    pub(crate) c: reqwest::Client,
    pub(crate) base: String,
    pub(crate) csrf: String,
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn field(html: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    html.split(&key)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// The sign-in form as a browser sends it: fetch `/login` (its CSRF cookie and field),
/// then post `email`, `password` and `next` with that token.
pub(crate) async fn post_login(
    c: &reqwest::Client,
    base: &str,
    email: &str,
    pw: &str,
    next: &str,
) -> reqwest::Response {
    let page = c
        .get(format!("{base}/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    c.post(format!("{base}/login"))
        .form(&[
            ("email", email),
            ("password", pw),
            ("csrf", field(&page, "csrf").as_str()),
            ("next", next),
        ])
        .send()
        .await
        .unwrap()
}

impl Browser {
    pub(crate) async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .c
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }
    pub(crate) async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, String) {
        let r = self
            .c
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        let loc = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (r.status(), loc, r.text().await.unwrap())
    }
}

pub(crate) async fn sign_in(app: &TestApp, who: &str) -> Browser {
    app.set_password(who, PW);
    let c = client();
    let base = app.address.clone();
    let r = post_login(&c, &base, TestApp::email(who), PW, "/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "login of {who}");
    let home = c
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = field(&home, "csrf");
    assert!(!csrf.is_empty(), "no CSRF token on the home page");
    Browser { c, base, csrf }
}

async fn signed_out_people_go_to_the_login_page(app: TestApp) {
    let c = client();
    for path in ["/", "/queue", "/changes/CHG-1", "/settings"] {
        let r = c
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        assert_eq!(loc, format!("/login?next={path}"));
    }
    let r = c
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    let cookie = h["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    // An open redirect is not possible through `next`.
    let page = r.text().await.unwrap();
    assert!(page.contains("name=\"next\" value=\"/\""));
    for evil in [
        "//evil.example",
        "/%09/evil.example",
        "/%5C/evil.example",
        "https://evil.example",
    ] {
        let r = c
            .get(format!("{}/login?next={evil}", app.address))
            .send()
            .await
            .unwrap();
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("name=\"next\" value=\"/\""),
            "{evil} must not survive as a redirect target"
        );
    }
    // A malformed query on a page gets a page, not JSON.
    let b = sign_in(&app, "ana").await;
    let r =
        b.c.get(format!("{}/changes/CHG-1?offset=abc", app.address))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
}

async fn login_logout_and_rate_limiting(app: TestApp) {
    app.set_password("ana", PW);
    let c = client();
    let login = |pw: &'static str| {
        let c = c.clone();
        let base = app.address.clone();
        async move {
            let r = post_login(&c, &base, "ANA@req.example", pw, "/queue").await;
            let s = r.status();
            let loc = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string());
            (s, loc, r.text().await.unwrap())
        }
    };
    let (s, _, body) = login("wrong password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.contains("do not match"));
    assert!(
        body.contains("value=\"ANA@req.example\""),
        "the email is kept"
    );
    let (s, loc, _) = login(PW).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(loc.as_deref(), Some("/queue"));
    // A forged `next` with a tab (browsers strip it and would read `//host`) goes home.
    let page = c
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = c
        .post(format!("{}/login", app.address))
        .form(&[
            ("email", "ana@req.example"),
            ("password", PW),
            ("csrf", field(&page, "csrf").as_str()),
            ("next", "/\t/evil.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
    // Logged in; log out needs the CSRF token.
    let home = c
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("Ana"));
    let r = c
        .post(format!("{}/logout", app.address))
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = c
        .post(format!("{}/logout", app.address))
        .form(&[("csrf", field(&home, "csrf").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = c.get(format!("{}/", app.address)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the session is gone");
    // Failures slow down that address from that client, with delays that grow; they do
    // not lock the owner out from elsewhere (anyone could do that to anyone).
    let attacker = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let try_from = |c: reqwest::Client, email: String, pw: &'static str| {
        let base = app.address.clone();
        async move {
            let r = post_login(&c, &base, &email, pw, "").await;
            (r.status(), r.text().await.unwrap())
        }
    };
    let ana = || "ana@req.example".to_string();
    for _ in 0..3 {
        assert_eq!(
            try_from(attacker.clone(), ana(), "guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, body) = try_from(attacker.clone(), ana(), PW).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("Try again in 1 second."), "{body}");
    let (s, loc, _) = login(PW).await;
    assert_eq!(s, StatusCode::SEE_OTHER, "the owner is not locked out");
    assert_eq!(loc.as_deref(), Some("/queue"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        try_from(attacker.clone(), ana(), "guess").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, body) = try_from(attacker.clone(), ana(), "guess").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("Try again in 2 seconds."), "{body}");
    // Inputs no sign-in can need are refused before any work: a long address, a huge form.
    let (s, body) = try_from(client(), format!("{}@req.example", "a".repeat(300)), "pw").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("at most 254 characters"), "{body}");
    let r = client()
        .post(format!("{}/login", app.address))
        .form(&[
            ("email", "x".repeat(1 << 20).as_str()),
            ("password", "p"),
            ("csrf", "c"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A login form without its cookie's token is refused.
    let r = client()
        .post(format!("{}/login", app.address))
        .form(&[
            ("email", "ana@req.example"),
            ("password", PW),
            ("csrf", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

async fn pages_render_escape_and_refuse_forms_without_csrf(app: TestApp) {
    app.load_fixture().await;
    let (s, v) = app.post("/api/v1/changes", "ana", json!({"title": "<script>alert(1)</script>", "rationale": "r", "requesting_team": "app-owners", "operation": "uninstall_app", "targets": {"ids": [inst(1), inst(3)]}})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    app.post(&format!("/api/v1/changes/{id}/submit"), "ana", json!({}))
        .await;
    let b = sign_in(&app, "carla").await;
    let (s, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "title escaped"
    );
    assert!(!page.contains("<script>alert(1)"));
    assert!(page.contains("2 App installations"), "blast radius");
    assert!(
        page.contains("id=\"sign-implementer\""),
        "carla can sign the implementer side"
    );
    assert!(!page.contains("id=\"sign-requester\""));
    // The queue shows it, with the count in the navigation.
    let (_, q) = b.get("/queue").await;
    assert!(q.contains(&format!("CHG-{id}")));
    assert!(q.contains("class=\"count\""));
    // Other pages.
    let (s, g) = b.get("/glossary").await;
    assert_eq!(s, StatusCode::OK);
    assert!(g.contains("App installation") && g.contains("Uninstall an app"));
    let (_, inv) = b.get("/inventory?q=Acme").await;
    assert!(inv.contains("org-00000001"));
    let (s, e) = b.get(&format!("/inventory/{}", inst(1))).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        e.contains("Acme Corp") && e.contains(&format!("CHG-{id}")),
        "ancestry and the change"
    );
    let (s, nf) = b.get("/changes/CHG-999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(nf.contains("request id"));
    let (s, nf) = b.get("/no/such/page").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(nf.contains("There is no page at /no/such/page"));
    // A form without the CSRF token changes nothing.
    let (s, _, body) = b
        .post(&format!("/changes/CHG-{id}/comment"), &[("body", "sneaky")])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.contains("security token"));
    // An error page keeps the signed-in person's layout, its section marked.
    assert!(
        body.contains(r#"<a href="/changes" aria-current="page">"#)
            && body.contains(r#"href="/settings""#),
        "{body}"
    );
    let (_, nf) = b.get("/changes/CHG-999").await;
    assert!(
        nf.contains(r#"<a href="/changes" aria-current="page">"#),
        "{nf}"
    );
    let (s, loc, _) = b
        .post(
            &format!("/changes/CHG-{id}/comment"),
            &[
                ("body", "Checked the list <b>twice</b>."),
                ("csrf", &b.csrf),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(loc, format!("/changes/CHG-{id}?done=commented"));
    // Each form has its own route: any other action is no page at all.
    for path in [
        format!("/changes/CHG-{id}/bogus"),
        format!("/changes/CHG-{id}/notices/1/bogus"),
    ] {
        let (s, _, body) = b.post(&path, &[("csrf", &b.csrf)]).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert!(
            body.contains(&format!("There is no page at {path}")),
            "{body}"
        );
    }
    let (_, page) = b.get(&loc).await;
    assert!(page.contains("Comment added."));
    assert!(page.contains("Checked the list &lt;b&gt;twice&lt;/b&gt;."));
    // Settings: preferences and tokens.
    let (s, loc, _) = b
        .post(
            "/settings/notifications",
            &[("csrf", &b.csrf), ("commented", "digest")],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{loc}");
    let (_, st) = b.get("/settings").await;
    assert!(st.contains("<option value=\"digest\" selected>digest</option>"));
    let (s, _, body) = b
        .post(
            "/settings/notifications",
            &[("csrf", &b.csrf), ("needs_signoff", "never")],
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("cannot be turned off"));
    let r =
        b.c.post(format!("{}/settings/tokens", b.base))
            .form(&[("csrf", b.csrf.as_str()), ("label", "laptop")])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["cache-control"],
        "no-store",
        "a page with a secret is not cached"
    );
    let body = r.text().await.unwrap();
    let token = body
        .split("id=\"new-token\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_string();
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/me", app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the new token works");
}

async fn the_new_change_form_keeps_input_and_names_wrong_kinds(app: TestApp) {
    app.load_fixture().await;
    let b = sign_in(&app, "ana").await;
    let (s, page) = b.get("/changes/new").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("Uninstall an app"));
    let ids = format!("{}\n{}\n{}", inst(1), site(2), inst(3));
    let form = |action: &'static str, ids: String| {
        vec![
            ("csrf", b.csrf.clone()),
            ("operation", "uninstall_app".to_string()),
            ("requesting_team", "app-owners".to_string()),
            ("title", "Remove insight".to_string()),
            ("rationale", "Retired".to_string()),
            ("ids", ids),
            ("action", action.to_string()),
        ]
    };
    let post = |f: Vec<(&'static str, String)>| {
        let b = &b;
        async move {
            let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post("/changes/new", &pairs).await
        }
    };
    // Creating with a wrong-kind line: nothing is saved, the line is named, input kept.
    let (s, _, body) = post(form("create", ids.clone())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("targets.ids line 2"), "{body}");
    assert!(body.contains("is a Cloud site"), "names the real kind");
    assert!(
        body.contains(&site(2)) && body.contains("value=\"Remove insight\""),
        "input kept"
    );
    let (_, list) = app.get("/api/v1/changes", "ana").await;
    assert_eq!(
        list["changes"].as_array().unwrap().len(),
        0,
        "nothing saved"
    );
    // Preview of the fixed list, then create.
    let fixed = format!("{}\n{}", inst(1), inst(3));
    let (s, _, body) = post(form("preview", fixed.clone())).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("id=\"preview\""));
    assert!(
        body.contains("2 App installations on 2 Cloud sites of 1 Customer organisation"),
        "{body}"
    );
    let (s, loc, _) = post(form("create", fixed)).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    // A refused create stores nothing, but a PostgreSQL sequence does not roll back: the
    // number is whatever the redirect names.
    let id: i64 = loc
        .strip_prefix("/changes/CHG-")
        .and_then(|r| r.split('?').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{loc}"));
    assert!(loc.ends_with("?done=created"), "{loc}");
    let c = app.change(id).await;
    assert_eq!(c["state"], "awaiting_signoff");
    // Thousands of pasted IDs fit in a form (the default 16 KiB form limit would not).
    let many: Vec<String> = (1000..4000u32).map(inst).collect();
    let (s, _, body) = post(form("preview", many.join("\n"))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("3000 problem(s) with the targets"),
        "{}",
        &body[..body.len().min(3000)]
    );
    // A failed expectation is said on the form; nothing is stored.
    let mut f = form("create", inst(5));
    f.push(("expect_targets", "3".into()));
    let (s, _, body) = post(f).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.contains("You expected 3 targets; the list resolves to 1."),
        "{}",
        &body[..body.len().min(2000)]
    );
    let (_, list) = app.get("/api/v1/changes", "ana").await;
    assert_eq!(
        list["changes"].as_array().unwrap().len(),
        1,
        "still only the one created"
    );
    // A bad parameter line is a form message, not an error page.
    let mut f = form("preview", inst(5));
    f.push(("where", "app insight".into()));
    let (s, _, body) = post(f).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("Attribute filter line 1"));
}

async fn sign_execute_and_roll_back_through_forms(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1), inst(3)]}))
        .await;
    let (s, v) = app.sign(id, "ben", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let b = sign_in(&app, "carla").await;
    let path = format!("/changes/CHG-{id}");
    // A sign-off for another fingerprint is refused with the reason.
    let (s, _, body) = b
        .post(
            &format!("{path}/sign"),
            &[
                ("csrf", &b.csrf),
                ("side", "implementer"),
                ("fingerprint", "sha256:old"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(body.contains("fingerprint"), "{body}");
    let (s, loc, _) = b
        .post(
            &format!("{path}/sign"),
            &[
                ("csrf", &b.csrf),
                ("side", "implementer"),
                ("fingerprint", &fp),
                ("comment", "ok"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{loc}");
    let (_, page) = b.get(&loc).await;
    assert!(page.contains("Your sign-off is recorded."));
    assert!(page.contains("class=\"badge approved\""));
    assert!(page.contains("id=\"execute\""));
    let (s, loc, _) = b
        .post(
            &format!("{path}/execute"),
            &[("csrf", &b.csrf), ("fingerprint", &fp)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{loc}");
    app.wait_execution(id, &["completed"]).await;
    let (_, page) = b.get(&path).await;
    assert!(
        page.contains("id=\"exec-state\">completed"),
        "progress shown"
    );
    assert!(page.contains("aria-label=\"Wave 1\""));
    let (s, loc, _) = b
        .post(&format!("{path}/rollback"), &[("csrf", &b.csrf)])
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let rb = loc.split('?').next().unwrap().to_string();
    assert_ne!(rb, path);
    let (_, page) = b.get(&loc).await;
    assert!(page.contains("Rollback created"));
    assert!(page.contains(&format!("rolls back <a href=\"/changes/CHG-{id}\"")));
    let (_, targets) = b.get(&format!("{rb}/targets.csv")).await;
    assert!(targets.starts_with("kind,id,scope_path,name,effect,outcome,what_happens,"));
    assert_eq!(targets.lines().count(), 3);
}

async fn admins_see_the_outbox(app: TestApp) {
    app.load_fixture().await;
    app.submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    // Make one mail dead, as a rejected recipient would.
    {
        use countersign::db::schema::outbox;
        use diesel::prelude::*;
        let mut conn = app.conn();
        diesel::update(outbox::table.filter(outbox::recipient.eq("ben@req.example")))
            .set((
                outbox::state.eq("dead"),
                outbox::last_error.eq(Some("550 no such mailbox")),
            ))
            .execute(&mut conn)
            .unwrap();
    }
    let carla = sign_in(&app, "carla").await;
    let (s, _) = carla.get("/admin/outbox").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let root = sign_in(&app, "root").await;
    let (s, page) = root.get("/admin/outbox").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains("ben@req.example") && page.contains("550 no such mailbox"),
        "{page}"
    );
    let id = page
        .split("action=\"/admin/outbox/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_string();
    let (s, loc, _) = root
        .post(
            &format!("/admin/outbox/{id}/retry"),
            &[("csrf", &root.csrf)],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER, "{loc}");
    let (_, page) = root.get("/admin/outbox?state=pending").await;
    assert!(page.contains("ben@req.example"));
}

both_backends!(
    admins_see_the_outbox,
    signed_out_people_go_to_the_login_page,
    login_logout_and_rate_limiting,
    pages_render_escape_and_refuse_forms_without_csrf,
    the_new_change_form_keeps_input_and_names_wrong_kinds,
    sign_execute_and_roll_back_through_forms,
);
