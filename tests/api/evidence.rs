//! Evidence for auditors: the bundle of an executed change, unpacked and checked against
//! what the API says, then `countersign audit verify --bundle` on it, on copies with a
//! changed byte or event and on one with an event taken out of the chain segment.

use std::io::{Read, Write};
use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_backends;
use crate::helpers::{inst, TestApp};
use crate::web::sign_in;

both_backends!(
    the_bundle_is_what_the_api_says_and_verifies,
    who_gets_a_bundle
);

/// A bundle's files: (name under its directory, bytes), in archive order.
type Files = Vec<(String, Vec<u8>)>;

fn unpack(bytes: &[u8]) -> (String, Files) {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut dir = String::new();
    let mut out = Vec::new();
    for e in archive.entries().expect("a tar.gz") {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let (d, name) = path.split_once('/').expect("dir/name");
        dir = d.to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.push((name.to_string(), buf));
    }
    (dir, out)
}

fn pack(dir: &str, files: &Files) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, format!("{dir}/{name}"), data.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn file<'a>(files: &'a Files, name: &str) -> &'a [u8] {
    &files
        .iter()
        .find(|f| f.0 == name)
        .unwrap_or_else(|| panic!("{name} missing from the bundle"))
        .1
}

fn json_of(files: &Files, name: &str) -> Value {
    serde_json::from_slice(file(files, name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Put `data` in place of `name` and, when `fix_manifest`, its new hash and size in the
/// manifest (as someone hiding a change would).
fn replace(files: &mut Files, name: &str, data: Vec<u8>, fix_manifest: bool) {
    if fix_manifest {
        let mut m = json_of(files, "manifest.json");
        for f in m["files"].as_array_mut().unwrap() {
            if f["name"] == name {
                f["sha256"] = json!(sha(&data));
                f["bytes"] = json!(data.len());
            }
        }
        files.iter_mut().find(|f| f.0 == "manifest.json").unwrap().1 =
            serde_json::to_vec_pretty(&m).unwrap();
    }
    files.iter_mut().find(|f| f.0 == name).unwrap().1 = data;
}

fn verify(bundle: &[u8]) -> Output {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(bundle).unwrap();
    Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args(["audit", "verify", "--bundle"])
        .arg(f.path())
        .env("RUST_LOG", "warn")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run countersign")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn download(app: &TestApp, id: i64, who: &str) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!("{}/api/v1/changes/{id}/evidence", app.address));
    if who != "nobody" {
        req = req.bearer_auth(app.token(who));
    }
    req.send().await.expect("request")
}

async fn text_of(app: &TestApp, path: &str, who: &str) -> String {
    app.client
        .get(format!("{}{path}", app.address))
        .bearer_auth(app.token(who))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn the_bundle_is_what_the_api_says_and_verifies(app: TestApp) {
    app.load_fixture().await;
    let (id, fp) = app
        .submitted(
            "ana",
            "uninstall_app",
            json!({"ids": [inst(1), inst(3), inst(5)]}),
        )
        .await;
    // Other changes' events fall between this change's: the segment carries them too.
    let (other, _) = app
        .submitted("ben", "uninstall_app", json!({"ids": [inst(2)]}))
        .await;
    app.approve(id, &fp).await;
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{other}/comments"),
            "ana",
            json!({"body": "meanwhile"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app.execute(id, &fp).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    app.wait_execution(id, &["completed"]).await;
    let (s, v) = app
        .post(
            &format!("/api/v1/changes/{id}/comments"),
            "carla",
            json!({"body": "done, all three"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    let r = download(&app, id, "ana").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("CHG-{id}-evidence.tar.gz")));
    let bundle = r.bytes().await.unwrap().to_vec();
    let (dir, files) = unpack(&bundle);
    assert_eq!(dir, format!("CHG-{id}-evidence"));
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "manifest.json",
            "change.json",
            "selector.json",
            "targets.csv",
            "signoffs.csv",
            "execution.json",
            "execution_items.csv",
            "mails.csv",
            "notices.json",
            "events.json",
            "audit_chain.ndjson",
        ]
    );

    // The manifest: every other file with its hash and size, who, when, the chain head.
    let m = json_of(&files, "manifest.json");
    assert_eq!(m["format"], "countersign-evidence/1");
    assert_eq!(m["change"], format!("CHG-{id}"));
    assert_eq!(m["made_by"]["email"], "ana@req.example");
    assert!(m["made_at"].as_str().is_some_and(|t| t.len() >= 19), "{m}");
    let listed = m["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len() - 1);
    for f in listed {
        let data = file(&files, f["name"].as_str().unwrap());
        assert_eq!(f["sha256"], sha(data), "{}", f["name"]);
        assert_eq!(f["bytes"], data.len(), "{}", f["name"]);
    }
    let (head_id, head_hash) = {
        let mut conn = app.conn();
        countersign::db::audit::head(&mut conn).unwrap()
    };
    assert_eq!(m["chain_head"], json!({"id": head_id, "hash": head_hash}));

    // Each file against the API.
    let (_, change) = app.get(&format!("/api/v1/changes/{id}"), "ana").await;
    assert_eq!(json_of(&files, "change.json"), change);
    let (_, sel) = app
        .get(&format!("/api/v1/changes/{id}/selector?part=ids"), "ana")
        .await;
    assert_eq!(json_of(&files, "selector.json")["ids"], sel["ids"]);
    let csv = text_of(
        &app,
        &format!("/api/v1/changes/{id}/targets?format=csv"),
        "ana",
    )
    .await;
    assert_eq!(String::from_utf8_lossy(file(&files, "targets.csv")), csv);
    assert_eq!(csv.lines().count(), 4, "{csv}");

    let signoffs = String::from_utf8_lossy(file(&files, "signoffs.csv")).into_owned();
    let rows: Vec<&str> = signoffs.lines().collect();
    assert_eq!(
        rows[0],
        "side,team,email,name,fingerprint,at,counts,stale,expired,why_not,comment"
    );
    assert_eq!(rows.len() - 1, change["signoffs"].as_array().unwrap().len());
    for (row, s) in rows[1..].iter().zip(change["signoffs"].as_array().unwrap()) {
        let side = s["side"].as_str().unwrap();
        let team = if side == "requester" {
            "app-owners"
        } else {
            "platform-ops"
        };
        let email = s["by"]["email"].as_str().unwrap();
        assert!(
            row.starts_with(&format!("\"{side}\",\"{team}\",\"{email}\"")),
            "{row}"
        );
        assert!(row.contains(&format!("\"{fp}\"")), "{row}");
        assert!(
            row.contains("\"true\",\"false\",\"false\""),
            "counts: {row}"
        );
    }

    let (_, exec) = app
        .get(&format!("/api/v1/changes/{id}/execution"), "ana")
        .await;
    assert_eq!(json_of(&files, "execution.json"), exec);
    let (_, items) = app
        .get(&format!("/api/v1/changes/{id}/execution/items"), "ana")
        .await;
    let items_csv = String::from_utf8_lossy(file(&files, "execution_items.csv")).into_owned();
    let item_rows: Vec<&str> = items_csv.lines().skip(1).collect();
    assert_eq!(item_rows.len(), 3, "{items_csv}");
    for (row, i) in item_rows.iter().zip(items["items"].as_array().unwrap()) {
        let want = format!(
            "\"{}\",\"{}\",\"{}\",\"{}\",\"{}\"",
            i["position"],
            i["wave"],
            i["kind"].as_str().unwrap(),
            i["id"].as_str().unwrap(),
            i["status"].as_str().unwrap()
        );
        assert!(row.starts_with(&want), "{row} vs {want}");
    }

    let (s, mails) = app
        .get(&format!("/api/v1/outbox?change={id}&limit=1000"), "root")
        .await;
    assert_eq!(s, StatusCode::OK, "{mails}");
    let mut want: Vec<String> = mails["mails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "\"{}\",\"{}\",\"{}\",\"{}\"",
                m["id"],
                m["kind"].as_str().unwrap(),
                m["recipient"].as_str().unwrap(),
                m["state"].as_str().unwrap()
            )
        })
        .collect();
    want.sort();
    assert!(!want.is_empty(), "the flow mails people");
    let mails_csv = String::from_utf8_lossy(file(&files, "mails.csv")).into_owned();
    let mut got: Vec<String> = mails_csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(","))
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert!(!mails_csv.contains("payload") && !mails_csv.contains("message_id"));
    assert_eq!(json_of(&files, "notices.json"), json!({"notices": []}));

    let (_, events) = app
        .get(&format!("/api/v1/changes/{id}/events"), "ana")
        .await;
    assert_eq!(json_of(&files, "events.json"), events);
    let evs = events["events"].as_array().unwrap();
    let (first, last) = (
        evs[0]["id"].as_i64().unwrap(),
        evs.last().unwrap()["id"].as_i64().unwrap(),
    );
    let chain = String::from_utf8_lossy(file(&files, "audit_chain.ndjson")).into_owned();
    let rows: Vec<Value> = chain
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, (first..=last).collect::<Vec<_>>());
    assert!(
        rows.iter().any(|r| r["change_id"] == json!(other)),
        "the other change's events are in the segment"
    );
    assert_eq!(m["segment"]["first_id"], first);
    assert_eq!(m["segment"]["last_id"], last);
    assert_eq!(m["segment"]["events"], ids.len());

    // Offline: intact.
    let o = verify(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("evidence bundle of CHG-{id} intact")),
        "{}",
        text(&o)
    );

    // One byte of the targets CSV changed: the file is named.
    let mut t = files.clone();
    let mut csv_bytes = file(&t, "targets.csv").to_vec();
    let at = csv_bytes.len() - 3;
    csv_bytes[at] ^= 0x01;
    replace(&mut t, "targets.csv", csv_bytes, false);
    let o = verify(&pack(&dir, &t));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("FAILED file targets.csv"), "{}", text(&o));

    // An event of the change rewritten, the manifest fixed to match: the event is named.
    let target = rows
        .iter()
        .find(|r| r["change_id"] == json!(id) && r["action"] == "commented")
        .expect("the comment's event");
    let tid = target["id"].as_i64().unwrap();
    let mut t = files.clone();
    let altered: String = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if r["id"] == tid {
                r["detail"] = json!(r["detail"]
                    .as_str()
                    .unwrap()
                    .replace("all three", "all four"));
            }
            format!("{r}\n")
        })
        .collect();
    replace(&mut t, "audit_chain.ndjson", altered.into_bytes(), true);
    let o = verify(&pack(&dir, &t));
    assert!(!o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains(&format!("event {tid}: its content does not match its hash")),
        "{out}"
    );
    assert!(
        out.contains(&format!("event {tid} (events.json): differs")),
        "{out}"
    );
    assert!(
        !out.contains("FAILED file"),
        "the manifest was fixed: {out}"
    );

    // An event taken out of the segment (the manifest's hash, size and count fixed too).
    let gone = ids[ids.len() / 2];
    let mut t = files.clone();
    let cut: String = rows
        .iter()
        .filter(|r| r["id"] != gone)
        .map(|r| format!("{r}\n"))
        .collect();
    replace(&mut t, "audit_chain.ndjson", cut.into_bytes(), true);
    let mut m2 = json_of(&t, "manifest.json");
    m2["segment"]["events"] = json!(ids.len() - 1);
    t.iter_mut().find(|f| f.0 == "manifest.json").unwrap().1 =
        serde_json::to_vec_pretty(&m2).unwrap();
    let o = verify(&pack(&dir, &t));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("event {gone}: missing from the chain segment")),
        "{}",
        text(&o)
    );

    // Not a bundle at all.
    let o = verify(b"not a tarball");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("not a readable evidence bundle"),
        "{}",
        text(&o)
    );
}

