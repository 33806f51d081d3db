//! Customer notices are a two-person act (drafted by one team of the change, approved and
//! so sent by the other, only once the change is approved, at most one send per change every
//! ten minutes, the text's hash in the audit trail), and contacts are seen only by admins and
//! the teams of changes that affect the customer (API, CSV, the entity page, notice lists).

use countersign::db::models::OutboxRow;
use countersign::db::schema::{customer_notices, outbox};
use countersign::notify::mail::{render, MailSettings};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{inst, site, TestApp, ORG1, ORG2};
use crate::web::{field, sign_in};

const BODY: &str = "Dear {customer},\n\nyour app was removed by {change}.";

/// Contacts: Acme (org 1) has an admin and a billing contact and a technical one on site 1;
/// Globex (org 2) an admin.
async fn load_contacts(app: &TestApp) {
    let lines = [
        json!({"entity": ORG1, "name": "Alice Admin", "email": "alice@acme.example", "role": "admin"}),
        json!({"entity": ORG1, "name": "Bill Billing", "email": "bill@acme.example", "role": "billing"}),
        json!({"entity": site(1), "name": "Tina Tech", "email": "tina@acme.example", "role": "technical"}),
        json!({"entity": ORG2, "name": "Gary Globex", "email": "gary@globex.example", "role": "admin"}),
    ]
    .map(|j| j.to_string());
    let r = app
        .client
        .post(format!("{}/api/v1/contacts", app.address))
        .bearer_auth(app.token("carla"))
        .body(lines.join("\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
}

async fn setup(app: &TestApp) {
    app.load_fixture().await;
    load_contacts(app).await;
}

/// An approved change (requested by app-owners, implemented by platform-ops) that affects
/// Acme only.
async fn approved(app: &TestApp) -> i64 {
    app.approved("uninstall_app", json!({"ids": [inst(1), inst(3)]}))
        .await
        .0
}

fn notice_body(preview: bool) -> Value {
    json!({"subject": "Your app was removed", "body": BODY, "roles": ["admin", "technical"], "preview": preview})
}

async fn draft(app: &TestApp, id: i64, who: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/changes/{id}/notices"),
        who,
        notice_body(false),
    )
    .await
}

async fn act(app: &TestApp, id: i64, nid: i64, action: &str, who: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/api/v1/changes/{id}/notices/{nid}/{action}"),
        who,
        json!({}),
    )
    .await
}

