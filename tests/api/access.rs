//! One decision of who may do what: for every role × state, the API's `allowed_actions`,
//! the change page's buttons and forms, and what the services accept all agree, and match
//! the table below (the README's authorisation table is the same table).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use countersign::config::Config;
use countersign::db::DatabaseUrl;
use countersign::domain::schema::{Schema, EXAMPLE_SCHEMA};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_backends;
use crate::helpers::{inst, spawn_app_with, Backend, TestApp, ORG1, ORG2};
use crate::web::sign_in;

/// Installations prepared for the changes this test makes.
const EXTRA: u32 = 400;

const ALL: [&str; 17] = [
    "edit",
    "resolve",
    "submit",
    "sign_requester",
    "sign_implementer",
    "reject",
    "cancel",
    "comment",
    "execute",
    "resume",
    "skip_drifted",
    "retry_failed",
    "schedule",
    "unschedule",
    "abort",
    "rollback",
    "draft_notice",
];

/// Roles: the author (ana, requesting team), a requester who signed (ben), an implementer
/// who did not sign (eli), a member of both teams (dev), another team (otto), an admin in no
/// team (root). Expected actions per state.
fn expected() -> BTreeMap<(&'static str, &'static str), BTreeSet<&'static str>> {
    let mut t = BTreeMap::new();
    let mut put = |state: &'static str, role: &'static str, actions: &[&'static str]| {
        t.insert((state, role), actions.iter().copied().collect());
    };
    put(
        "draft",
        "author",
        &["edit", "resolve", "submit", "cancel", "comment"],
    );
    put(
        "draft",
        "requester",
        &["resolve", "submit", "cancel", "comment"],
    );
    put("draft", "implementer", &["resolve", "comment"]);
    put("draft", "both", &["resolve", "submit", "cancel", "comment"]);
    put("draft", "other", &[]);
    put("draft", "admin", &["resolve", "cancel", "comment"]);
    put(
        "awaiting_signoff",
        "author",
        &[
            "edit",
            "resolve",
            "sign_requester",
            "reject",
            "cancel",
            "comment",
        ],
    );
    put(
        "awaiting_signoff",
        "requester",
        &["resolve", "sign_requester", "reject", "cancel", "comment"],
    );
    put(
        "awaiting_signoff",
        "implementer",
        &["resolve", "sign_implementer", "reject", "comment"],
    );
    put(
        "awaiting_signoff",
        "both",
        &["resolve", "sign_implementer", "reject", "cancel", "comment"],
    );
    put("awaiting_signoff", "other", &[]);
    put(
        "awaiting_signoff",
        "admin",
        &["resolve", "reject", "cancel", "comment"],
    );
    put(
        "approved",
        "author",
        &[
            "edit",
            "resolve",
            "reject",
            "cancel",
            "comment",
            "draft_notice",
        ],
    );
    put(
        "approved",
        "requester",
        &["resolve", "reject", "cancel", "comment", "draft_notice"],
    );
    put(
        "approved",
        "implementer",
        &[
            "resolve",
            "reject",
            "comment",
            "execute",
            "schedule",
            "draft_notice",
        ],
    );
    // A member of both teams never drafts a customer notice: nobody would be left to
    // approve it (domain::notice).
    put(
        "approved",
        "both",
        &[
            "resolve", "reject", "cancel", "comment", "execute", "schedule",
        ],
    );
    put("approved", "other", &[]);
    put(
        "approved",
        "admin",
        &["resolve", "reject", "cancel", "comment"],
    );
    for st in ["rejected", "cancelled"] {
        for role in ["author", "requester", "implementer", "both", "admin"] {
            put(st, role, &["comment"]);
        }
        put(st, "other", &[]);
    }
    put("executing", "author", &["comment", "draft_notice"]);
    put("executing", "requester", &["comment", "draft_notice"]);
    // A running execution: the implementers (and an admin) may pause or abort it.
    put(
        "executing",
        "implementer",
        &["comment", "pause", "abort", "draft_notice"],
    );
    put("executing", "both", &["comment", "pause", "abort"]);
    put("executing", "other", &[]);
    put("executing", "admin", &["comment", "pause", "abort"]);
    put("halted", "author", &["comment", "draft_notice"]);
    put("halted", "requester", &["comment", "draft_notice"]);
    put(
        "halted",
        "implementer",
        &["comment", "resume", "skip_wave", "abort", "draft_notice"],
    );
    put(
        "halted",
        "both",
        &["comment", "resume", "skip_wave", "abort"],
    );
    put("halted", "other", &[]);
    put("halted", "admin", &["comment", "abort"]);
    put(
        "completed",
        "author",
        &["comment", "rollback", "draft_notice"],
    );
    put(
        "completed",
        "requester",
        &["comment", "rollback", "draft_notice"],
    );
    put(
        "completed",
        "implementer",
        &["comment", "rollback", "draft_notice"],
    );
    put("completed", "both", &["comment", "rollback"]);
    put("completed", "other", &[]);
    put("completed", "admin", &["comment", "rollback"]);
    // Aborted before any target ran: nothing to roll back.
    put("aborted", "author", &["comment", "draft_notice"]);
    put("aborted", "requester", &["comment", "draft_notice"]);
    put("aborted", "implementer", &["comment", "draft_notice"]);
    put("aborted", "both", &["comment"]);
    put("aborted", "other", &[]);
    put("aborted", "admin", &["comment"]);
    // A rollback created by an implementer (carla): she is its author, so she never signs
    // its implementer side; she may reword it, re-resolve, reject, cancel and comment.
    put(
        "rollback",
        "rollback_author",
        &["edit", "resolve", "reject", "cancel", "comment"],
    );
    put(
        "rollback",
        "requester",
        &["resolve", "sign_requester", "reject", "cancel", "comment"],
    );
    put(
        "rollback",
        "implementer",
        &["resolve", "sign_implementer", "reject", "comment"],
    );
    t
}