async fn who_gets_a_bundle(app: TestApp) {
    app.load_fixture().await;
    let (id, _) = app
        .submitted("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let r = download(&app, id, "nobody").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthenticated", "{v}");
    let r = download(&app, 999_999, "ana").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found", "{v}");
    // Another team's member reads the change but does not get its evidence.
    let r = download(&app, id, "otto").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "forbidden", "{v}");
    for who in ["ana", "carla", "root"] {
        let r = download(&app, id, who).await;
        assert_eq!(r.status(), StatusCode::OK, "{who}");
        let (_, files) = unpack(&r.bytes().await.unwrap());
        assert_eq!(json_of(&files, "execution.json"), Value::Null);
        assert_eq!(
            String::from_utf8_lossy(file(&files, "execution_items.csv")),
            "position,wave,kind,id,status,attempts,retries,error,finished_at\n"
        );
    }

    // The change page links the bundle for the signed-in session and streams the same.
    let b = sign_in(&app, "carla").await;
    let (s, page) = b.get(&format!("/changes/CHG-{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains(&format!("href=\"/changes/CHG-{id}/evidence.tar.gz\"")),
        "no evidence link"
    );
    let r =
        b.c.get(format!("{}/changes/CHG-{id}/evidence.tar.gz", b.base))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bundle = r.bytes().await.unwrap().to_vec();
    let (_, files) = unpack(&bundle);
    assert_eq!(
        json_of(&files, "manifest.json")["made_by"]["email"],
        "carla@ops.example"
    );
    let o = verify(&bundle);
    assert!(o.status.success(), "{}", text(&o));
    let o2 = sign_in(&app, "otto").await;
    let (_, page) = o2.get(&format!("/changes/CHG-{id}")).await;
    assert!(
        !page.contains("evidence.tar.gz"),
        "otto is offered the bundle"
    );
    let (s, _) = o2.get(&format!("/changes/CHG-{id}/evidence.tar.gz")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}
