//! `countersign demo`: a database with demo people, an inventory and changes in every state
//! (the README's first command). The benchmarks (`countersign bench`) are `crate::bench`.

mod calendar;
mod difference;
mod generator;
mod review;

use std::path::PathBuf;
use std::time::Instant;

use diesel::prelude::*;
use serde_json::json;

use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::schema::entities;
use crate::db::{self, users, write_tx, DatabaseUrl, DbConn};
use crate::domain::event::Event;
use crate::domain::selector::{Scope, Selector};
use crate::domain::signoff::Side;
use crate::domain::{ExecState, Schema};
use crate::error::AppError;
use crate::service::changes::{self as svc, CreateChange, SignRequest};
use crate::service::events::record;
use crate::service::CurrentUser;

pub use generator::{demo_apps, GenEntity, Generator};

struct DemoUser {
    email: &'static str,
    name: &'static str,
    team: Option<&'static str>,
    admin: bool,
}

const DEMO_USERS: [DemoUser; 8] = [
    DemoUser {
        email: "ana@app-owners.example",
        name: "Ana Ortiz",
        team: Some("app-owners"),
        admin: false,
    },
    DemoUser {
        email: "ben@app-owners.example",
        name: "Ben Okafor",
        team: Some("app-owners"),
        admin: false,
    },
    DemoUser {
        email: "carla@platform-ops.example",
        name: "Carla Nguyen",
        team: Some("platform-ops"),
        admin: false,
    },
    DemoUser {
        email: "dev@platform-ops.example",
        name: "Dev Patel",
        team: Some("platform-ops"),
        admin: false,
    },
    DemoUser {
        email: "eli@platform-ops.example",
        name: "Eli Schmidt",
        team: Some("platform-ops"),
        admin: false,
    },
    DemoUser {
        email: "sam@security.example",
        name: "Sam Reyes",
        team: Some("security"),
        admin: false,
    },
    DemoUser {
        email: "admin@countersign.example",
        name: "Admin",
        team: None,
        admin: true,
    },
    // A second admin: freezes and lockdowns take two.
    DemoUser {
        email: "rita@countersign.example",
        name: "Rita Alvarez",
        team: None,
        admin: true,
    },
];

pub(crate) fn user(conn: &mut DbConn, email: &str) -> anyhow::Result<CurrentUser> {
    let u = users::find_user_by_email(conn, email)?
        .ok_or_else(|| anyhow::anyhow!("demo user {email} missing"))?;
    Ok(CurrentUser::load(conn, u)?)
}

pub(crate) fn e(err: AppError) -> anyhow::Error {
    anyhow::anyhow!("{err}")
}

/// Create the demo database if it has no data yet; print fresh API tokens either way.
/// Every demo person signs in to the web app with this password.
pub const DEMO_PASSWORD: &str = "countersign-demo";