/// The README's table ("Who may do what") is this table.
#[test]
fn the_readme_table_is_the_tested_table() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("### Who may do what")
        .nth(1)
        .expect("README has the section");
    let roles = [
        "author",
        "requester",
        "implementer",
        "both",
        "other",
        "admin",
    ];
    let want = expected();
    let mut rows = 0;
    for line in section
        .lines()
        .skip_while(|l| !l.starts_with("| state"))
        .skip(2)
    {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let states: Vec<&str> = match cells[0] {
            "completed, partially_failed (something ran)" => vec!["completed"],
            "failed, aborted with nothing done" => vec!["aborted"],
            "rejected, cancelled" => vec!["rejected", "cancelled"],
            s => vec![s],
        };
        for st in states {
            for (i, role) in roles.iter().enumerate() {
                let listed: BTreeSet<&str> = match cells[i + 1] {
                    "—" => BTreeSet::new(),
                    c => c.split(", ").collect(),
                };
                let tested = want
                    .get(&(st, *role))
                    .unwrap_or_else(|| panic!("README row {st} has no tested counterpart"));
                assert_eq!(&listed, tested, "README {st} / {role}");
                rows += 1;
            }
        }
    }
    assert_eq!(rows, 9 * roles.len(), "every tested state is in the README");
}

fn person(role: &str) -> &'static str {
    match role {
        "author" => "ana",
        "requester" => "ben",
        "implementer" => "eli",
        "both" => "dev",
        "other" => "otto",
        "admin" => "root",
        "rollback_author" => "carla",
        _ => panic!("{role}"),
    }
}

struct Fixture {
    app: TestApp,
    schema: Arc<Schema>,
    config: Config,
    next: std::sync::atomic::AtomicU32,
}

impl Fixture {
    fn target(&self) -> String {
        // One fresh installation per change (executed ones are deleted).
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        assert!(n < EXTRA, "more changes than prepared installations");
        inst(1000 + n)
    }

    async fn run_worker_until(&self, id: i64, states: &[&str]) {
        let w = countersign::exec::Worker::spawn(
            self.app.pool.clone(),
            self.schema.clone(),
            self.config.clone(),
            Arc::new(countersign::exec::Wake::default()),
        );
        self.app.wait_execution(id, states).await;
        tokio::task::spawn_blocking(move || w.stop()).await.unwrap();
    }

