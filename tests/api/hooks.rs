//! Chat and event hooks against real loopback receivers: each format (Slack Block Kit,
//! Teams Adaptive Card, signed JSON) as the receiver sees it, the team rule (a team hears
//! of its changes only; calendar events reach every team), a receiver that is down and
//! back gets each event exactly once, dead letters and the admin retry. The team's
//! management rules and the page: `hooks_manage.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp};

/// One request a receiver got, and what it answered.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    path: String,
    headers: HashMap<String, String>,
    raw: Vec<u8>,
    body: Value,
    answered: u16,
}

#[derive(Clone)]
pub(crate) struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Got>>>,
    /// The status to answer (200 when 0).
    answer: Arc<AtomicU16>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let answer = Arc::new(AtomicU16::new(0));
        let (g, a) = (got.clone(), answer.clone());
        let server = HttpServer::new(move || {
            let (g, a) = (g.clone(), a.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (g, a) = (g.clone(), a.clone());
                async move {
                    let status = match a.load(Ordering::SeqCst) {
                        0 => 200,
                        s => s,
                    };
                    g.lock().unwrap().push(Got {
                        path: req.path().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect(),
                        raw: body.to_vec(),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        answered: status,
                    });
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .body(if status == 200 { "ok" } else { "no_service" })
                }
            }))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver {
            base: format!("http://127.0.0.1:{port}"),
            got,
            answer,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// What arrived at `path` and was answered 200.
    pub(crate) fn accepted(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == format!("/{path}") && g.answered == 200)
            .cloned()
            .collect()
    }

    pub(crate) fn all(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == format!("/{path}"))
            .cloned()
            .collect()
    }
}

/// An app whose outbox deliverers run quickly (mail itself stays off).
pub(crate) async fn app(backend: Backend) -> TestApp {
    let app = spawn_app_with(backend, |c| {
        c.mail.mailer = true;
        c.mail.poll_ms = 40;
        c.mail.retry_base_ms = 40;
        c.mail.max_attempts = 12;
        c.mail.hook_timeout_secs = 5;
        c.mail.public_url = "https://cs.example".into();
    })
    .await;
    app.load_fixture().await;
    app
}

pub(crate) async fn add_hook(app: &TestApp, who: &str, team: &str, body: Value) -> Value {
    let (s, v) = app
        .post(&format!("/api/v1/teams/{team}/hooks"), who, body)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

/// Wait until hook `id` of `team` has `n` deliveries, all sent; they, oldest first.
pub(crate) async fn delivered(app: &TestApp, team: &str, id: i64, n: usize) -> Vec<Value> {
    let mut last = Value::Null;
    for _ in 0..300 {
        let (s, v) = app
            .get(
                &format!("/api/v1/teams/{team}/hooks/{id}/deliveries"),
                "root",
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let list = v["deliveries"].as_array().unwrap().clone();
        if list.len() >= n && list.iter().all(|d| d["state"] == "sent") {
            assert_eq!(list.len(), n, "more deliveries than expected: {v}");
            return list.into_iter().rev().collect();
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("hook {id}: not {n} deliveries sent: {last}");
}

fn kinds(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|d| d["event"].as_str().unwrap().to_string())
        .collect()
}

/// A change approved and executed by the test people; (id, its change JSON).
async fn run_change(app: &TestApp) -> (i64, Value) {
    let (id, fp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1), inst(2)]}))
        .await;
    app.approve(id, &fp).await;
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    (id, app.change(id).await)
}

