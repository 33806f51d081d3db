//! Single sign-on against a real OpenID provider on loopback: panva's `oidc-provider`
//! (`tests/oidc/provider.mjs`, installed by `.ci/run` with `npm ci --prefix tests/oidc`),
//! driven like a browser (cookies kept, every redirect looked at). Sign-in and group
//! mapping, a refused domain, a changed or replayed state, another browser's answer, a
//! corrupted ID token signature, a deactivated person, two first sign-ins at once,
//! password sign-in turned off, logout at the provider, and the provider down.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use countersign::config::{OidcConfig, Secret};
use countersign::db::{audit, users};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::web::field;

/// The provider, stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
    http: reqwest::Client,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// `None` (with a message) where its npm package is not installed, except in CI.
    fn start() -> Option<Provider> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        if !dir.join("node_modules/oidc-provider").exists() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("the OpenID provider is required in CI: npm ci --prefix tests/oidc");
            }
            eprintln!("skipped: the OpenID provider is not installed (npm ci --prefix tests/oidc)");
            return None;
        }
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs the test provider");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        // The provider writes more later (its development warnings): keep reading, so it
        // never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let issuer = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("provider said {line:?}"))
            .to_string();
        Some(Provider {
            child,
            issuer,
            http: reqwest::Client::new(),
        })
    }

    /// What signing in as `login` tells countersign.
    async fn account(&self, login: &str, claims: Value) {
        let r = self
            .http
            .put(format!("{}/test/accounts/{login}", self.issuer))
            .body(claims.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }

    async fn tamper(&self, on: bool) {
        self.http
            .put(format!("{}/test/tamper", self.issuer))
            .body(if on { "on" } else { "off" })
            .send()
            .await
            .unwrap();
    }

    fn config(&self) -> OidcConfig {
        OidcConfig {
            issuer: self.issuer.clone(),
            client_id: "countersign".into(),
            client_secret: Secret::new("countersign-test-secret"),
            scopes: vec![
                "openid".into(),
                "email".into(),
                "profile".into(),
                "groups".into(),
            ],
            allowed_domains: vec!["corp.example".into(), "req.example".into()],
            groups_claim: "groups".into(),
            teams: vec![
                ("cs-req".into(), "app-owners".into()),
                ("cs-ops".into(), "platform-ops".into()),
                ("cs-new".into(), "brand-new-team".into()),
            ],
            admin_groups: Some(vec!["cs-admins".into()]),
            label: "Corp ID".into(),
        }
    }
}

async fn app_with(backend: Backend, p: &Provider, password_login: bool) -> TestApp {
    let oidc = p.config();
    spawn_app_with(backend, move |c| {
        c.mail.public_url = "http://127.0.0.1:0".into();
        c.oidc = Some(oidc);
        c.password_login = password_login;
    })
    .await
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn location(r: &reqwest::Response, base: &str) -> String {
    let l = r
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("{} without a Location", r.status()))
        .to_str()
        .unwrap()
        .to_string();
    if l.starts_with('/') {
        format!("{base}{l}")
    } else {
        l
    }
}