    /// A fresh change in `state`; returns its id.
    async fn change_in(&self, state: &str) -> i64 {
        let app = &self.app;
        let targets = json!({"ids": [self.target()]});
        if state == "draft" || state == "cancelled" {
            let id = app.create("ana", "uninstall_app", targets).await["id"]
                .as_i64()
                .unwrap();
            if state == "cancelled" {
                let (s, v) = app
                    .post(&format!("/api/v1/changes/{id}/cancel"), "ana", json!({}))
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
            }
            return id;
        }
        let (id, fp) = app.submitted("ana", "uninstall_app", targets).await;
        match state {
            "awaiting_signoff" => return id,
            "rejected" => {
                let (s, v) = app
                    .post(
                        &format!("/api/v1/changes/{id}/reject"),
                        "carla",
                        json!({"reason": "no"}),
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
                return id;
            }
            _ => {}
        }
        app.approve(id, &fp).await;
        if state == "approved" {
            return id;
        }
        let (s, v) = app.execute(id, &fp).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        match state {
            "executing" => {}
            "halted" => {
                use countersign::db::schema::{changes, executions};
                use diesel::prelude::*;
                let mut conn = app.conn();
                diesel::update(executions::table.filter(executions::change_id.eq(id)))
                    .set(executions::state.eq("halted"))
                    .execute(&mut *conn)
                    .unwrap();
                diesel::update(changes::table.find(id))
                    .set(changes::state.eq("halted"))
                    .execute(&mut *conn)
                    .unwrap();
            }
            "aborted" => {
                let (s, v) = app
                    .post(&format!("/api/v1/changes/{id}/abort"), "carla", json!({}))
                    .await;
                assert_eq!(s, StatusCode::OK, "{v}");
            }
            "completed" | "rollback" => {
                self.run_worker_until(id, &["completed"]).await;
                if state == "rollback" {
                    let (s, v) = app
                        .post(
                            &format!("/api/v1/changes/{id}/rollback"),
                            "carla",
                            json!({}),
                        )
                        .await;
                    assert_eq!(s, StatusCode::CREATED, "{v}");
                    return v["id"].as_i64().unwrap();
                }
            }
            other => panic!("{other}"),
        }
        id
    }

    /// Try `action` on change `id` as `who` through the API.
    async fn attempt(&self, id: i64, who: &str, action: &str) -> (StatusCode, Value) {
        let app = &self.app;
        let c = app.change(id).await;
        let fp = c["fingerprint"].as_str().unwrap_or_default().to_string();
        let n = c["summary"]["targets"].as_u64();
        let p = |tail: &str| format!("/api/v1/changes/{id}{tail}");
        match action {
            "edit" => {
                app.patch(&p(""), who, json!({"title": format!("edited by {who}")}))
                    .await
            }
            "resolve" => app.post(&p("/resolve"), who, json!({})).await,
            "submit" => app.post(&p("/submit"), who, json!({})).await,
            "sign_requester" | "sign_implementer" => {
                let side = action.trim_start_matches("sign_");
                app.post(
                    &p("/signoffs"),
                    who,
                    json!({"side": side, "fingerprint": fp, "confirm_count": n}),
                )
                .await
            }
            "reject" => app.post(&p("/reject"), who, json!({"reason": "r"})).await,
            "cancel" => app.post(&p("/cancel"), who, json!({})).await,
            "comment" => app.post(&p("/comments"), who, json!({"body": "b"})).await,
            "execute" => {
                app.post(&p("/execute"), who, json!({"fingerprint": fp}))
                    .await
            }
            "resume" => app.post(&p("/resume"), who, json!({})).await,
            "continue" => app.post(&p("/continue"), who, json!({})).await,
            "pause" => app.post(&p("/pause"), who, json!({})).await,
            "skip_wave" => app.post(&p("/skip-wave"), who, json!({})).await,
            "skip_drifted" => app.post(&p("/skip-drifted"), who, json!({})).await,
            "retry_failed" => app.post(&p("/retry-failed"), who, json!({})).await,
            "schedule" => {
                app.post(
                    &p("/schedule"),
                    who,
                    json!({"fingerprint": fp, "at": "now"}),
                )
                .await
            }
            "unschedule" => {
                app.send(
                    reqwest::Method::DELETE,
                    &p("/schedule"),
                    who,
                    Some(json!({})),
                )
                .await
            }
            "abort" => app.post(&p("/abort"), who, json!({})).await,
            "rollback" => app.post(&p("/rollback"), who, json!({})).await,
            "draft_notice" => {
                app.post(
                    &p("/notices"),
                    who,
                    json!({"subject": "Maintenance", "body": "Dear {customer}", "preview": true}),
                )
                .await
            }
            other => panic!("{other}"),
        }
    }
}

/// What a change looks like from outside: state, fingerprint, sign-offs, title.
async fn snapshot_of(app: &TestApp, id: i64) -> Value {
    let c = app.change(id).await;
    json!({"state": c["state"], "fingerprint": c["fingerprint"], "title": c["title"], "signoffs": c["signoffs"].as_array().map(Vec::len), "rolled_back_by": c["rolled_back_by"]})
}

fn page_actions(html: &str) -> BTreeSet<String> {
    html.split("data-action=\"")
        .skip(1)
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect()
}

async fn one_decision_everywhere(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.worker = false).await;
    app.load_fixture().await;
    let extra: Vec<String> = (0..EXTRA)
        .map(|n| json!({"kind": "app_install", "id": inst(1000 + n), "parent": crate::helpers::site(1), "name": format!("extra {n}"), "attrs": {"app": "insight", "version": "1.0.0"}}).to_string())
        .collect();
    let (s, v) = app.import("carla", &extra, false).await;
    assert!(s.is_success(), "{v}");
    app.join("dev", "app-owners");
    // Contacts, so that a notice preview has recipients.
    let lines = [ORG1, ORG2]
        .iter()
        .map(|o| json!({"entity": o, "name": "Alice", "email": format!("alice@{o}.example"), "role": "admin"}).to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let r = app
        .client
        .post(format!("{}/api/v1/contacts", app.address))
        .bearer_auth(app.token("carla"))
        .body(lines)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let config = Config::for_database(DatabaseUrl::parse(&app.database_url).unwrap());
    let f = Fixture {
        schema: Arc::new(Schema::from_toml(EXAMPLE_SCHEMA).unwrap()),
        config,
        app,
        next: Default::default(),
    };
    let expected = expected();
    let states: BTreeSet<&str> = expected.keys().map(|(s, _)| *s).collect();
    let mut browsers = BTreeMap::new();
    for role in [
        "author",
        "requester",
        "implementer",
        "both",
        "other",
        "admin",
        "rollback_author",
    ] {
        browsers.insert(role, sign_in(&f.app, person(role)).await);
    }
    let mut mismatches = Vec::new();
    for state in states {
        let id = f.change_in(state).await;
        let before = snapshot_of(&f.app, id).await;
        let roles: Vec<&str> = expected
            .keys()
            .filter(|(s, _)| *s == state)
            .map(|(_, r)| *r)
            .collect();
        for role in roles {
            let who = person(role);
            let want: BTreeSet<String> = expected[&(state, role)]
                .iter()
                .map(|s| s.to_string())
                .collect();
            // The API's allowed_actions.
            let (s, v) = f.app.get(&format!("/api/v1/changes/{id}"), who).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let api: BTreeSet<String> = v["allowed_actions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            if api != want {
                mismatches.push(format!(
                    "{state}/{role}: allowed_actions {api:?}, expected {want:?}"
                ));
            }
            // The page's buttons and forms.
            let (s, html) = browsers[role].get(&format!("/changes/CHG-{id}")).await;
            assert_eq!(s, StatusCode::OK);
            let page = page_actions(&html);
            if page != want {
                mismatches.push(format!(
                    "{state}/{role}: page offers {page:?}, expected {want:?}"
                ));
            }
            // Everything else is refused by the service, and changes nothing.
            for action in ALL.iter().filter(|a| !want.contains(**a)) {
                let (s, v) = f.attempt(id, who, action).await;
                if !s.is_client_error() {
                    mismatches.push(format!(
                        "{state}/{role}: {action} was not refused ({s}): {v}"
                    ));
                }
            }
            assert_eq!(
                snapshot_of(&f.app, id).await,
                before,
                "{state}/{role}: a refused action changed the change"
            );
        }
    }
    // Each allowed action is accepted by the service (on a fresh change in that state).
    for ((state, role), actions) in &expected {
        for action in actions {
            let id = f.change_in(state).await;
            let (s, v) = f.attempt(id, person(role), action).await;
            if !s.is_success() {
                mismatches.push(format!(
                    "{state}/{role}: allowed {action} was refused ({s}): {v}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

both_backends!(backend: one_decision_everywhere);
