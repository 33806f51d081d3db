//! States are enums on both sides of the database: the database refuses a value no enum
//! names (CHECK constraints on PostgreSQL, triggers on SQLite: migration
//! `000009_state_checks`), and a row that holds one anyway (the check bypassed) is a load
//! error, never read as some default state.

use countersign::db::{changes as repo, inventory, DbConn};
use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{inst, TestApp};

both_backends!(unknown_states_are_refused_and_never_read_as_another);

/// An error with its sources (diesel's own message names only the field).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn is_pg(conn: &mut DbConn) -> bool {
    matches!(conn, DbConn::Pg(_))
}

async fn unknown_states_are_refused_and_never_read_as_another(app: TestApp) {
    app.load_fixture().await;
    let v = app
        .create("ana", "uninstall_app", json!({"ids": [inst(1)]}))
        .await;
    let id = v["id"].as_i64().unwrap();
    let mut conn = app.conn();
    let conn: &mut DbConn = &mut conn;

    // (a) The database refuses unknown values, on update and on insert.
    let refused = |conn: &mut DbConn, sql: String, check: &str| {
        let e = diesel::sql_query(&sql)
            .execute(conn)
            .expect_err(&format!("the database accepted {sql}"));
        assert!(e.to_string().contains(check), "{sql}: {e}");
    };
    refused(
        conn,
        format!("UPDATE changes SET state = 'bogus' WHERE id = {id}"),
        "changes_state_check",
    );
    // The spelling differs in case only: still not a state.
    refused(
        conn,
        format!("UPDATE changes SET state = 'Draft' WHERE id = {id}"),
        "changes_state_check",
    );
    let e1 = inst(1);
    refused(
        conn,
        format!("UPDATE entities SET state = 'gone' WHERE id = '{e1}'"),
        "entities_state_check",
    );
    refused(
        conn,
        "INSERT INTO entities (id, kind, parent_id, name, attrs, state, version, created_at, updated_at) \
         VALUES ('org-00000099', 'org', NULL, 'x', '{}', 'archived', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            .to_string(),
        "entities_state_check",
    );
    // Every value the enums name is accepted (the lists in the migration are the enums').
    for s in countersign::domain::ChangeState::VALUES {
        diesel::sql_query(format!("UPDATE changes SET state = '{s}' WHERE id = {id}"))
            .execute(conn)
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    diesel::sql_query(format!(
        "UPDATE changes SET state = 'draft' WHERE id = {id}"
    ))
    .execute(conn)
    .unwrap();
    assert_eq!(
        repo::get(conn, id).unwrap().unwrap().state,
        countersign::domain::ChangeState::Draft
    );

    // (b) With the check out of the way, a stored unknown value is a load error that names
    // it, and the API answers 500 (logged with that cause), not a change in `draft`.
    let bypass = if is_pg(conn) {
        "ALTER TABLE changes DROP CONSTRAINT changes_state_check; \
         ALTER TABLE entities DROP CONSTRAINT entities_state_check"
    } else {
        "DROP TRIGGER changes_state_check_update; DROP TRIGGER entities_state_check_update"
    };
    diesel::connection::SimpleConnection::batch_execute(conn, bypass).unwrap();
    diesel::sql_query(format!(
        "UPDATE changes SET state = 'bogus' WHERE id = {id}"
    ))
    .execute(conn)
    .unwrap();
    let e = repo::get(conn, id).expect_err("an unknown state loaded");
    assert!(
        matches!(e, diesel::result::Error::DeserializationError(_)),
        "{e:?}"
    );
    let msg = chain(&e);
    assert!(msg.contains("'state'"), "{msg}");
    assert!(msg.contains("`bogus` is not a known change state"), "{msg}");
    let (s, body) = app.get(&format!("/api/v1/changes/{id}"), "ana").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_ne!(body["state"], "draft", "{body}");

    diesel::sql_query(format!(
        "UPDATE entities SET state = 'gone' WHERE id = '{e1}'"
    ))
    .execute(conn)
    .unwrap();
    let e = inventory::get(conn, &e1).expect_err("an unknown entity state loaded");
    assert!(
        chain(&e).contains("`gone` is not a known entity state"),
        "{e}"
    );
    let (s, body) = app.get(&format!("/api/v1/inventory/{e1}"), "ana").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
}