/// Press "Sign in with Corp ID" and go through the provider's pages as `login`: the
/// address the provider sends the browser back to (not opened yet).
async fn to_callback(app: &TestApp, p: &Provider, b: &reqwest::Client, login: &str) -> String {
    let page = b
        .get(format!("{}/login?next=/changes", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in with Corp ID"), "{page}");
    let r = b
        .get(format!("{}/login/sso?next=/changes", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mut url = location(&r, &app.address);
    assert!(url.starts_with(&p.issuer), "{url}");
    assert!(
        url.contains("code_challenge_method=S256") && url.contains("nonce="),
        "{url}"
    );
    for _ in 0..20 {
        if url.starts_with(&format!("{}/login/sso/callback", app.address)) {
            return url;
        }
        let r = b.get(&url).send().await.unwrap();
        if r.status().is_redirection() {
            url = location(&r, &p.issuer);
            continue;
        }
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        let html = r.text().await.unwrap();
        let action = html
            .split("action=\"")
            .nth(1)
            .and_then(|a| a.split('"').next())
            .unwrap_or_else(|| panic!("no form in {html}"))
            .to_string();
        let form: Vec<(&str, &str)> = if html.contains("value=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let action = if action.starts_with('/') {
            format!("{}{action}", p.issuer)
        } else {
            action
        };
        let r = b.post(&action).form(&form).send().await.unwrap();
        assert!(r.status().is_redirection(), "{}", r.status());
        url = location(&r, &p.issuer);
    }
    panic!("the provider never sent the browser back (last {url})");
}

/// Open the provider's answer: the status, the page and where it sends the browser.
async fn finish(b: &reqwest::Client, url: &str) -> (StatusCode, String, Option<String>) {
    let r = b.get(url).send().await.unwrap();
    let to = r
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string());
    (r.status(), r.text().await.unwrap(), to)
}

/// The home page as `b` sees it: `Some(page)` when signed in.
async fn home(app: &TestApp, b: &reqwest::Client) -> Option<String> {
    let r = b.get(format!("{}/", app.address)).send().await.unwrap();
    (r.status() == StatusCode::OK).then_some(r.text().await.unwrap())
}

fn person(app: &TestApp, email: &str) -> Option<(i64, bool, Vec<String>)> {
    let mut conn = app.conn();
    let u = users::find_user_by_email(&mut conn, email).unwrap()?;
    let mut teams = users::user_teams(&mut conn, u.id).unwrap();
    teams.sort();
    Some((u.id, u.is_admin, teams))
}

fn audit_actions(app: &TestApp) -> Vec<(String, Value)> {
    let mut conn = app.conn();
    audit::range(&mut conn, 0, i64::MAX, 100_000)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, serde_json::from_str(&e.detail).unwrap()))
        .collect()
}

async fn signs_in_and_groups_follow(backend: Backend) {
    let Some(p) = Provider::start() else { return };
    let app = app_with(backend, &p, true).await;
    p.account(
        "alice",
        json!({"email": "Alice@Corp.Example", "email_verified": true, "name": "Alice Corp",
               "groups": ["cs-req", "cs-admins", "unmapped"]}),
    )
    .await;
    let b = browser();
    let url = to_callback(&app, &p, &b, "alice").await;
    assert!(url.contains("state=") && url.contains("code="), "{url}");
    let (s, _, to) = finish(&b, &url).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(
        to.as_deref(),
        Some("/changes"),
        "back where the sign-in started"
    );
    let page = home(&app, &b).await.expect("signed in");
    assert!(page.contains("Alice Corp"), "{page}");
    let (alice, admin, teams) = person(&app, "alice@corp.example").expect("provisioned");
    assert!(admin, "cs-admins makes an admin");
    assert_eq!(teams, ["app-owners"]);
    let events = audit_actions(&app);
    let signed = events
        .iter()
        .find(|(a, _)| a == "sso_signed_in")
        .expect("audited");
    assert_eq!(signed.1["created"], true);
    assert_eq!(signed.1["subject"], "alice");
    assert_eq!(signed.1["joined"], json!(["app-owners"]));

    // Groups change at the provider: memberships and admin rights follow at the next
    // sign-in; a mapped team that does not exist yet is created.
    p.account(
        "alice",
        json!({"email": "alice@corp.example", "name": "Alice Corp", "groups": ["cs-ops", "cs-new"]}),
    )
    .await;
    let b2 = browser();
    let url = to_callback(&app, &p, &b2, "alice").await;
    assert_eq!(finish(&b2, &url).await.0, StatusCode::SEE_OTHER);
    let (again, admin, teams) = person(&app, "alice@corp.example").unwrap();
    assert_eq!(again, alice, "the same person (by the provider's subject)");
    assert!(!admin);
    assert_eq!(teams, ["brand-new-team", "platform-ops"]);

    // An existing person (a password account) is linked by address, not duplicated; when
    // the groups take them out of a team, their sign-offs stop counting (issue E's rule).
    app.load_fixture().await;
    let (id, fp) = app
        .submitted("ben", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (s, v) = app.sign(id, "ana", "requester", &fp, None).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.sign(id, "carla", "implementer", &fp, Some(1)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "approved", "{v}");
    let (ana, _, before) = person(&app, "ana@req.example").unwrap();
    assert_eq!(before, ["app-owners"]);
    p.account(
        "ana-at-corp",
        json!({"email": "ana@req.example", "groups": []}),
    )
    .await;
    let b3 = browser();
    let url = to_callback(&app, &p, &b3, "ana-at-corp").await;
    assert_eq!(finish(&b3, &url).await.0, StatusCode::SEE_OTHER);
    let (linked, _, after) = person(&app, "ana@req.example").unwrap();
    assert_eq!(linked, ana);
    assert!(after.is_empty(), "left app-owners: {after:?}");
    let c = app.change(id).await;
    assert_eq!(c["state"], "awaiting_signoff", "{c}");
    let events = audit_actions(&app);
    let last = events
        .iter()
        .rev()
        .find(|(a, _)| a == "sso_signed_in")
        .unwrap();
    assert_eq!(
        (last.1["linked"].clone(), last.1["left"].clone()),
        (json!(true), json!(["app-owners"]))
    );
    assert!(events
        .iter()
        .any(|(a, d)| a == "team_member_removed" && d["email"] == "ana@req.example"));
}

async fn refusals(backend: Backend) {
    let Some(p) = Provider::start() else { return };
    let app = app_with(backend, &p, true).await;
    // A domain not allowed: refused, audited, nothing created.
    p.account(
        "mallory",
        json!({"email": "mallory@evil.example", "groups": ["cs-admins"]}),
    )
    .await;
    let b = browser();
    let url = to_callback(&app, &p, &b, "mallory").await;
    let (s, page, _) = finish(&b, &url).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    assert!(
        page.contains("mallory@evil.example is not an address of corp.example, req.example"),
        "{page}"
    );
    assert!(person(&app, "mallory@evil.example").is_none());
    assert!(home(&app, &b).await.is_none(), "not signed in");
    assert!(audit_actions(&app)
        .iter()
        .any(|(a, d)| a == "sso_refused" && d["email"] == "mallory@evil.example"));

    // A changed state finds nothing (and spends nothing); the real answer then works once.
    p.account(
        "bob",
        json!({"email": "bob@corp.example", "groups": ["cs-ops"]}),
    )
    .await;
    let b = browser();
    let url = to_callback(&app, &p, &b, "bob").await;
    let tampered = url.replacen("state=", "state=x", 1);
    let (s, page, _) = finish(&b, &tampered).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("names no sign-in under way here"), "{page}");
    assert!(home(&app, &b).await.is_none());
    // Another browser with the real answer: refused, and the sign-in is spent.
    let other = browser();
    let (s, page, _) = finish(&other, &url).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(page.contains("started in another browser"), "{page}");
    assert!(home(&app, &other).await.is_none());
    let (s, _, _) = finish(&b, &url).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a sign-in is used once");
    // A fresh one in the right browser works; replaying it does not.
    let url = to_callback(&app, &p, &b, "bob").await;
    assert_eq!(finish(&b, &url).await.0, StatusCode::SEE_OTHER);
    assert!(home(&app, &b).await.is_some());
    let (s, page, _) = finish(&b, &url).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{page}");

    // A corrupted ID token signature: nobody is signed in.
    p.tamper(true).await;
    p.account("carol", json!({"email": "carol@corp.example"}))
        .await;
    let b = browser();
    let url = to_callback(&app, &p, &b, "carol").await;
    let (s, page, _) = finish(&b, &url).await;
    p.tamper(false).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("ID token failed its checks"), "{page}");
    assert!(person(&app, "carol@corp.example").is_none());
    assert!(home(&app, &b).await.is_none());

    // A deactivated person: the provider vouches, countersign refuses.
    let bob = person(&app, "bob@corp.example").unwrap().0;
    users::deactivate(&mut app.conn(), bob, None).unwrap();
    let b = browser();
    let url = to_callback(&app, &p, &b, "bob").await;
    let (s, page, _) = finish(&b, &url).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("deactivated"), "{page}");
    assert!(home(&app, &b).await.is_none());
}