/// Customer-notice mails in the outbox, by recipient.
fn notice_mails(app: &TestApp) -> Vec<String> {
    let mut conn = app.conn();
    let mut v: Vec<String> = outbox::table
        .filter(outbox::event_kind.eq("customer_notice"))
        .select(outbox::recipient)
        .load(&mut conn)
        .unwrap();
    v.sort();
    v
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

async fn events(app: &TestApp, id: i64) -> Vec<Value> {
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["events"].as_array().unwrap().clone()
}

async fn notices_only_once_the_change_is_approved(app: TestApp) {
    setup(&app).await;
    let path = |id: i64| format!("/api/v1/changes/{id}/notices");
    // A draft change.
    let d = app
        .create("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let d = d["id"].as_i64().unwrap();
    for preview in [true, false] {
        let (s, v) = app.post(&path(d), "ana", notice_body(preview)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");
        assert_eq!(code(&v), "change_not_approved", "{v}");
        assert!(message(&v).contains("this change is draft"), "{v}");
    }
    // Awaiting sign-off, then cancelled.
    let (a, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    let (s, v) = app.post(&path(a), "carla", notice_body(false)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "change_not_approved");
    assert!(message(&v).contains("awaiting_signoff"), "{v}");
    let (s, v) = app
        .post(&format!("/api/v1/changes/{a}/cancel"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.post(&path(a), "carla", notice_body(false)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(message(&v).contains("cancelled"), "{v}");
    // Rejected.
    let (r, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(5)]}))
        .await;
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{r}/reject"),
            "carla",
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app.post(&path(r), "carla", notice_body(false)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "change_not_approved");
    assert!(notice_mails(&app).is_empty());
    {
        let mut conn = app.conn();
        let n: i64 = customer_notices::table
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(n, 0, "nothing recorded");
    }
    // Approved: a preview answers, a draft is recorded (201) and sends nothing.
    let id = approved(&app).await;
    let (s, v) = app.post(&path(id), "ana", notice_body(true)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "preview");
    assert_eq!(
        v["recipient_count"], 2,
        "alice (admin) and tina (technical)"
    );
    assert!(v["sample"].as_str().unwrap().starts_with("Dear Acme Corp,"));
    assert_eq!(v["approver_team"], "platform-ops");
    let (s, v) = draft(&app, id, "ana").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "draft");
    assert_eq!(v["drafted_by"], "ana@req.example");
    assert_eq!(v["drafter_team"], "app-owners");
    assert!(notice_mails(&app).is_empty(), "a draft sends nothing");
}

async fn only_a_member_of_the_other_team_approves(app: TestApp) {
    setup(&app).await;
    let id = approved(&app).await;
    let (s, v) = draft(&app, id, "ana").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let nid = v["id"].as_i64().unwrap();
    // The team that approves hears about it.
    let asked: Vec<OutboxRow> = {
        let mut conn = app.conn();
        outbox::table
            .filter(outbox::event_kind.eq("notice_drafted"))
            .order(outbox::recipient.asc())
            .select(OutboxRow::as_select())
            .load(&mut conn)
            .unwrap()
    };
    let to: Vec<&str> = asked.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(
        to,
        ["carla@ops.example", "dev@ops.example", "eli@ops.example"]
    );
    let settings = MailSettings {
        from: "countersign <noreply@countersign.test>".into(),
        public_url: "http://countersign.test".into(),
    };
    let m = render(&asked[0], &settings).unwrap();
    assert_eq!(
        m.subject,
        format!("[CHG-{id}] Customer notice to approve: Your app was removed")
    );
    assert!(
        m.text
            .contains("Nothing reaches them until a member of platform-ops approves it"),
        "{}",
        m.text
    );
    // The drafter.
    let (s, v) = act(&app, id, nid, "approve", "ana").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(code(&v), "own_notice");
    assert!(message(&v).contains("`platform-ops`"), "{v}");
    // The drafter's own team.
    let (s, v) = act(&app, id, nid, "approve", "ben").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(code(&v), "same_team");
    assert!(
        message(&v).contains("Ana (ana@req.example) drafted this notice for `app-owners`")
            && message(&v).contains("`platform-ops`"),
        "{v}"
    );
    // Nobody of either team, an admin included: a notice takes one person of each team.
    for who in ["olga", "root"] {
        let (s, v) = act(&app, id, nid, "approve", who).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {v}");
        assert_eq!(code(&v), "not_in_team", "{v}");
    }
    assert!(notice_mails(&app).is_empty());
    // The list says who may do what.
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/notices"), "carla")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["notices"][0]["allowed_actions"],
        json!(["approve", "discard"])
    );
    let (_, v) = app
        .get(&format!("/api/v1/changes/{id}/notices"), "ben")
        .await;
    assert_eq!(v["notices"][0]["allowed_actions"], json!([]));
    assert!(v["notices"][0]["cannot_approve"]
        .as_str()
        .unwrap()
        .contains("platform-ops"));
    // A member of the other team approves: the mails are queued, once.
    let (s, v) = act(&app, id, nid, "approve", "carla").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "sent");
    assert_eq!(v["approved_by"], "carla@ops.example");
    assert_eq!(v["sent_by"], "carla@ops.example");
    assert_eq!(
        notice_mails(&app),
        vec!["alice@acme.example", "tina@acme.example"]
    );
    let (s, v) = act(&app, id, nid, "approve", "dev").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(code(&v), "notice_not_draft");
    let (s, v) = act(&app, id, nid, "discard", "ana").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(notice_mails(&app).len(), 2, "exactly once");
    {
        let mut conn = app.conn();
        let payload: String = outbox::table
            .filter(outbox::recipient.eq("alice@acme.example"))
            .select(outbox::payload)
            .first(&mut conn)
            .unwrap();
        let p: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            p["body"],
            format!("Dear Acme Corp,\n\nyour app was removed by CHG-{id}.")
        );
    }
    // The other way round: drafted by platform-ops, refused to platform-ops.
    let (s, v) = draft(&app, id, "carla").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["approver_team"], "app-owners");
    let n2 = v["id"].as_i64().unwrap();
    let (s, v) = act(&app, id, n2, "approve", "dev").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(code(&v), "same_team");
    // Only the drafter or a would-be approver discards.
    let (s, v) = act(&app, id, n2, "discard", "eli").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(code(&v), "not_allowed_to_discard");
    let (s, v) = act(&app, id, n2, "discard", "carla").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "discarded");
    assert_eq!(v["discarded_by"], "carla@ops.example");
    let (s, v) = act(&app, id, n2, "approve", "ben").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(notice_mails(&app).len(), 2);
    let (_, v) = app
        .get(&format!("/api/v1/changes/{id}/notices"), "ana")
        .await;
    let states: Vec<&str> = v["notices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["discarded", "sent"]);
}

