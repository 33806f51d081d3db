//! Hardening headers and cookies: `__Host-` cookies and HSTS over HTTPS, plain names and no
//! HSTS over HTTP, `Cache-Control: no-store` on everything but the static assets.

use reqwest::header::{HeaderMap, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};
use crate::web::{client, field, sign_in};

const PW: &str = "correct horse battery";

/// The `Set-Cookie` header that sets cookie `name`.
fn set_cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with(&format!("{name}=")))
}

fn value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// The rules of the `__Host-` prefix (and ours: HttpOnly, SameSite=Lax).
fn assert_host_cookie(c: &str) {
    let attrs: Vec<String> = c
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for a in ["secure", "httponly", "path=/", "samesite=lax"] {
        assert!(attrs.iter().any(|x| x == a), "{a} missing: {c}");
    }
    assert!(
        !attrs.iter().any(|x| x.starts_with("domain")),
        "a __Host- cookie has no Domain: {c}"
    );
}

async fn https_deployment(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.mail.public_url = "https://countersign.example".into()
    })
    .await;
    app.set_password("ana", PW);
    // The client sends cookies by hand: a cookie store would not send Secure cookies to
    // the test's plain-HTTP address (TLS is the proxy's job in front of countersign).
    let c = client();
    let base = &app.address;
    let r = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(set_cookie(r.headers(), "cs_login").is_none());
    let login_cookie = set_cookie(r.headers(), "__Host-cs_login").expect("__Host-cs_login");
    assert_host_cookie(&login_cookie);
    let page = r.text().await.unwrap();
    let csrf = field(&page, "csrf");
    assert_eq!(value(&login_cookie), csrf, "double-submit cookie");

    // The login cookie under its plain name does not count over HTTPS.
    let post = |cookie: String| {
        c.post(format!("{base}/login"))
            .header(COOKIE, cookie)
            .form(&[
                ("email", TestApp::email("ana")),
                ("password", PW),
                ("csrf", csrf.as_str()),
                ("next", "/"),
            ])
            .send()
    };
    let r = post(format!("cs_login={csrf}")).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "plain cs_login is ignored"
    );
    let r = post(format!("__Host-cs_login={csrf}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = set_cookie(r.headers(), "__Host-cs_session").expect("__Host-cs_session");
    assert_host_cookie(&session);
    assert!(
        session.to_ascii_lowercase().contains("max-age=43200"),
        "{session}"
    );
    assert!(set_cookie(r.headers(), "cs_session").is_none());
    let cleared = set_cookie(r.headers(), "__Host-cs_login").expect("login cookie cleared");
    assert_host_cookie(&cleared);
    assert_eq!(value(&cleared), "");
    let token = value(&session);

    // A page read with the session cookie works; the same token under the plain name not.
    let r = c
        .get(format!("{base}/settings"))
        .header(COOKIE, format!("__Host-cs_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let home = r.text().await.unwrap();
    assert!(home.contains("ana@req.example"), "signed in as Ana");
    let r = c
        .get(format!("{base}/settings"))
        .header(COOKIE, format!("cs_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/login?next=/settings");

    // Logging out clears the prefixed cookie.
    let r = c
        .post(format!("{base}/logout"))
        .header(COOKIE, format!("__Host-cs_session={token}"))
        .form(&[("csrf", field(&home, "csrf").as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let gone = set_cookie(r.headers(), "__Host-cs_session").expect("session cookie cleared");
    assert_host_cookie(&gone);
    assert_eq!(value(&gone), "");
}

both_backends!(backend: https_deployment);

/// The default (http) deployment: plain cookie names, no HSTS; a request a proxy marks as
/// https gets the `__Host-` names (Secure) but still no HSTS, which follows the public URL.
async fn http_deployment_has_plain_cookies_and_no_hsts(app: TestApp) {
    let c = client();
    let r = c
        .get(format!("{}/login", app.address))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    let login = set_cookie(r.headers(), "cs_login").expect("cs_login");
    assert!(!login.to_ascii_lowercase().contains("secure"), "{login}");
    assert!(set_cookie(r.headers(), "__Host-cs_login").is_none());
    let r = c
        .get(format!("{}/login", app.address))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("strict-transport-security").is_none());
    assert_host_cookie(&set_cookie(r.headers(), "__Host-cs_login").expect("__Host-cs_login"));
    // Signed in over plain HTTP, the plain cookie works and the prefixed one is not read.
    let b = sign_in(&app, "ana").await;
    let (s, _) = b.get("/settings").await;
    assert_eq!(s, StatusCode::OK);
    let r = client()
        .get(format!("{}/settings", app.address))
        .header(COOKIE, "__Host-cs_session=whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

/// Every answer to a signed-in person is `no-store`: each main page, the CSV, redirects,
/// error pages and API answers; the static assets keep their public cache header.
async fn signed_in_answers_are_not_stored(app: TestApp) {
    app.load_fixture().await;
    let (id, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let b = sign_in(&app, "ana").await;
    for path in [
        "/".to_string(),
        "/queue".into(),
        "/changes".into(),
        "/changes/new".into(),
        format!("/changes/CHG-{id}"),
        format!("/changes/CHG-{id}/edit"),
        format!("/changes/CHG-{id}/notices"),
        format!("/changes/CHG-{id}/targets.csv"),
        "/settings".into(),
        "/settings/notifications".into(),
        "/glossary".into(),
        "/inventory".into(),
        format!("/inventory/{}", inst(1)),
        "/changes/CHG-999".into(),
        "/admin/outbox".into(),
        "/nowhere".into(),
    ] {
        let r = b.c.get(format!("{}{path}", b.base)).send().await.unwrap();
        let status = r.status();
        assert!(
            status.is_success() || status.is_client_error() || status.is_redirection(),
            "{path}: {status}"
        );
        assert_eq!(
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap()),
            Some("no-store"),
            "{path} ({status})"
        );
        assert!(r.headers().get("strict-transport-security").is_none());
    }
    // A form post's redirect.
    let (s, _, _) = b
        .post(
            &format!("/changes/CHG-{id}/comment"),
            &[("csrf", &b.csrf), ("body", "looks right")],
        )
        .await;
    assert!(s.is_redirection() || s.is_success(), "{s}");
    // API answers to a bearer token.
    for path in ["/api/v1/me".to_string(), format!("/api/v1/changes/{id}")] {
        let r = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(app.token("ana"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
    // Static assets stay cacheable, also when fetched with a session.
    for path in ["/static/app.css", "/static/app.js"] {
        let r = b.c.get(format!("{}{path}", b.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=300",
            "{path}"
        );
    }
}

both_backends!(
    http_deployment_has_plain_cookies_and_no_hsts,
    signed_in_answers_are_not_stored,
);