pub fn setup(config: &Config) -> anyhow::Result<()> {
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 2)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    let mut conn = pool.get()?;
    if users::find_team(&mut conn, "platform-ops")?.is_none() {
        let started = Instant::now();
        eprintln!("creating demo data in {} …", config.database.redacted());
        write_tx(&mut conn, |conn| -> Result<(), AppError> {
            for t in ["app-owners", "platform-ops", "security"] {
                users::create_team(conn, t)?;
                record(
                    conn,
                    &Actor::system(),
                    None,
                    Event::TeamCreated {
                        team: t.to_string(),
                    },
                )?;
            }
            for d in &DEMO_USERS {
                let u = users::create_user(conn, d.email, d.name, d.admin)?;
                users::set_password(conn, u.id, DEMO_PASSWORD)?;
                if let Some(t) = d.team {
                    let team = users::find_team(conn, t)?.expect("created");
                    users::add_member(conn, team.id, u.id)?;
                }
                record(
                    conn,
                    &Actor::system(),
                    None,
                    Event::UserSaved {
                        email: d.email.to_string(),
                        name: Some(d.name.to_string()),
                        teams: d.team.iter().map(|t| t.to_string()).collect(),
                        admin: d.admin,
                    },
                )?;
            }
            Ok(())
        })
        .map_err(e)?;
        let mut lines = Vec::new();
        Generator::new(2022).generate(300, 10, demo_apps, |g| lines.push(g.line()));
        let report = db::inventory::import(
            &mut conn,
            &schema,
            lines.into_iter().map(Ok),
            false,
            &Actor::system(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            report.committed,
            "demo inventory rejected: {:?}",
            report.errors.first()
        );
        seed_changes(&pool, &mut conn, &schema)?;
        eprintln!(
            "demo data ready in {:.1}s ({} entities)",
            started.elapsed().as_secs_f64(),
            report.inserted
        );
    }
    println!(
        "\ncountersign demo — database {}",
        config.database.redacted()
    );
    println!(
        "Web app: http://{}/ — sign in as any person below with the password `{DEMO_PASSWORD}`.",
        config.bind
    );
    println!("API tokens (new ones each start; use as `Authorization: Bearer <token>`):");
    for d in &DEMO_USERS {
        let u = users::find_user_by_email(&mut conn, d.email)?
            .ok_or_else(|| anyhow::anyhow!("demo user missing"))?;
        let token = users::create_token(&mut conn, u.id, "demo")?;
        println!(
            "  {:<28} {:<13} {token}",
            d.email,
            d.team.unwrap_or(if d.admin { "(admin)" } else { "" })
        );
    }
    println!(
        "Try: curl -H 'Authorization: Bearer <token>' http://{}/api/v1/queue",
        config.bind
    );
    match &config.mail.transport {
        crate::config::MailTransport::Dir(d) => println!(
            "Notification mails are written to {}/ as .eml files (set COUNTERSIGN_SMTP_HOST to send them).\n",
            d.display()
        ),
        crate::config::MailTransport::Smtp { host, port, .. } => {
            println!("Notification mails go out through SMTP at {host}:{port}.\n")
        }
        crate::config::MailTransport::Off => println!(),
    }
    Ok(())
}

fn pick(
    conn: &mut DbConn,
    kind: &str,
    app: Option<&str>,
    n: i64,
    skip: i64,
) -> anyhow::Result<Vec<String>> {
    let mut q = entities::table.filter(entities::kind.eq(kind)).into_boxed();
    if let Some(app) = app {
        q = q.filter(entities::attrs.like(format!("%\"app\":\"{app}\"%")));
    }
    Ok(q.order(entities::id.asc())
        .offset(skip)
        .limit(n)
        .select(entities::id)
        .load(conn)?)
}

fn empty_sites(conn: &mut DbConn, n: usize) -> anyhow::Result<Vec<String>> {
    let sites: Vec<String> = entities::table
        .filter(entities::kind.eq("site"))
        .order(entities::id.asc())
        .select(entities::id)
        .load(conn)?;
    let mut out = Vec::new();
    for s in sites {
        let kids: i64 = entities::table
            .filter(entities::parent_id.eq(&s))
            .count()
            .get_result(conn)?;
        if kids == 0 {
            out.push(s);
            if out.len() == n {
                break;
            }
        }
    }
    Ok(out)
}

