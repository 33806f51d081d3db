//! `countersign change show|execute|watch|resume|continue|pause|skip-wave|skip-drifted|
//! retry-failed|schedule|unschedule|abort|rollback`:
//! operating on changes
//! from a terminal, through the same services as the API.

use clap::Subcommand;
use serde_json::json;

use super::app_err;
use crate::config::Config;
use crate::db::{self, users, DbConn};
use crate::domain::schema::Schema;
use crate::domain::ExecState;
use crate::service::execution::{self as exe, ExecutionView};
use crate::service::{changes as chg, CurrentUser};

#[derive(Debug, Subcommand)]
pub enum ChangeCmd {
    /// State, blast radius, fingerprint, sign-offs and execution progress of a change.
    Show {
        /// CHG-<n> or <n>.
        change: String,
        /// Print the API's JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Execute an approved change (as a member of its implementing team).
    Execute {
        change: String,
        /// Email of the person executing it.
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        /// The signed fingerprint (`countersign change show` prints it).
        #[arg(long)]
        fingerprint: String,
        /// Run the waves in this process and follow them to the end.
        #[arg(long)]
        wait: bool,
    },
    /// Follow an execution to its end, printing progress (runs a worker in this process).
    Watch { change: String },
    /// Continue a halted execution.
    Resume {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        wait: bool,
    },
    /// Continue an execution paused by a person or at a manual gate.
    Continue {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        wait: bool,
    },
    /// Pause a running or baking execution at its next batch.
    Pause {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Skip the pending targets of the current wave of a paused or halted execution.
    SkipWave {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Skip the targets the drift check held back (then resume).
    SkipDrifted {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run the failed targets again (halted, partially failed or failed executions).
    RetryFailed {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Start an approved change by itself later: at its window's opening (the default),
    /// `--at now` (as soon as nothing conflicts) or `--at` an RFC 3339 time.
    Schedule {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        at: Option<String>,
        /// If a change sharing its targets is executing then, wait for it.
        #[arg(long)]
        wait_for_conflicts: bool,
    },
    /// Call a scheduled start off.
    Unschedule {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Stop an execution for good: pending targets are skipped.
    Abort {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Create the rollback of an executed change (it still needs its sign-offs).
    Rollback {
        change: String,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        rationale: Option<String>,
    },
}

pub(super) fn cli_user(conn: &mut DbConn, email: &str) -> anyhow::Result<CurrentUser> {
    let u = users::find_user_by_email(conn, email)?
        .ok_or_else(|| anyhow::anyhow!("no user with email {email} (countersign user add)"))?;
    Ok(CurrentUser::load(conn, u)?)
}

fn print_progress(v: &ExecutionView) {
    let waves = v
        .waves
        .iter()
        .map(|w| format!("{}/{}", w.done + w.failed + w.skipped, w.size))
        .collect::<Vec<_>>()
        .join(" ");
    println!(
        "{} execution {}: {} done, {} failed, {} skipped, {} pending of {} (waves {waves})",
        v.change, v.state, v.done, v.failed, v.skipped, v.pending, v.total
    );
    if let Some(r) = &v.halt_reason {
        println!("  halted: {r}");
    }
    for f in v.failures.iter().take(10) {
        println!(
            "  failed: {} {} — {}",
            f.kind,
            f.id,
            f.error.as_deref().unwrap_or("")
        );
    }
}

/// Run a worker in this process and print progress until the execution stops running.
async fn follow(config: Config, pool: db::Pool, schema: Schema, id: i64) -> anyhow::Result<i32> {
    let w = crate::exec::Worker::spawn(
        pool.clone(),
        std::sync::Arc::new(schema),
        config,
        std::sync::Arc::new(crate::exec::Wake::default()),
    );
    let mut last = String::new();
    let v = loop {
        let p = pool.clone();
        let v =
            tokio::task::spawn_blocking(move || exe::progress(&mut *p.get()?, id).map_err(app_err))
                .await??;
        let line = format!("{} {} {} {}", v.state, v.done, v.failed, v.skipped);
        if line != last {
            print_progress(&v);
            last = line;
        }
        if v.state != ExecState::Running {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    tokio::task::spawn_blocking(move || w.stop()).await?;
    Ok(if v.state == ExecState::Completed {
        0
    } else {
        2
    })
}

/// What every change subcommand works with.
struct Session {
    config: Config,
    schema: Schema,
    pool: db::Pool,
}

/// The change and the person `change` and `as_user` name.
/// An operator control with an optional reason, as `--as` the given person; prints the
/// execution's progress.
fn control(
    conn: &mut DbConn,
    schema: &Schema,
    change: &str,
    as_user: &str,
    reason: Option<String>,
    action: exe::Control,
) -> anyhow::Result<i32> {
    let (id, user) = change_and_user(conn, change, as_user)?;
    let v = action(conn, schema, &user, id, reason.as_deref()).map_err(app_err)?;
    print_progress(&v);
    Ok(0)
}

fn change_and_user(
    conn: &mut DbConn,
    change: &str,
    as_user: &str,
) -> anyhow::Result<(i64, CurrentUser)> {
    let id = chg::change_id(change).map_err(app_err)?;
    let user = cli_user(conn, as_user)?;
    Ok((id, user))
}

pub(super) async fn run(cmd: ChangeCmd) -> anyhow::Result<i32> {
    let mut config = Config::from_env()?;
    config.poll_ms = config.poll_ms.min(200);
    let (schema, source) = config.load_schema()?;
    let pool = db::build_pool(&config.database, 3)?;
    crate::web::prepare_database(&pool, &schema, &source)?;
    let mut conn = pool.get()?;
    let conn = &mut *conn;
    let s = Session {
        config,
        schema,
        pool,
    };
    match cmd {
        ChangeCmd::Show { change, json } => show(conn, &s.schema, &change, json),
        ChangeCmd::Execute {
            change,
            as_user,
            fingerprint,
            wait,
        } => execute(conn, s, &change, &as_user, fingerprint, wait).await,
        ChangeCmd::Watch { change } => {
            let id = chg::change_id(&change).map_err(app_err)?;
            exe::progress(conn, id).map_err(app_err)?;
            follow(s.config, s.pool.clone(), s.schema, id).await
        }
        ChangeCmd::Resume {
            change,
            as_user,
            wait,
        } => {
            let (id, user) = change_and_user(conn, &change, &as_user)?;
            let v = exe::resume(conn, &s.schema, &user, id).map_err(app_err)?;
            print_progress(&v);
            if wait {
                follow(s.config, s.pool.clone(), s.schema, id).await
            } else {
                Ok(0)
            }
        }
        ChangeCmd::Continue {
            change,
            as_user,
            wait,
        } => {
            let (id, user) = change_and_user(conn, &change, &as_user)?;
            let v = exe::continue_paused(conn, &s.schema, &user, id).map_err(app_err)?;
            print_progress(&v);
            if wait {
                follow(s.config, s.pool.clone(), s.schema, id).await
            } else {
                Ok(0)
            }
        }
        ChangeCmd::Pause {
            change,
            as_user,
            reason,
        } => control(conn, &s.schema, &change, &as_user, reason, exe::pause),
        ChangeCmd::SkipWave {
            change,
            as_user,
            reason,
        } => control(conn, &s.schema, &change, &as_user, reason, exe::skip_wave),
        ChangeCmd::SkipDrifted {
            change,
            as_user,
            reason,
        } => control(
            conn,
            &s.schema,
            &change,
            &as_user,
            reason,
            exe::skip_drifted,
        ),
        ChangeCmd::RetryFailed {
            change,
            as_user,
            reason,
        } => control(
            conn,
            &s.schema,
            &change,
            &as_user,
            reason,
            exe::retry_failed,
        ),
        ChangeCmd::Schedule {
            change,
            as_user,
            at,
            wait_for_conflicts,
        } => {
            let (id, user) = change_and_user(conn, &change, &as_user)?;
            let fingerprint = db::changes::get(conn, id)
                .map_err(|e| app_err(e.into()))?
                .and_then(|c| c.fingerprint)
                .unwrap_or_default();
            let req = exe::ScheduleRequest {
                fingerprint,
                at,
                wait_for_conflicts,
            };
            let v = exe::schedule(conn, &s.schema, &user, id, &req).map_err(app_err)?;
            println!(
                "{} starts by itself at {} UTC{}",
                v.change,
                v.start_at.format("%Y-%m-%d %H:%M:%S"),
                if v.wait_for_conflicts {
                    ", waiting for changes that share its targets"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        ChangeCmd::Unschedule {
            change,
            as_user,
            reason,
        } => {
            let (id, user) = change_and_user(conn, &change, &as_user)?;
            exe::unschedule(conn, &s.schema, &user, id, reason.as_deref()).map_err(app_err)?;
            println!("the scheduled start of {} is called off", change.trim());
            Ok(0)
        }
        ChangeCmd::Abort {
            change,
            as_user,
            reason,
        } => control(conn, &s.schema, &change, &as_user, reason, exe::abort),
        ChangeCmd::Rollback {
            change,
            as_user,
            title,
            rationale,
        } => rollback(conn, &s.schema, &change, &as_user, title, rationale),
    }
}

/// `change show`: the change and its execution, as text or the API's JSON.
fn show(conn: &mut DbConn, schema: &Schema, change: &str, json: bool) -> anyhow::Result<i32> {
    let id = chg::change_id(change).map_err(app_err)?;
    let v = chg::view(conn, schema, id).map_err(app_err)?;
    let x = exe::progress(conn, id).ok();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"change": v, "execution": x}))?
        );
        return Ok(0);
    }
    println!("{} {} [{}]", v.number, v.title, v.state);
    println!(
        "  {} ({}) requested by {}, implemented by {}",
        v.operation.label,
        v.operation.effect.map_or("unknown", |e| e.as_str()),
        v.requesting_team,
        v.implementing_team
    );
    println!("  {}", v.summary.text);
    for w in &v.summary.warnings {
        println!("  warning: {w}");
    }
    println!(
        "  fingerprint {}",
        v.fingerprint.as_deref().unwrap_or("(unresolved)")
    );
    for e in v.errors.iter().take(20) {
        println!(
            "  error{}: {}",
            e.line.map(|l| format!(" line {l}")).unwrap_or_default(),
            e.message
        );
    }
    if let Some(x) = x {
        print_progress(&x);
    }
    Ok(0)
}

/// `change execute`: start the execution; with `wait`, run and follow it here.
async fn execute(
    conn: &mut DbConn,
    s: Session,
    change: &str,
    as_user: &str,
    fingerprint: String,
    wait: bool,
) -> anyhow::Result<i32> {
    let (id, user) = change_and_user(conn, change, as_user)?;
    let v = exe::execute(
        conn,
        &s.schema,
        &user,
        id,
        &exe::ExecuteRequest { fingerprint },
    )
    .map_err(app_err)?;
    println!(
        "{} executing {} targets in {} waves",
        v.change,
        v.total,
        v.waves.len()
    );
    if wait {
        follow(s.config, s.pool.clone(), s.schema, id).await
    } else {
        println!("a worker (serve or `countersign worker`) runs it; follow it with `countersign change watch {}`", v.change);
        Ok(0)
    }
}

/// `change rollback`: create the rollback change and show it.
fn rollback(
    conn: &mut DbConn,
    schema: &Schema,
    change: &str,
    as_user: &str,
    title: Option<String>,
    rationale: Option<String>,
) -> anyhow::Result<i32> {
    let (id, user) = change_and_user(conn, change, as_user)?;
    let rb = exe::rollback(
        conn,
        schema,
        &user,
        id,
        &exe::RollbackRequest { title, rationale },
    )
    .map_err(app_err)?;
    let v = chg::view(conn, schema, rb).map_err(app_err)?;
    println!("{} created: {} [{}]", v.number, v.title, v.state);
    println!("  {}", v.summary.text);
    println!(
        "  fingerprint {}",
        v.fingerprint.as_deref().unwrap_or_default()
    );
    Ok(0)
}
