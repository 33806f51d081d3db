//! The whole story in real headless Chromium (Debian's `chromium` + `chromium-driver`,
//! driven over WebDriver by fantoccini), as two people: a requester pastes IDs including a
//! wrong-kind line, sees the error, fixes it and submits; an implementer finds it in the
//! queue, signs by typing the count, executes, watches it complete and rolls it back.
//! Screenshots go to `artifacts/screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::both_backends;
use crate::helpers::{inst, site, spawn_app_with, Backend, TestApp};

pub(crate) const PW: &str = "correct horse battery";

pub(crate) struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn chromedriver() -> Option<Driver> {
    let port = crate::smtp::free_port();
    let child = match Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("chromedriver is required in CI: {e}");
            }
            eprintln!(
                "skipped: chromedriver not found ({e}); install chromium and chromium-driver"
            );
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Driver { child, port })
}

pub(crate) async fn browser(d: &Driver) -> Client {
    countersign::init_tls();
    let mut caps = serde_json::map::Map::new();
    let mut opts = serde_json::json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1100"]});
    if std::path::Path::new("/usr/bin/chromium").exists() {
        opts["binary"] = "/usr/bin/chromium".into();
    }
    caps.insert("goog:chromeOptions".into(), opts);
    ClientBuilder::rustls()
        .expect("rustls")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("WebDriver session")
}

fn shots() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts/screenshots");
    std::fs::create_dir_all(&p).unwrap();
    p
}

pub(crate) async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element matching `css` once `ok` accepts it (15 s at most);
/// pages navigate under us, so stale elements are looked up again.
pub(crate) async fn wait_text(c: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if let Ok(t) = e.text().await {
                if ok(&t) {
                    return t;
                }
                last = t;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{css} never showed what was expected (last: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    wait_text(c, css, |_| true).await
}

pub(crate) async fn sign_in(c: &Client, app: &TestApp, email: &str) {
    c.goto(&format!("{}/", app.address)).await.unwrap();
    assert!(
        c.current_url().await.unwrap().path().starts_with("/login"),
        "signed-out → login"
    );
    c.find(Locator::Css("#email"))
        .await
        .unwrap()
        .send_keys(email)
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(PW)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "main h1", |t| t == "Home").await;
}

async fn sign_out(c: &Client) {
    c.find(Locator::Css("form[action='/logout'] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(c, "#email").await;
}

async fn the_story_in_chromium(backend: Backend) {
    let Some(driver) = chromedriver() else {
        return;
    };
    // The implementer types the count for every change of this operation.
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(
        &schema,
        countersign::domain::schema::EXAMPLE_SCHEMA.replacen(
            "confirm_above = 20",
            "confirm_above = 0",
            1,
        ),
    )
    .unwrap();
    let app = spawn_app_with(backend, move |c| c.schema_path = Some(schema)).await;
    app.load_fixture().await;
    app.set_password("ana", PW);
    app.set_password("carla", PW);
    let c = browser(&driver).await;

    // The requester.
    sign_in(&c, &app, "ana@req.example").await;
    shot(&c, "home").await;
    c.goto(&format!("{}/changes/new", app.address))
        .await
        .unwrap();
    c.find(Locator::Css("#operation"))
        .await
        .unwrap()
        .select_by_value("uninstall_app")
        .await
        .unwrap();
    c.find(Locator::Css("#title"))
        .await
        .unwrap()
        .send_keys("Remove Insight from Acme")
        .await
        .unwrap();
    c.find(Locator::Css("#rationale"))
        .await
        .unwrap()
        .send_keys("Insight is retired.")
        .await
        .unwrap();
    let ids = c.find(Locator::Css("#ids")).await.unwrap();
    ids.send_keys(&format!("{}\n{}\n0b1c-typo\n{}", inst(1), site(2), inst(3)))
        .await
        .unwrap();
    // A little script counts the lines and flags what cannot be an ID of the kind at once
    // (a site's UUID looks like an installation's: only the server can tell those apart).
    let hint = wait_text(&c, "#ids-hint", |t| t.starts_with("4 IDs")).await;
    assert!(
        hint.contains("line 3 does not look like App installation IDs"),
        "{hint}"
    );
    c.find(Locator::Css("#create-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let errors = wait_text(&c, "#resolution-errors", |t| !t.is_empty()).await;
    assert!(errors.contains("targets.ids line 2"), "{errors}");
    assert!(
        errors.contains("is a Cloud site"),
        "the wrong kind is named: {errors}"
    );
    assert!(errors.contains("targets.ids line 3"), "{errors}");
    shot(&c, "new-change-wrong-kind").await;
    // The input is still there; fix the list and preview.
    let ids = c.find(Locator::Css("#ids")).await.unwrap();
    assert!(ids
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default()
        .contains(&site(2)));
    ids.clear().await.unwrap();
    ids.send_keys(&format!("{}\n{}", inst(1), inst(3)))
        .await
        .unwrap();
    c.find(Locator::Css("#preview-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let preview = wait_text(&c, "#preview", |t| t.contains("App installations")).await;
    assert!(
        preview.contains("2 App installations on 2 Cloud sites"),
        "{preview}"
    );
    shot(&c, "new-change-preview").await;
    c.find(Locator::Css("#create-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let blast = wait_text(&c, "#blast", |t| t.contains("App installations")).await;
    assert!(blast.contains("2 App installations"), "{blast}");
    let change_url = c.current_url().await.unwrap();
    let path = change_url.path().to_string();
    assert!(path.starts_with("/changes/CHG-"), "{path}");
    c.find(Locator::Css("#sign-requester"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".flash", |t| t.contains("sign-off is recorded")).await;
    sign_out(&c).await;

    // The implementer.
    sign_in(&c, &app, "carla@ops.example").await;
    c.goto(&format!("{}/queue", app.address)).await.unwrap();
    shot(&c, "queue").await;
    c.find(Locator::Css(&format!("a[href='{path}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#confirm-implementer"))
        .await
        .unwrap()
        .send_keys("2")
        .await
        .unwrap();
    shot(&c, "change-signing").await;
    c.find(Locator::Css("#sign-implementer"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, "#state", |t| t == "approved").await;
    c.find(Locator::Css("#execute"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Watch it complete (the page refreshes itself while it runs).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = c
            .find(Locator::Css("#exec-state"))
            .await
            .ok()
            .map(|e| async move { e.text().await.unwrap_or_default() });
        let state = match state {
            Some(f) => f.await,
            None => String::new(),
        };
        if state == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "execution shown as {state:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.refresh().await.unwrap();
    }
    shot(&c, "change-executed").await;
    assert_eq!(app.entity(&inst(1)).await["state"], "deleted");
    c.find(Locator::Css("#rollback"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".flash", |t| t.contains("Rollback created")).await;
    assert_ne!(c.current_url().await.unwrap().path(), path);
    shot(&c, "rollback").await;
    c.goto(&format!("{}/glossary", app.address)).await.unwrap();
    shot(&c, "glossary").await;
    c.close().await.unwrap();
}

both_backends!(backend: the_story_in_chromium);