/// The demo's changes, one in each state a newcomer should see. A linear script of seven
/// numbered scenarios sharing the `create` and `fp` closures: read top to bottom, it is
/// longer than a function should be but clearer than seven functions passing them around.
/// The eighth (a re-sign from the difference) needs an import, so it is `difference.rs`.
fn seed_changes(
    pool: &db::Pool,
    conn: &mut DbConn,
    schema: &crate::domain::Schema,
) -> anyhow::Result<()> {
    let ana = user(conn, "ana@app-owners.example")?;
    let ben = user(conn, "ben@app-owners.example")?;
    let carla = user(conn, "carla@platform-ops.example")?;
    let create = |conn: &mut DbConn,
                  who: &CurrentUser,
                  title: &str,
                  rationale: &str,
                  op: &str,
                  params: serde_json::Value,
                  targets: Selector| {
        svc::create(
            conn,
            schema,
            who,
            CreateChange {
                title: title.into(),
                rationale: rationale.into(),
                requesting_team: "app-owners".into(),
                operation: op.into(),
                params,
                targets,
                expect: None,
                not_before: None,
                not_after: None,
                submit: false,
            },
        )
        .map_err(e)
    };
    let fp = |conn: &mut DbConn, id: i64| -> anyhow::Result<String> {
        Ok(svc::view(conn, schema, id)
            .map_err(e)?
            .fingerprint
            .unwrap_or_default())
    };

    // 1. Awaiting the implementers: uninstall Insight from 40 sites (requester signed).
    let sites = pick(conn, "site", None, 280, 0)?;
    let id = create(
        conn,
        &ana,
        "Uninstall Insight from the first wave of sites",
        "Insight is retired. This removes the app installations only; the sites and their data stay.",
        "uninstall_app",
        json!({}),
        Selector { ids: vec![], within: Some(Scope { kind: "site".into(), ids: sites }), filter: [("app".to_string(), "insight".to_string())].into() },
    )?;
    svc::submit(conn, schema, &ana, id).map_err(e)?;
    let f = fp(conn, id)?;
    svc::sign(
        conn,
        schema,
        &ana,
        id,
        SignRequest {
            side: Side::Requester,
            fingerprint: f,
            comment: "Checked with the Insight product owner.".into(),
            confirm_count: None,
            text_hash: None,
            replaces: None,
        },
    )
    .map_err(e)?;

    // 2. A draft with the outage's mistake: site IDs pasted where app installations belong.
    let mut ids = pick(conn, "app_install", Some("insight"), 3, 60)?;
    ids.extend(pick(conn, "site", None, 2, 500)?);
    ids.push("0b1c2d3e-typo".into());
    create(
        conn,
        &ben,
        "Remove Insight from two more customers",
        "Follow-up to the first wave.",
        "uninstall_app",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;

    // 3. Approved: record a new ledger version on five installations.
    let ids = pick(conn, "app_install", Some("ledger"), 5, 0)?;
    let id = create(
        conn,
        &ben,
        "Record ledger 2.4.1 on the pilot installations",
        "The pilot sites were upgraded by the vendor.",
        "set_app_version",
        json!({"version": "2.4.1"}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ben, id).map_err(e)?;
    let f = fp(conn, id)?;
    svc::sign(
        conn,
        schema,
        &ben,
        id,
        SignRequest {
            side: Side::Requester,
            fingerprint: f.clone(),
            comment: String::new(),
            confirm_count: None,
            text_hash: None,
            replaces: None,
        },
    )
    .map_err(e)?;
    svc::sign(
        conn,
        schema,
        &carla,
        id,
        SignRequest {
            side: Side::Implementer,
            fingerprint: f,
            comment: "Matches the vendor's list.".into(),
            confirm_count: None,
            text_hash: None,
            replaces: None,
        },
    )
    .map_err(e)?;

    // 4. Rejected: delete two empty sites.
    let ids = empty_sites(conn, 2)?;
    let id = create(
        conn,
        &ana,
        "Delete two unused staging sites",
        "Nobody has logged in for a year.",
        "delete_site",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ana, id).map_err(e)?;
    svc::comment(
        conn,
        schema,
        &carla,
        id,
        "Backups for these sites are still under legal hold.",
    )
    .map_err(e)?;
    svc::reject(
        conn,
        schema,
        &carla,
        id,
        "Legal hold on the backups: ask again in Q3.",
    )
    .map_err(e)?;

    // 5. Awaiting both sides: uninstall pulse from three installations.
    let ids = pick(conn, "app_install", Some("pulse"), 3, 10)?;
    let id = create(
        conn,
        &ben,
        "Uninstall pulse from three trial sites",
        "The trial ended.",
        "uninstall_app",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ben, id).map_err(e)?;

    // 6. Executed, then rolled back on request: the rollback awaits its sign-offs.
    let ids = pick(conn, "app_install", Some("pulse"), 4, 20)?;
    let id = create(
        conn,
        &ben,
        "Uninstall pulse from the ended trials",
        "These trials ended last month.",
        "uninstall_app",
        json!({}),
        Selector {
            ids,
            ..Default::default()
        },
    )?;
    svc::submit(conn, schema, &ben, id).map_err(e)?;
    run_change(pool, conn, schema, id, &ana, &carla)?;
    crate::service::execution::rollback(
        conn,
        schema,
        &ana,
        id,
        &crate::service::execution::RollbackRequest {
            title: Some("Bring pulse back on the ended trials".into()),
            rationale: Some("Two of these customers extended their trial after all.".into()),
        },
    )
    .map_err(e)?;

    // 7. A draft a population guard refuses: decommissioning every site of one customer
    // would leave it with none (`min_remaining` on decommission_site).
    let org: String = entities::table
        .filter(entities::kind.eq("org"))
        .order(entities::id.asc())
        .select(entities::id)
        .first(conn)?;
    create(
        conn,
        &ana,
        "Decommission every site of a departing customer",
        "The customer's contract ends this month.",
        "decommission_site",
        json!({}),
        Selector {
            within: Some(Scope {
                kind: "org".into(),
                ids: vec![org],
            }),
            ..Default::default()
        },
    )?;

    // 8. Re-signed from the difference: the list moved after the requester signed.
    difference::seed(conn, schema)?;

    // 9. Both teams signed a deletion across 21 customers; its tier asks for a third side.
    review::seed(conn, schema)?;

    // 10–12. The change calendar (a confirmed freeze, one awaiting its second admin) and
    // a start scheduled for a window's opening.
    calendar::seed(conn, schema)?;
    Ok(())
}

/// Sign a submitted change on both sides (confirming its count); its fingerprint.
pub fn sign_both(
    conn: &mut DbConn,
    schema: &Schema,
    id: i64,
    req: &CurrentUser,
    ops: &CurrentUser,
) -> anyhow::Result<String> {
    let v = svc::view(conn, schema, id).map_err(e)?;
    let fp = v.fingerprint.clone().unwrap_or_default();
    for (who, side) in [(req, Side::Requester), (ops, Side::Implementer)] {
        svc::sign(
            conn,
            schema,
            who,
            id,
            SignRequest {
                side,
                fingerprint: fp.clone(),
                comment: String::new(),
                confirm_count: Some(v.summary.targets),
                text_hash: None,
                replaces: None,
            },
        )
        .map_err(e)?;
    }
    Ok(fp)
}

/// Sign a submitted change on both sides, execute it with a worker, and return the time
/// from the execute call to the final state.
pub fn run_change(
    pool: &db::Pool,
    conn: &mut DbConn,
    schema: &Schema,
    id: i64,
    req: &CurrentUser,
    ops: &CurrentUser,
) -> anyhow::Result<f64> {
    let fp = sign_both(conn, schema, id, req, ops)?;
    let wake = std::sync::Arc::new(crate::exec::Wake::default());
    // The worker gets the pool; the URL in its config is not used.
    let mut config = Config::for_database(DatabaseUrl::Sqlite(PathBuf::from("bench.db")));
    config.exec_batch = 2000;
    let worker = crate::exec::Worker::spawn(
        pool.clone(),
        std::sync::Arc::new(schema.clone()),
        config,
        wake.clone(),
    );
    let t = Instant::now();
    crate::service::execution::execute(
        conn,
        schema,
        ops,
        id,
        &crate::service::execution::ExecuteRequest { fingerprint: fp },
    )
    .map_err(e)?;
    wake.notify();
    // Poll the cheap execution row (not the per-wave progress, which scans the items and
    // would compete with the worker for the two cores).
    loop {
        let x = db::exec::for_change(conn, id)?;
        if x.is_some_and(|x| x.state != ExecState::Running) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let took = t.elapsed().as_secs_f64();
    let progress = crate::service::execution::progress(conn, id).map_err(e)?;
    worker.stop();
    anyhow::ensure!(
        progress.state == ExecState::Completed && progress.done == progress.total,
        "bench execution ended {}: {:?}",
        progress.state,
        progress.failures.first()
    );
    Ok(took)
}