async fn one_send_per_change_per_ten_minutes(app: TestApp) {
    setup(&app).await;
    let id = approved(&app).await;
    let (_, a) = draft(&app, id, "ana").await;
    let (_, b) = draft(&app, id, "ben").await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let (s, v) = act(&app, id, a, "approve", "carla").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = act(&app, id, b, "approve", "dev").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(code(&v), "notice_rate_limited");
    assert!(message(&v).contains("every 10 minutes"), "{v}");
    let next = v["error"]["details"]["next_possible_at"].as_str().unwrap();
    assert!(message(&v).contains(&next[..16].replace('T', " ")), "{v}");
    assert_eq!(notice_mails(&app).len(), 2, "only the first notice's mails");
    // The draft stays a draft and goes once the ten minutes have passed.
    {
        let t = countersign::db::now() - chrono::Duration::minutes(11);
        app.conn()
            .batch_execute(&format!(
                "UPDATE customer_notices SET sent_at = '{}' WHERE id = {a}",
                t.format("%Y-%m-%d %H:%M:%S%.6f")
            ))
            .unwrap();
    }
    let (s, v) = act(&app, id, b, "approve", "dev").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(notice_mails(&app).len(), 4);
}

async fn the_audit_trail_holds_the_text_hash(app: TestApp) {
    setup(&app).await;
    let id = approved(&app).await;
    let body = BODY.trim();
    let (_, v) = draft(&app, id, "ana").await;
    let nid = v["id"].as_i64().unwrap();
    assert_eq!(v["body_sha256"], sha256(body));
    act(&app, id, nid, "approve", "carla").await;
    let (_, v) = draft(&app, id, "ana").await;
    let n2 = v["id"].as_i64().unwrap();
    let (s, v) = act(&app, id, n2, "discard", "ana").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let ev = events(&app, id).await;
    let find = |action: &str, notice: i64| {
        ev.iter()
            .find(|e| e["action"] == action && e["detail"]["notice"] == notice)
            .unwrap_or_else(|| panic!("no {action} event for notice {notice}: {ev:?}"))
            .clone()
    };
    let drafted = find("customer_notice_drafted", nid);
    assert_eq!(drafted["actor"], "ana@req.example");
    assert_eq!(drafted["detail"]["body_sha256"], sha256(body));
    assert_eq!(
        drafted["detail"]["subject_sha256"],
        sha256("Your app was removed")
    );
    assert_eq!(drafted["detail"]["approver_team"], "platform-ops");
    let sent = find("customer_notice_sent", nid);
    assert_eq!(sent["actor"], "carla@ops.example");
    assert_eq!(sent["detail"]["body_sha256"], sha256(body));
    assert_eq!(sent["detail"]["drafted_by"], "ana@req.example");
    assert_eq!(sent["detail"]["recipients"], 2);
    let discarded = find("customer_notice_discarded", n2);
    assert_eq!(discarded["actor"], "ana@req.example");
    assert_eq!(discarded["detail"]["body_sha256"], sha256(body));
    assert_eq!(discarded["detail"]["by_drafter"], true);
    let (s, v) = app.get("/api/v1/audit/verify", "root").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["intact"], true, "{v}");
}

