//! The approval queue and the count every page shows beside "Approval queue": the count is
//! the queue's length (one decision), it follows every audited event at once, and while
//! nothing happened it costs one primary-key read.

use std::sync::{Arc, Mutex};

use countersign::db::{self, users};
use countersign::domain::schema::{Schema, EXAMPLE_SCHEMA};
use countersign::service::queue::{queue, Badges};
use countersign::service::CurrentUser;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::Connection;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, TestApp};
use crate::web::sign_in;

fn person(app: &TestApp, who: &str) -> CurrentUser {
    let mut conn = app.conn();
    let u = users::find_user_by_email(&mut conn, TestApp::email(who))
        .unwrap()
        .unwrap();
    CurrentUser::load(&mut conn, u).unwrap()
}

fn schema() -> Schema {
    Schema::from_toml(EXAMPLE_SCHEMA).unwrap()
}

/// Every statement a connection sends, as text.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Statements {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            self.0.lock().unwrap().push(query.to_string());
        }
    }
}

impl Statements {
    /// The statements since the last call that read or write data (not BEGIN/COMMIT).
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
            .into_iter()
            .filter(|q| {
                let q = q.trim_start().to_ascii_uppercase();
                !(q.starts_with("BEGIN") || q.starts_with("COMMIT") || q.starts_with("ROLLBACK"))
            })
            .collect()
    }
}

async fn signed(app: &TestApp, id: i64, who: &str, side: &str, fp: &str) {
    let (s, v) = app.sign(id, who, side, fp, Some(1)).await;
    assert!(s.is_success(), "{who} {side}: {s} {v}");
}

async fn nav_count(b: &crate::web::Browser) -> usize {
    let (_, page) = b.get("/changes").await;
    page.split("class=\"count\" aria-label=\"")
        .nth(1)
        .and_then(|r| r.split(" waiting\"").next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

async fn the_badge_is_the_queue_and_cheap(app: TestApp) {
    app.load_fixture().await;
    let schema = schema();
    let badges = Badges::default();
    let mut conn = app.conn();
    let seen = Statements::default();
    conn.set_instrumentation(seen.clone());
    let carla = person(&app, "carla");
    let count =
        |conn: &mut db::DbConn, who: &CurrentUser| badges.count(conn, &schema, who).unwrap();
    let len = |conn: &mut db::DbConn, who: &CurrentUser| queue(conn, &schema, who).unwrap().len();

    assert_eq!(count(&mut conn, &carla), 0);
    let (a, fp_a) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let (second, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(2)]}))
        .await;
    seen.take();
    // Something happened: the whole queue is computed (a fixed handful of queries).
    assert_eq!(count(&mut conn, &carla), 2);
    assert_eq!(len(&mut conn, &carla), 2);
    let first = seen.take();
    // Nothing happened since: one read of the audit head.
    assert_eq!(count(&mut conn, &carla), 2);
    let again = seen.take();
    assert_eq!(again.len(), 1, "{again:#?}");
    assert!(again[0].contains("audit_head"), "{again:#?}");
    assert!(first.len() > again.len(), "{first:#?}");

    // A sign-off moves it at once, for the signer and for the other side.
    let ben = person(&app, "ben");
    assert_eq!(
        count(&mut conn, &ben),
        2,
        "ben can sign the requester side of both"
    );
    signed(&app, a, "carla", "implementer", &fp_a).await;
    assert_eq!(count(&mut conn, &carla), 1);
    assert_eq!(
        count(&mut conn, &ben),
        2,
        "the requester side still needs someone"
    );
    signed(&app, a, "ben", "requester", &fp_a).await;
    assert_eq!(count(&mut conn, &ben), 1);
    assert_eq!(count(&mut conn, &ben), len(&mut conn, &ben));

    // A membership change too: otto, in no team of the changes, has the queue once he
    // joins the implementing team, and not after he leaves it.
    let otto = person(&app, "otto");
    assert_eq!(count(&mut conn, &otto), 0);
    app.join("otto", "platform-ops");
    let otto = person(&app, "otto");
    assert_eq!(count(&mut conn, &otto), 1);
    app.leave("otto", "platform-ops");
    let otto = person(&app, "otto");
    assert_eq!(count(&mut conn, &otto), len(&mut conn, &otto));

    // The page's number is the same count, and follows a sign-off made elsewhere.
    let b = sign_in(&app, "eli").await;
    assert_eq!(nav_count(&b).await, 1);
    let (_, q) = b.get("/queue").await;
    assert_eq!(q.matches("<tr").count() - 1, 1, "{q}");
    let c = app.change(second).await;
    signed(
        &app,
        second,
        "dev",
        "implementer",
        c["fingerprint"].as_str().unwrap(),
    )
    .await;
    assert_eq!(nav_count(&b).await, 0);
}

both_backends!(the_badge_is_the_queue_and_cheap);
