//! Between waves in real headless Chromium (issue #13): an implementer watches the bake
//! count down on the change page, pauses the execution with a reason, sees it hold past the
//! bake, continues it, and sees it complete with each wave's timeline. And the change
//! calendar: one admin proposes a freeze on the calendar page, a second confirms it, and
//! the month and list views show it.

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::json;

use crate::both_backends;
use crate::browser::{browser, chromedriver, shot, sign_in, wait_text, PW};
use crate::helpers::{inst, spawn_app_with, Backend};

async fn bake_pause_and_continue_in_chromium(backend: Backend) {
    let Some(driver) = chromedriver() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let schema = format!(
        "{}\n\n[operations.uninstall_gated]\nlabel = \"Uninstall apps, wave by wave\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nrequested_by = [\"app-owners\"]\nsignoffs = {{ requester = 1, implementer = 1 }}\nwaves = [1]\nbake = \"4s\"\n",
        countersign::domain::schema::EXAMPLE_SCHEMA
    );
    std::fs::write(&path, schema).unwrap();
    let app = spawn_app_with(backend, move |c| c.schema_path = Some(path)).await;
    app.load_fixture().await;
    app.set_password("carla", PW);
    let (id, _) = app
        .approved(
            "uninstall_gated",
            json!({"ids": [inst(1), inst(2), inst(3)]}),
        )
        .await;
    let c = browser(&driver).await;
    sign_in(&c, &app, "carla@ops.example").await;
    let page = format!("{}/changes/CHG-{id}", app.address);
    c.goto(&page).await.unwrap();
    c.find(Locator::Css("#execute"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page refreshes itself; the canary ran and the bake counts down.
    let baking = wait_text(&c, "#baking", |t| t.contains("Baking before wave 2")).await;
    assert!(baking.contains("UTC"), "{baking}");
    let left: i64 = wait_text(&c, "#bake-left", |t| t.parse::<i64>().is_ok())
        .await
        .parse()
        .unwrap();
    assert!((0..=4).contains(&left), "{left}");
    shot(&c, "gates-baking").await;
    // Pause with a reason.
    c.find(Locator::Css("form[data-action=pause] input[name=reason]"))
        .await
        .unwrap()
        .send_keys("checking the error budget")
        .await
        .unwrap();
    c.find(Locator::Css("#pause"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".flash", |t| t.contains("Execution paused")).await;
    let paused = wait_text(&c, "#paused", |t| t.contains("checking the error budget")).await;
    assert!(paused.contains("paused by carla@ops.example"), "{paused}");
    // It holds past the bake.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.goto(&page).await.unwrap();
    wait_text(&c, "#exec-state", |t| t == "paused").await;
    shot(&c, "gates-paused").await;
    c.find(Locator::Css("#continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".flash", |t| t.contains("Execution continued")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = wait_text(&c, "#exec-state", |_| true).await;
        if state == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "execution shown as {state:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.goto(&page).await.unwrap();
    }
    let timeline = wait_text(&c, ".wave-timeline", |t| t.contains("baked until")).await;
    assert!(timeline.contains("let go on"), "{timeline}");
    shot(&c, "gates-completed").await;
    c.close().await.unwrap();
}

async fn a_freeze_proposed_and_confirmed_in_chromium(backend: Backend) {
    let Some(driver) = chromedriver() else {
        return;
    };
    let app = spawn_app_with(backend, |_| {}).await;
    app.set_password("root", PW);
    {
        use countersign::db::{users, write_tx};
        let mut conn = app.conn();
        write_tx(
            &mut conn,
            |conn| -> Result<(), countersign::error::AppError> {
                let u = users::create_user(conn, "rita@admin.example", "Rita", true)?;
                users::set_password(conn, u.id, PW)?;
                Ok(())
            },
        )
        .unwrap();
    }
    let c = browser(&driver).await;
    sign_in(&c, &app, "root@admin.example").await;
    c.goto(&format!("{}/calendar?from=2026-12-01", app.address))
        .await
        .unwrap();
    wait_text(&c, "main h1", |t| t == "Change calendar").await;
    c.find(Locator::Css("#fz-name"))
        .await
        .unwrap()
        .send_keys("Year end")
        .await
        .unwrap();
    // The date pickers' typing is locale-bound: set their values directly.
    c.execute(
        "document.getElementById('fz-start').value = '2026-12-20T00:00'; document.getElementById('fz-end').value = '2027-01-04T00:00';",
        vec![],
    )
    .await
    .unwrap();
    c.find(Locator::Css("#propose-freeze button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".flash", |t| t.contains("Proposed")).await;
    let pending = wait_text(&c, "#proposals", |t| t.contains("Year end")).await;
    assert!(pending.contains("Another admin confirms it"), "{pending}");
    shot(&c, "calendar-proposed").await;
    c.close().await.unwrap();
    // A second admin confirms it; the month and the list show it.
    let c = browser(&driver).await;
    sign_in(&c, &app, "rita@admin.example").await;
    c.goto(&format!("{}/calendar?from=2026-12-01", app.address))
        .await
        .unwrap();
    c.find(Locator::Css("#proposals form[action$=confirm] button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".flash", |t| t.contains("Confirmed")).await;
    c.goto(&format!("{}/calendar?from=2026-12-01", app.address))
        .await
        .unwrap();
    let cell = wait_text(&c, "td[data-date='2026-12-24']", |t| t.contains("Year end")).await;
    assert!(cell.contains("Freeze (hard)"), "{cell}");
    shot(&c, "calendar-month").await;
    c.find(Locator::LinkText("List"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let list = wait_text(&c, "#calendar-list", |t| t.contains("Year end")).await;
    assert!(list.contains("2026-12-20 00:00"), "{list}");
    c.close().await.unwrap();
}

/// A partially failed execution: the implementer retries the failed target from the page.
async fn retry_failed_in_chromium(backend: Backend) {
    let Some(driver) = chromedriver() else {
        return;
    };
    let (endpoint, _keys) = crate::drift::refusing_receiver().await;
    let (app, _dir) =
        crate::drift::app_with(backend, &crate::drift::deprovision(&endpoint), true).await;
    app.set_password("carla", PW);
    let (id, fp) = app
        .approved(
            "deprovision_app",
            json!({"ids": [inst(1), inst(2), inst(3)]}),
        )
        .await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, reqwest::StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["partially_failed"]).await;
    let c = browser(&driver).await;
    sign_in(&c, &app, "carla@ops.example").await;
    let page = format!("{}/changes/CHG-{id}", app.address);
    c.goto(&page).await.unwrap();
    let button = wait_text(&c, "#retry-failed", |t| t.contains("Retry the 1 failed")).await;
    assert!(button.contains("targets"), "{button}");
    c.find(Locator::Css(
        "form[data-action=retry_failed] input[name=reason]",
    ))
    .await
    .unwrap()
    .send_keys("the vendor fixed it")
    .await
    .unwrap();
    c.find(Locator::Css("#retry-failed"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&c, ".flash", |t| t.contains("The failed targets run again")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state = wait_text(&c, "#exec-state", |_| true).await;
        if state == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "execution shown as {state:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.goto(&page).await.unwrap();
    }
    assert!(
        c.find(Locator::Css("#retry-failed")).await.is_err(),
        "nothing left to retry"
    );
    shot(&c, "retry-failed-completed").await;
    c.close().await.unwrap();
}

both_backends!(
    backend: bake_pause_and_continue_in_chromium,
    a_freeze_proposed_and_confirmed_in_chromium,
    retry_failed_in_chromium,
);