/// Two first sign-ins of one person at once (two browsers): one person, two sessions.
async fn first_sign_ins_at_once(backend: Backend) {
    let Some(p) = Provider::start() else { return };
    let app = app_with(backend, &p, true).await;
    p.account(
        "dora",
        json!({"email": "dora@corp.example", "groups": ["cs-req"]}),
    )
    .await;
    let (b1, b2) = (browser(), browser());
    let u1 = to_callback(&app, &p, &b1, "dora").await;
    let u2 = to_callback(&app, &p, &b2, "dora").await;
    let (r1, r2) = tokio::join!(finish(&b1, &u1), finish(&b2, &u2));
    assert_eq!(
        (r1.0, r2.0),
        (StatusCode::SEE_OTHER, StatusCode::SEE_OTHER),
        "{} {}",
        r1.1,
        r2.1
    );
    assert!(home(&app, &b1).await.is_some() && home(&app, &b2).await.is_some());
    assert_eq!(person(&app, "dora@corp.example").unwrap().2, ["app-owners"]);
    let joined = audit_actions(&app)
        .into_iter()
        .filter(|(a, d)| a == "team_member_added" && d["email"] == "dora@corp.example")
        .count();
    assert_eq!(joined, 1, "joined once");
}

async fn password_off_and_logout(backend: Backend) {
    let Some(p) = Provider::start() else { return };
    let app = app_with(backend, &p, false).await;
    let b = browser();
    let page = b
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("id=\"sso-login\"") && !page.contains("name=\"password\""),
        "{page}"
    );
    let r = b
        .post(format!("{}/login", app.address))
        .form(&[
            ("email", "ana@req.example"),
            ("password", "x"),
            ("csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Password sign-in is turned off"));

    p.account(
        "erin",
        json!({"email": "erin@corp.example", "name": "Erin"}),
    )
    .await;
    let url = to_callback(&app, &p, &b, "erin").await;
    assert_eq!(finish(&b, &url).await.0, StatusCode::SEE_OTHER);
    let page = home(&app, &b).await.expect("signed in");
    // A person created by single sign-on has no password: the page says so, offers no form,
    // and a posted one changes nothing.
    let pw = b
        .get(format!("{}/settings/password", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        pw.contains("no countersign password") && !pw.contains("name=\"current\""),
        "{pw}"
    );
    let r = b
        .post(format!("{}/settings/password", app.address))
        .form(&[
            ("csrf", field(&page, "csrf").as_str()),
            ("current", "x"),
            ("new", "a-long-new-password"),
            ("repeat", "a-long-new-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Logout ends the session here, then at the provider, which sends the browser back.
    let r = b
        .post(format!("{}/logout", app.address))
        .form(&[("csrf", field(&page, "csrf").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r, &app.address);
    assert!(
        to.starts_with(&format!("{}/session/end?client_id=countersign", p.issuer)),
        "{to}"
    );
    assert!(home(&app, &b).await.is_none(), "the session ended at once");
    let html = b.get(&to).send().await.unwrap().text().await.unwrap();
    let xsrf = field(&html, "xsrf");
    let action = html
        .split("action=\"")
        .nth(1)
        .and_then(|a| a.split('"').next())
        .unwrap()
        .to_string();
    let r = b
        .post(&action)
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(location(&r, &p.issuer), format!("{}/login", app.address));
    // Signed out at the provider too: the next sign-in asks for the login again.
    let r = b
        .get(format!("{}/login/sso", app.address))
        .send()
        .await
        .unwrap();
    let r = b.get(location(&r, &app.address)).send().await.unwrap();
    let interaction = location(&r, &p.issuer);
    let html = b
        .get(&interaction)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("value=\"login\""), "{html}");
    // The pages let the logout form go on to the provider.
    let csp = b
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap()
        .headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains(&format!("form-action 'self' {}", p.issuer)),
        "{csp}"
    );
}

async fn provider_down(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut oidc = OidcConfig {
        issuer: format!("http://127.0.0.1:{port}"),
        client_id: "countersign".into(),
        client_secret: Secret::new("s"),
        scopes: vec!["openid".into()],
        allowed_domains: vec![],
        groups_claim: "groups".into(),
        teams: vec![],
        admin_groups: None,
        label: "Corp ID".into(),
    };
    oidc.scopes.push("email".into());
    let app = spawn_app_with(backend, move |c| c.oidc = Some(oidc)).await;
    let b = browser();
    let r = b
        .get(format!("{}/login/sso", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("The sign-in provider could not be used"),
        "{page}"
    );
    assert!(page.contains(".well-known/openid-configuration"), "{page}");
    // And the answer address without single sign-on configured is not found.
    let plain = spawn_app_with(backend, |_| {}).await;
    let r = b
        .get(format!(
            "{}/login/sso/callback?state=x&code=y",
            plain.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

crate::both_backends!(backend: signs_in_and_groups_follow, refusals, first_sign_ins_at_once, password_off_and_logout, provider_down);