async fn each_format_reaches_its_receiver(backend: Backend) {
    let app = app(backend).await;
    let r = Receiver::start().await;
    let slack = add_hook(&app, "carla", "platform-ops", json!({"name": "#ops", "format": "slack", "url": r.url("slack"), "events": ["needs_signoff", "approved"]})).await;
    let teams = add_hook(&app, "ana", "app-owners", json!({"name": "App owners", "format": "teams", "url": r.url("teams"), "events": ["approved", "execution_finished"]})).await;
    let generic = add_hook(&app, "eli", "platform-ops", json!({"name": "pager", "format": "json", "url": r.url("json"),
        "events": ["needs_signoff", "signed", "approved", "execution_started", "execution_halted", "execution_finished"]})).await;
    // A team the change does not concern hears nothing of it.
    let other = add_hook(&app, "otto", "outsiders", json!({"name": "elsewhere", "format": "json", "url": r.url("outsiders"), "events": ["needs_signoff", "approved"]})).await;
    let secret = generic["secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 32, "{generic}");
    assert!(slack["secret"].is_null(), "{slack}");
    assert_eq!(
        slack["hook"]["url"],
        format!("{}/slack", r.base).replace("/slack", "/…")
    );

    let (id, change) = run_change(&app).await;
    let chg = format!("CHG-{id}");
    let link = format!("https://cs.example/changes/{chg}");
    let radius = change["summary"]["text"].as_str().unwrap().to_string();

    // Slack: Block Kit, the change linked, its state, who must act, the blast radius.
    let s = delivered(
        &app,
        "platform-ops",
        slack["hook"]["id"].as_i64().unwrap(),
        2,
    )
    .await;
    assert_eq!(kinds(&s), ["needs_signoff", "approved"]);
    let got = r.accepted("slack");
    assert_eq!(got.len(), 2);
    let first = &got[0].body;
    let title = first["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(title.starts_with(&format!("*<{link}|{chg} · ")), "{title}");
    let fields = first["blocks"][1]["fields"].to_string();
    assert!(fields.contains("awaiting sign-off"), "{fields}");
    assert!(
        fields.contains(
            "app-owners: 1 more requester sign-off; platform-ops: 1 more implementer sign-off"
        ),
        "{fields}"
    );
    assert_eq!(
        first["blocks"][2]["elements"][0]["text"],
        format!("Blast radius: {radius}")
    );
    assert_eq!(first["blocks"][3]["elements"][0]["url"], link);
    assert!(first["text"].as_str().unwrap().contains(&chg));
    let approved = got[1].body["blocks"][1]["fields"].to_string();
    assert!(
        approved.contains("platform-ops: an implementer can execute it"),
        "{approved}"
    );

    // Teams: an Adaptive Card with the facts and a link to open the change.
    let t = delivered(&app, "app-owners", teams["hook"]["id"].as_i64().unwrap(), 2).await;
    assert_eq!(kinds(&t), ["approved", "execution_finished"]);
    let card = &r.accepted("teams")[0].body["attachments"][0];
    assert_eq!(
        card["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["content"]["type"], "AdaptiveCard");
    assert_eq!(card["content"]["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(card["content"]["actions"][0]["url"], link);
    let facts: BTreeMap<String, String> = card["content"]["body"][2]["facts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["title"].as_str().unwrap().into(),
                f["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(facts["State"], "approved");
    assert_eq!(facts["Blast radius"], radius);

    // JSON: every subscribed event once, in order, signed over the timestamp and body.
    let j = delivered(
        &app,
        "platform-ops",
        generic["hook"]["id"].as_i64().unwrap(),
        6,
    )
    .await;
    assert_eq!(
        kinds(&j),
        [
            "needs_signoff",
            "signed",
            "signed",
            "approved",
            "execution_started",
            "execution_finished"
        ]
    );
    let got = r.accepted("json");
    assert_eq!(got.len(), 6);
    for (g, d) in got.iter().zip(&j) {
        let ts = &g.headers["x-countersign-timestamp"];
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.").as_bytes());
        mac.update(&g.raw);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(g.headers["x-countersign-signature"], want);
        assert_eq!(g.headers["x-countersign-delivery"], d["delivery_id"]);
        assert_eq!(g.body["delivery_id"], d["delivery_id"]);
        assert_eq!(g.headers["x-countersign-event"], d["event"]);
        assert_eq!(g.body["event"], d["event"]);
        assert_eq!(g.body["change"]["id"], chg);
        assert_eq!(g.body["url"], link);
        let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
        assert!((0..120).contains(&age), "timestamp {ts}");
    }
    assert_eq!(got[5].body["change"]["state"], "completed");
    assert_eq!(got[5].body["change"]["targets"], 2);

    // The outsiders' hook got nothing; the admin outbox lists hook deliveries by channel.
    assert!(r.all("outsiders").is_empty());
    let (_, o) = app
        .get(
            &format!(
                "/api/v1/teams/outsiders/hooks/{}/deliveries",
                other["hook"]["id"]
            ),
            "otto",
        )
        .await;
    assert_eq!(o["deliveries"], json!([]));
    let (_, out) = app.get("/api/v1/outbox?state=sent", "root").await;
    let hooks = out["mails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["channel"] == "hook")
        .count();
    assert_eq!(hooks, 2 + 2 + 6);
    assert!(
        out["mails"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["hook"] == "pager (team platform-ops)"),
        "the outbox names each hook: {out}"
    );
    // `/metrics`: hook deliveries by channel, and how long each attempt took.
    let (_, text) = crate::metrics::scrape(&app, None).await;
    use crate::metrics::sample;
    assert_eq!(
        sample(
            &text,
            "countersign_outbox_messages",
            &["state=\"sent\"", "channel=\"hook\"", "kind=\"approved\""]
        ),
        Some(3.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            "countersign_delivery_duration_seconds_count",
            &["channel=\"hook\"", "outcome=\"delivered\""]
        ) >= Some(10.0),
        "{text}"
    );
}

async fn a_receiver_down_then_back_gets_each_event_once(backend: Backend) {
    let app = app(backend).await;
    let r = Receiver::start().await;
    r.answer.store(503, Ordering::SeqCst);
    let h = add_hook(&app, "carla", "platform-ops", json!({"name": "flaky", "format": "json", "url": r.url("flaky"),
        "events": ["needs_signoff", "signed", "approved", "execution_started", "execution_finished"]})).await;
    let id = h["hook"]["id"].as_i64().unwrap();
    let (cid, _) = run_change(&app).await;
    // Let it fail a few times, then come back.
    for _ in 0..200 {
        if r.all("flaky").len() >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        r.all("flaky").len() >= 6,
        "the deliverer retried while it was down"
    );
    r.answer.store(0, Ordering::SeqCst);
    let list = delivered(&app, "platform-ops", id, 6).await;
    assert_eq!(
        kinds(&list),
        [
            "needs_signoff",
            "signed",
            "signed",
            "approved",
            "execution_started",
            "execution_finished"
        ]
    );
    assert!(
        list.iter().any(|d| d["attempts"].as_i64().unwrap() > 1),
        "{list:?}"
    );
    let ok = r.accepted("flaky");
    let mut ids: Vec<String> = ok
        .iter()
        .map(|g| g.headers["x-countersign-delivery"].clone())
        .collect();
    assert_eq!(ids.len(), 6, "each event accepted exactly once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    // A retry carries the same delivery id as the refused attempts.
    let refused: Vec<String> = r
        .all("flaky")
        .iter()
        .filter(|g| g.answered == 503)
        .map(|g| g.headers["x-countersign-delivery"].clone())
        .collect();
    assert!(refused.iter().all(|d| ids.contains(d)));
    assert!(ok
        .iter()
        .all(|g| g.body["change"]["id"] == format!("CHG-{cid}")));

    // A receiver that refuses for good (404): dead at once; an admin retries it once the
    // receiver is fixed, and it arrives once.
    r.answer.store(404, Ordering::SeqCst);
    let (s, t) = app
        .post(
            &format!("/api/v1/teams/platform-ops/hooks/{id}/test"),
            "carla",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{t}");
    assert_eq!(t["event"], "test");
    let mail = t["id"].as_i64().unwrap();
    let mut dead = Value::Null;
    for _ in 0..200 {
        let (_, v) = app.get("/api/v1/outbox?state=dead", "root").await;
        if let Some(m) = v["mails"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == mail)
        {
            dead = m.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(dead["attempts"], 1, "a 404 is not retried: {dead}");
    assert!(
        dead["last_error"].as_str().unwrap().contains("404"),
        "{dead}"
    );
    assert!(
        !dead["last_error"].as_str().unwrap().contains("127.0.0.1"),
        "no address in errors"
    );
    r.answer.store(0, Ordering::SeqCst);
    let (s, v) = app
        .post(&format!("/api/v1/outbox/{mail}/retry"), "carla", json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "only admins retry: {v}");
    let (s, v) = app
        .post(&format!("/api/v1/outbox/{mail}/retry"), "root", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let list = delivered(&app, "platform-ops", id, 7).await;
    assert_eq!(list[6]["event"], "test");
    let tests: Vec<Got> = r
        .accepted("flaky")
        .into_iter()
        .filter(|g| g.headers["x-countersign-event"] == "test")
        .collect();
    assert_eq!(tests.len(), 1);
    assert!(tests[0].body["headline"]
        .as_str()
        .unwrap()
        .contains("`flaky` of team platform-ops"));
}

async fn calendar_events_reach_every_team(backend: Backend) {
    let mut app = app(backend).await;
    let token = {
        use countersign::db::{users, write_tx};
        let mut conn = app.conn();
        write_tx(
            &mut conn,
            |conn| -> Result<String, countersign::error::AppError> {
                let u = users::create_user(conn, "rita@admin.example", "Rita", true)?;
                Ok(users::create_token(conn, u.id, "test")?)
            },
        )
        .unwrap()
    };
    app.tokens.insert("rita", token);
    let r = Receiver::start().await;
    let a = add_hook(
        &app,
        "ana",
        "app-owners",
        json!({"name": "a", "format": "slack", "url": r.url("a"), "events": ["lockdown"]}),
    )
    .await;
    let o = add_hook(
        &app,
        "otto",
        "outsiders",
        json!({"name": "o", "format": "json", "url": r.url("o"), "events": ["lockdown", "freeze"]}),
    )
    .await;
    let p = add_hook(
        &app,
        "carla",
        "platform-ops",
        json!({"name": "p", "format": "json", "url": r.url("p"), "events": ["approved"]}),
    )
    .await;
    let (s, v) = app
        .post(
            "/api/v1/calendar/lockdown",
            "root",
            json!({"reason": "incident 42"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .post(
            &format!("/api/v1/calendar/proposals/{}/confirm", v["id"]),
            "rita",
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    delivered(&app, "app-owners", a["hook"]["id"].as_i64().unwrap(), 1).await;
    let got = delivered(&app, "outsiders", o["hook"]["id"].as_i64().unwrap(), 1).await;
    assert_eq!(kinds(&got), ["lockdown"]);
    let body = &r.accepted("o")[0].body;
    assert!(
        body["headline"]
            .as_str()
            .unwrap()
            .starts_with("Lockdown declared"),
        "{body}"
    );
    assert_eq!(body["url"], "https://cs.example/calendar");
    assert!(body["change"].is_null());
    let slack = &r.accepted("a")[0].body;
    assert!(slack["blocks"][0]["text"]["text"]
        .as_str()
        .unwrap()
        .contains("Lockdown declared"));
    // Not subscribed: nothing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(r.all("p").is_empty());
    let (_, v) = app
        .get(
            &format!(
                "/api/v1/teams/platform-ops/hooks/{}/deliveries",
                p["hook"]["id"]
            ),
            "carla",
        )
        .await;
    assert_eq!(v["deliveries"], json!([]));
}

both_backends!(backend: each_format_reaches_its_receiver, a_receiver_down_then_back_gets_each_event_once, calendar_events_reach_every_team);