async fn contacts_are_seen_by_admins_and_the_teams_of_changes_that_affect_them(app: TestApp) {
    setup(&app).await;
    let id = approved(&app).await;
    let (_, v) = draft(&app, id, "ana").await;
    assert_eq!(v["state"], "draft", "{v}");
    let entity = |e: &str| format!("/api/v1/inventory/{e}/contacts");
    let routes = [
        entity(ORG1),
        entity(&site(1)),
        entity(&inst(1)),
        format!("/api/v1/changes/{id}/contacts"),
        format!("/api/v1/changes/{id}/contacts?format=csv"),
        format!("/api/v1/changes/{id}/notices"),
    ];
    for who in ["olga", "otto"] {
        for r in &routes {
            let (s, v) = app.get(r, who).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{who} {r}: {v}");
            assert_eq!(code(&v), "contacts_hidden", "{v}");
            assert!(!v.to_string().contains("alice@"), "{v}");
        }
    }
    let (_, v) = app.get(&routes[3], "otto").await;
    assert!(
        message(&v).contains("Otto (otto@outsiders.example) is in neither team")
            && message(&v).contains("`app-owners`"),
        "{v}"
    );
    for who in ["root", "ana", "ben", "carla"] {
        for r in &routes {
            let (s, v) = app.get(r, who).await;
            assert_eq!(s, StatusCode::OK, "{who} {r}: {v}");
        }
        let (_, v) = app.get(&routes[1], who).await;
        assert_eq!(v["contacts"][0]["email"], "tina@acme.example");
        let (_, v) = app.get(&routes[5], who).await;
        assert_eq!(
            v["notices"][0]["recipients"][0]["email"],
            "alice@acme.example"
        );
    }
    // Globex: no change affects it, so only admins see its contacts ...
    let (s, v) = app.get(&entity(ORG2), "root").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["contacts"][0]["email"], "gary@globex.example");
    let (s, _) = app.get(&entity(ORG2), "ana").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // ... a draft that names it is one person's and does not open them ...
    let g = app
        .create("ana", "uninstall_app", json!({"ids": [inst(7)]}))
        .await;
    let g = g["id"].as_i64().unwrap();
    let (s, v) = app.get(&entity(ORG2), "ana").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = app
        .get(&format!("/api/v1/changes/{g}/contacts"), "ana")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(message(&v).contains("is draft"), "{v}");
    // ... nor does submitting it (one person can), nor cancelling it ...
    let (s, v) = app
        .post(&format!("/api/v1/changes/{g}/submit"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let fp = v["fingerprint"].as_str().unwrap().to_string();
    let (s, v) = app.get(&entity(ORG2), "ana").await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "awaiting sign-off opens nothing: {v}"
    );
    // ... once both teams signed it, both of its teams see them, others still not.
    app.approve(g, &fp).await;
    for who in ["ana", "dev"] {
        let (s, v) = app.get(&entity(ORG2), who).await;
        assert_eq!(s, StatusCode::OK, "{who}: {v}");
        assert_eq!(v["contacts"][0]["email"], "gary@globex.example");
    }
    let (s, _) = app.get(&entity(ORG2), "otto").await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The entity page says why instead of listing them.
    let olga = sign_in(&app, "olga").await;
    let (s, page) = olga.get(&format!("/inventory/{ORG1}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("id=\"contacts-hidden\""), "{page}");
    assert!(page.contains(
        "Contacts are shown to admins and to the teams of changes that affect this customer."
    ));
    assert!(!page.contains("alice@acme.example") && !page.contains("Alice Admin"));
    let (s, page) = olga.get(&format!("/changes/CHG-{id}/notices")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(!page.contains("alice@acme.example"));
    let ben = sign_in(&app, "ben").await;
    let (_, page) = ben.get(&format!("/inventory/{ORG1}")).await;
    assert!(page.contains("alice@acme.example") && !page.contains("contacts-hidden"));
}

async fn a_csv_export_is_an_audit_event(app: TestApp) {
    setup(&app).await;
    let id = approved(&app).await;
    let count = |ev: &[Value]| {
        ev.iter()
            .filter(|e| e["action"] == "contacts_exported")
            .count()
    };
    let (s, _) = app
        .get(&format!("/api/v1/changes/{id}/contacts"), "carla")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        count(&events(&app, id).await),
        0,
        "reading JSON is not an export"
    );
    let r = app
        .client
        .get(format!(
            "{}/api/v1/changes/{id}/contacts?format=csv",
            app.address
        ))
        .bearer_auth(app.token("carla"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csv = r.text().await.unwrap();
    assert!(csv.contains("alice@acme.example"), "{csv}");
    let ev = events(&app, id).await;
    assert_eq!(count(&ev), 1);
    let e = ev
        .iter()
        .find(|e| e["action"] == "contacts_exported")
        .unwrap();
    assert_eq!(e["actor"], "carla@ops.example");
    assert_eq!(e["change"], format!("CHG-{id}"));
    assert_eq!(e["detail"]["format"], "csv");
    assert_eq!(e["detail"]["contacts"], 3);
    assert_eq!(e["detail"]["sha256"], sha256(&csv));
    // A refused export is no export.
    let (s, _) = app
        .get(&format!("/api/v1/changes/{id}/contacts?format=csv"), "olga")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.get(&format!("/api/v1/changes/{id}/contacts?format=csv"), "root")
        .await;
    assert_eq!(count(&events(&app, id).await), 2);
}

async fn notices_are_drafted_and_approved_through_the_pages(app: TestApp) {
    setup(&app).await;
    let id = approved(&app).await;
    let page = format!("/changes/CHG-{id}/notices");
    let carla = sign_in(&app, "carla").await;
    let (_, change) = carla.get(&format!("/changes/CHG-{id}")).await;
    assert!(
        change.contains(&format!("href=\"{page}\"")),
        "the change page links it"
    );
    let (s, html) = carla.get(&page).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("for approval by app-owners"), "{html}");
    assert_eq!(field(&html, "csrf"), carla.csrf);
    let form =
        |csrf: &str, subject: &'static str, intent: &'static str| -> Vec<(&'static str, String)> {
            vec![
                ("csrf", csrf.to_string()),
                ("subject", subject.to_string()),
                ("body", BODY.to_string()),
                ("role_admin", "on".to_string()),
                ("role_technical", "on".to_string()),
                ("intent", intent.to_string()),
            ]
        };
    let post = |b: &crate::web::Browser, path: String, f: Vec<(&'static str, String)>| {
        let c = b.c.clone();
        let url = format!("{}{path}", b.base);
        async move {
            let r = c.post(url).form(&f).send().await.unwrap();
            let loc = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string())
                .unwrap_or_default();
            (r.status(), loc, r.text().await.unwrap())
        }
    };
    // Without the CSRF token nothing happens.
    let (s, _, html) = post(&carla, page.clone(), form("", "Removed", "draft")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(html.contains("security token"));
    // Preview: recipients and the filled-in text, the input kept, nothing recorded.
    let (s, _, html) = post(
        &carla,
        page.clone(),
        form(&carla.csrf, "Your app was removed", "preview"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("Preview: 2 recipient(s)"), "{html}");
    assert!(html.contains("Dear Acme Corp,"), "{html}");
    assert!(html.contains("alice@acme.example") && html.contains("tina@acme.example"));
    assert!(html.contains("value=\"Your app was removed\""));
    assert!(html.contains("No notices yet."));
    // An error re-renders the form with the message and the input.
    let (s, _, html) = post(&carla, page.clone(), form(&carla.csrf, "", "draft")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("the subject must be one line"), "{html}");
    assert!(
        html.contains("your app was removed by {change}."),
        "the text is kept: {html}"
    );
    // Draft.
    let (s, loc, _) = post(
        &carla,
        page.clone(),
        form(&carla.csrf, "Your app was removed", "draft"),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert!(
        loc.starts_with(&format!("{page}?done=drafted#notice-")),
        "{loc}"
    );
    let nid: i64 = loc.rsplit("notice-").next().unwrap().parse().unwrap();
    assert!(notice_mails(&app).is_empty());
    // The drafter sees discard, not approve; so does her own team; the other team approves.
    let (_, html) = carla.get(&format!("{page}?done=drafted")).await;
    assert!(html.contains("Draft saved."), "{html}");
    assert!(html.contains(&format!("id=\"discard-{nid}\"")));
    assert!(!html.contains(&format!("id=\"approve-{nid}\"")));
    assert!(html.contains("you drafted this notice"), "{html}");
    let dev = sign_in(&app, "dev").await;
    let (_, html) = dev.get(&page).await;
    assert!(!html.contains(&format!("id=\"approve-{nid}\"")));
    assert!(!html.contains(&format!("id=\"discard-{nid}\"")));
    assert!(
        html.contains("it must be approved by a member of the other team, `app-owners`"),
        "{html}"
    );
    let (s, _, html) = dev
        .post(
            &format!("{page}/{nid}/approve"),
            &[("csrf", dev.csrf.as_str())],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "the service refuses as well");
    assert!(html.contains("app-owners"), "{html}");
    let ben = sign_in(&app, "ben").await;
    let (_, html) = ben.get(&page).await;
    assert!(html.contains(&format!("id=\"approve-{nid}\"")), "{html}");
    let (s, _, _) = ben.post(&format!("{page}/{nid}/approve"), &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no CSRF token");
    assert!(notice_mails(&app).is_empty());
    let (s, loc, _) = ben
        .post(
            &format!("{page}/{nid}/approve"),
            &[("csrf", ben.csrf.as_str())],
        )
        .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(loc, format!("{page}?done=sent#notice-{nid}"));
    assert_eq!(
        notice_mails(&app),
        vec!["alice@acme.example", "tina@acme.example"]
    );
    let (_, html) = ben.get(&loc).await;
    assert!(html.contains("on its way"), "{html}");
    assert!(
        html.contains("Approved and sent by ben@req.example"),
        "{html}"
    );
    assert!(!html.contains(&format!("id=\"approve-{nid}\"")));
    // A second send within ten minutes: the page says when the next is possible.
    let (s, _, _) = post(&carla, page.clone(), form(&carla.csrf, "Second", "draft")).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (_, html) = ben.get(&page).await;
    assert!(html.contains("id=\"next-send\""), "{html}");
    assert!(html.contains("every 10 minutes"), "{html}");
}

both_backends!(
    notices_only_once_the_change_is_approved,
    only_a_member_of_the_other_team_approves,
    one_send_per_change_per_ten_minutes,
    the_audit_trail_holds_the_text_hash,
    contacts_are_seen_by_admins_and_the_teams_of_changes_that_affect_them,
    a_csv_export_is_an_audit_event,
    notices_are_drafted_and_approved_through_the_pages,
);
