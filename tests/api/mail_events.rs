//! Mails about what happens to a change, over a real SMTP conversation, on both backends:
//! customer notices to contacts that outlive their entities, and the stale, rejected,
//! cancelled, halted and rollback mails (split from `mail.rs`).

use std::collections::BTreeSet;

use countersign::config::Secret;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, site, Backend, ORG1};
use crate::mail::{app_with_smtp, app_with_smtp_and, set, until};
use crate::smtp::{free_port, Mode, SmtpServer};

async fn contacts_outlive_their_entities_and_get_notices(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Normal).await;
    let app = app_with_smtp(backend, server.port, 24.0).await;
    app.load_fixture().await;
    let import = |body: String| {
        let app = &app;
        async move {
            let r = app
                .client
                .post(format!("{}/api/v1/contacts", app.address))
                .bearer_auth(app.token("carla"))
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let good = [
        json!({"entity": ORG1, "name": "Alice Admin", "email": "alice@acme.example", "role": "admin"}),
        json!({"entity": ORG1, "name": "Bill Billing", "email": "bill@acme.example", "role": "billing"}),
        json!({"entity": site(1), "name": "Tina Tech", "email": "tina@acme.example", "role": "technical"}),
    ];
    let mut lines: Vec<String> = good.iter().map(|j| j.to_string()).collect();
    lines.push(json!({"entity": "org-ffffffff", "name": "Nobody", "email": "n@x.example", "role": "admin"}).to_string());
    lines.push(
        json!({"entity": ORG1, "name": "Bad", "email": "not-an-address", "role": "admin"})
            .to_string(),
    );
    let (s, v) = import(lines.join("\n")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let errs = &v["error"]["details"]["errors"];
    assert_eq!(errs[0]["line"], 4, "{v}");
    assert!(errs[0]["message"]
        .as_str()
        .unwrap()
        .contains("not in the inventory"));
    assert_eq!(errs[1]["line"], 5);
    let (_, v) = app
        .get(&format!("/api/v1/inventory/{ORG1}/contacts"), "root")
        .await;
    assert_eq!(
        v["contacts"].as_array().unwrap().len(),
        0,
        "nothing written"
    );
    let (s, v) = import(lines[..3].join("\n")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["inserted"], 3);
    let (s, _) = app
        .client
        .post(format!("{}/api/v1/contacts", app.address))
        .bearer_auth(app.token("ana"))
        .body(lines[0].clone())
        .send()
        .await
        .map(|r| (r.status(), ()))
        .unwrap();
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "requesters do not import contacts"
    );

    // Decommission site 1 (and its installations): the contacts stay, and the change
    // lists the affected customer with them.
    let (id, fp) = app
        .approved("decommission_site", json!({"ids": [site(1)]}))
        .await;
    app.execute(id, &fp).await;
    app.wait_execution(id, &["completed"]).await;
    assert_eq!(app.entity(&site(1)).await["state"], "deleted");
    let (_, v) = app
        .get(&format!("/api/v1/inventory/{}/contacts", site(1)), "ana")
        .await;
    assert_eq!(v["contacts"][0]["email"], "tina@acme.example");
    let (s, v) = app
        .get(&format!("/api/v1/changes/{id}/contacts"), "ana")
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["roots"], 1);
    let root = &v["affected"][0];
    assert_eq!(root["root"], ORG1);
    assert_eq!(root["root_name"], "Acme Corp");
    assert_eq!(root["targets"], 3);
    let emails: BTreeSet<String> = root["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        emails,
        set(&[
            "alice@acme.example",
            "bill@acme.example",
            "tina@acme.example"
        ])
    );
    let r = app
        .client
        .get(format!(
            "{}/api/v1/changes/{id}/contacts?format=csv",
            app.address
        ))
        .bearer_auth(app.token("ana"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("root,root_name,root_state,targets,entity,name,email,role\n"));
    assert!(csv.contains("\"alice@acme.example\",\"admin\""), "{csv}");

    // A customer notice: preview, draft, then a member of the other team approves it, which
    // sends it to the admins and technical contacts.
    let path = format!("/api/v1/changes/{id}/notices");
    let body = json!({"subject": "Your site was removed", "body": "Dear {customer},\n\nyour site was removed by {change}.", "roles": ["admin", "technical"], "preview": true});
    let (s, v) = app.post(&path, "carla", body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["recipient_count"], 2);
    assert!(
        v["sample"].as_str().unwrap().starts_with("Dear Acme Corp,"),
        "{v}"
    );
    assert!(server
        .mails()
        .iter()
        .all(|m| !m.to.contains(&"alice@acme.example".to_string())));
    let (s, v) = app.post(&path, "olga", body.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let mut send = body;
    send["preview"] = json!(false);
    let (s, v) = app.post(&path, "carla", send).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "draft");
    let (s, v) = app
        .post(&format!("{path}/{}/approve", v["id"]), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    until("the notice delivered", || {
        server.to("alice@acme.example").len() == 1 && server.to("tina@acme.example").len() == 1
    })
    .await;
    assert!(
        server.to("bill@acme.example").is_empty(),
        "billing was not asked for"
    );
    let m = &server.to("alice@acme.example")[0];
    assert_eq!(m.header("Subject").unwrap(), "Your site was removed");
    assert!(m.header("List-Unsubscribe").is_none());
    let text = m.part("text/plain").unwrap();
    assert!(
        text.contains(&format!(
            "Dear Acme Corp,\r\n\r\nyour site was removed by CHG-{id}."
        )) || text.contains(&format!(
            "Dear Acme Corp,\n\nyour site was removed by CHG-{id}."
        )),
        "{text}"
    );
    let (_, v) = app.get(&path, "ana").await;
    assert_eq!(v["notices"][0]["recipient_count"], 2);
    assert_eq!(v["notices"][0]["drafted_by"], "carla@ops.example");
    assert_eq!(v["notices"][0]["sent_by"], "ben@req.example");
}

async fn stale_rejected_cancelled_halted_and_rollback_mails(backend: Backend) {
    let server = SmtpServer::start(0, Mode::Normal).await;
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(
        &schema,
        format!(
            "{}\n\n[operations.deprovision_app]\nlabel = \"Deprovision at the vendor\"\ntarget = \"app_install\"\neffect = \"webhook\"\nimplemented_by = \"platform-ops\"\nendpoint = \"http://127.0.0.1:{}/hook\"\nsecret_env = \"CS_MAIL_HOOK\"\ntimeout_ms = 300\nmax_attempts = 1\n",
            countersign::domain::schema::EXAMPLE_SCHEMA,
            free_port()
        ),
    )
    .unwrap();
    let app = app_with_smtp_and(backend, server.port, 24.0, move |c| {
        c.schema_path = Some(schema);
        c.secrets
            .insert("CS_MAIL_HOOK".into(), Secret::new("s3cret"));
    })
    .await;
    app.load_fixture().await;
    let subjects = |to: &str| -> Vec<String> {
        server
            .to(to)
            .iter()
            .map(|m| m.header("Subject").unwrap())
            .collect()
    };

    // Stale: ben signed, then the inventory moved under the selector.
    let sel = json!({"within": {"kind": "site", "ids": [site(1)]}, "where": {"app": "insight"}});
    let (a, afp) = app.submitted("ana", "uninstall_app", sel).await;
    app.sign(a, "ben", "requester", &afp, None).await;
    let line = json!({"kind": "app_install", "id": inst(99), "parent": site(1), "name": "insight again", "attrs": {"app": "insight", "version": "1.0.0"}}).to_string();
    app.import("carla", &[line], false).await;
    let (s, v) = app
        .post(&format!("/api/v1/changes/{a}/resolve"), "ana", json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    until("the stale mail", || {
        subjects("ben@req.example")
            .iter()
            .any(|s| s.contains("Your sign-off went stale"))
    })
    .await;
    let m = server
        .to("ben@req.example")
        .into_iter()
        .find(|m| m.header("Subject").unwrap().contains("stale"))
        .unwrap();
    let text = m.part("text/plain").unwrap();
    assert!(text.contains("1 added, 0 removed"), "{text}");
    assert!(
        text.contains(&inst(99)),
        "the added target is named: {text}"
    );

    // Rejected, with the reason, to the author.
    let (b, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(3)]}))
        .await;
    app.post(
        &format!("/api/v1/changes/{b}/reject"),
        "carla",
        json!({"reason": "Legal hold on site 2."}),
    )
    .await;
    until("the rejection", || {
        server.to("ana@req.example").iter().any(|m| {
            m.header("Subject").unwrap() == format!("[CHG-{b}] Rejected: t")
                && m.part("text/plain")
                    .unwrap()
                    .contains("Legal hold on site 2.")
        })
    })
    .await;

    // Cancelled by the author: the signer hears of it.
    let (c, cfp) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(5)]}))
        .await;
    app.sign(c, "ben", "requester", &cfp, None).await;
    app.post(
        &format!("/api/v1/changes/{c}/cancel"),
        "ana",
        json!({"reason": "Not needed after all."}),
    )
    .await;
    until("the cancellation", || {
        subjects("ben@req.example").contains(&format!("[CHG-{c}] Cancelled: t"))
    })
    .await;

    // Halted: the external executor is down; the implementing team is told why.
    let (d, dfp) = app
        .approved("deprovision_app", json!({"ids": [inst(7)]}))
        .await;
    app.execute(d, &dfp).await;
    app.wait_execution(d, &["halted"]).await;
    until("the halt", || {
        subjects("eli@ops.example").contains(&format!("[CHG-{d}] Execution HALTED: t"))
    })
    .await;
    let m = server
        .to("eli@ops.example")
        .into_iter()
        .find(|m| m.header("Subject").unwrap().contains("HALTED"))
        .unwrap();
    assert!(m.part("text/plain").unwrap().contains("resumes or aborts"));

    // Aborted: the author hears what was skipped and why (not the counts of a finished run,
    // which an abort does not have).
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{d}/abort"),
            "dev",
            json!({"reason": "receiver retired"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    until("the abort", || {
        subjects("ana@req.example").contains(&format!("[CHG-{d}] Execution aborted: t"))
    })
    .await;
    let m = server
        .to("ana@req.example")
        .into_iter()
        .find(|m| m.header("Subject").unwrap().contains("Execution aborted"))
        .unwrap();
    let text = m.part("text/plain").unwrap();
    assert!(
        text.contains("pending targets were skipped")
            && text.contains("Reason: aborted by dev@ops.example: receiver retired")
            && !text.contains(" done,  failed"),
        "{text}"
    );

    // A rollback: the other participants hear of it.
    let (e, efp) = app
        .approved("uninstall_app", json!({"ids": [inst(2)]}))
        .await;
    app.execute(e, &efp).await;
    app.wait_execution(e, &["completed"]).await;
    let (s, v) = app
        .post(&format!("/api/v1/changes/{e}/rollback"), "ben", json!({}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    until("the rollback mail", || {
        subjects("carla@ops.example").contains(&format!("[CHG-{e}] Rollback created: t"))
            && subjects("ana@req.example").contains(&format!("[CHG-{e}] Rollback created: t"))
    })
    .await;
    assert!(!subjects("ben@req.example").contains(&format!("[CHG-{e}] Rollback created: t")));
}

both_backends!(
    backend:
    contacts_outlive_their_entities_and_get_notices,
    stale_rejected_cancelled_halted_and_rollback_mails,
);
