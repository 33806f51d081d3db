//! `countersign freeze list|propose|edit|lift`, `countersign lockdown declare|lift|status`
//! and `countersign calendar confirm|decline|pending`: the change calendar from a terminal,
//! through the same services (and the same two-person rule) as the API. `--as` is the admin
//! acting; a proposal takes effect when another admin confirms it.

use clap::Subcommand;

use super::app_err;
use super::change::cli_user;
use crate::config::Config;
use crate::domain::calendar::{FreezeSpec, Severity};
use crate::service::calendar::{self as svc, ProposalRequest, ProposalView};

#[derive(Debug, clap::Args)]
pub struct FreezeArgs {
    /// A short name ("Year end").
    #[arg(long)]
    name: String,
    /// hard (execution refused) or soft (needs a freeze exception).
    #[arg(long, default_value = "hard")]
    severity: String,
    /// RFC 3339, UTC (2026-12-20T00:00:00Z).
    #[arg(long)]
    from: String,
    /// One-off: the end; recurring: until (optional).
    #[arg(long)]
    to: Option<String>,
    /// FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h
    #[arg(long)]
    every: Option<String>,
    /// An operation it covers (repeat; none: every operation).
    #[arg(long = "operation")]
    operations: Vec<String>,
    #[arg(long, default_value = "")]
    reason: String,
}

#[derive(Debug, Subcommand)]
pub enum FreezeCmd {
    /// Freezes in force.
    List,
    /// Propose a freeze (an admin; another admin confirms it).
    Propose {
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[command(flatten)]
        spec: FreezeArgs,
    },
    /// Propose new fields for freeze ID.
    Edit {
        id: i64,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[command(flatten)]
        spec: FreezeArgs,
    },
    /// Propose lifting freeze ID.
    Lift {
        id: i64,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum LockdownCmd {
    /// Whether a lockdown is in force.
    Status,
    /// Propose a lockdown (another admin confirms it).
    Declare {
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: String,
    },
    /// Propose lifting the lockdown (another admin confirms it).
    Lift {
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CalendarCmd {
    /// Proposals waiting for a second admin.
    Pending,
    /// Confirm proposal ID (an admin other than its proposer): it takes effect.
    Confirm {
        id: i64,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
    },
    /// Withdraw (your own) or decline proposal ID.
    Decline {
        id: i64,
        #[arg(long = "as", value_name = "EMAIL")]
        as_user: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

fn time(flag: &str, v: &str) -> anyhow::Result<chrono::NaiveDateTime> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.naive_utc())
        .map_err(|_| {
            anyhow::anyhow!("--{flag}: `{v}` is not an RFC 3339 time (2026-12-20T00:00:00Z)")
        })
}

fn spec(a: FreezeArgs) -> anyhow::Result<FreezeSpec> {
    let severity = Severity::parse(&a.severity)
        .ok_or_else(|| anyhow::anyhow!("--severity is `hard` or `soft`, not `{}`", a.severity))?;
    Ok(FreezeSpec {
        name: a.name,
        severity,
        starts_at: time("from", &a.from)?,
        ends_at: a.to.as_deref().map(|t| time("to", t)).transpose()?,
        recurrence: a.every,
        operations: a.operations,
        reason: a.reason,
    })
}

fn print(p: &ProposalView) {
    println!(
        "proposal {} ({}): {} — proposed by {}{}",
        p.id,
        p.state.as_str(),
        p.summary,
        p.proposed_by,
        p.decided_by
            .as_ref()
            .map(|d| format!(", decided by {d}"))
            .unwrap_or_default()
    );
}

fn propose(as_user: &str, req: ProposalRequest) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, schema) = super::open(&config)?;
    let user = cli_user(&mut conn, as_user)?;
    let p = svc::propose(&mut conn, &schema, &user, req).map_err(app_err)?;
    print(&p);
    println!(
        "another admin confirms it: countersign calendar confirm {} --as EMAIL",
        p.id
    );
    Ok(0)
}

pub fn freeze(cmd: FreezeCmd) -> anyhow::Result<i32> {
    match cmd {
        FreezeCmd::List => {
            let config = Config::from_env()?;
            let (mut conn, _) = super::open(&config)?;
            let st = svc::state(&mut conn).map_err(app_err)?;
            if st.freezes.is_empty() {
                println!("no freeze in force");
            }
            for f in st.freezes {
                println!(
                    "freeze {} “{}” ({}{}): {}; {}",
                    f.id,
                    f.name,
                    f.severity.as_str(),
                    if f.holding { ", holding now" } else { "" },
                    f.when,
                    if f.operations.is_empty() {
                        "every operation".to_string()
                    } else {
                        f.operations.join(", ")
                    }
                );
            }
            Ok(0)
        }
        FreezeCmd::Propose { as_user, spec: s } => {
            propose(&as_user, ProposalRequest::CreateFreeze(spec(s)?))
        }
        FreezeCmd::Edit {
            id,
            as_user,
            spec: s,
        } => propose(&as_user, ProposalRequest::EditFreeze(id, spec(s)?)),
        FreezeCmd::Lift {
            id,
            as_user,
            reason,
        } => propose(&as_user, ProposalRequest::LiftFreeze { freeze: id, reason }),
    }
}

pub fn lockdown(cmd: LockdownCmd) -> anyhow::Result<i32> {
    match cmd {
        LockdownCmd::Status => {
            let config = Config::from_env()?;
            let (mut conn, _) = super::open(&config)?;
            match svc::lockdown_banner(&mut conn).map_err(app_err)? {
                Some(b) => {
                    println!("{b}");
                    Ok(2)
                }
                None => {
                    println!("no lockdown");
                    Ok(0)
                }
            }
        }
        LockdownCmd::Declare { as_user, reason } => {
            propose(&as_user, ProposalRequest::DeclareLockdown { reason })
        }
        LockdownCmd::Lift { as_user, reason } => {
            propose(&as_user, ProposalRequest::LiftLockdown { reason })
        }
    }
}

pub fn calendar(cmd: CalendarCmd) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (mut conn, schema) = super::open(&config)?;
    match cmd {
        CalendarCmd::Pending => {
            let st = svc::state(&mut conn).map_err(app_err)?;
            if st.pending.is_empty() {
                println!("no proposal waits");
            }
            st.pending.iter().for_each(print);
        }
        CalendarCmd::Confirm { id, as_user } => {
            let user = cli_user(&mut conn, &as_user)?;
            print(&svc::confirm(&mut conn, &schema, &user, id).map_err(app_err)?);
        }
        CalendarCmd::Decline {
            id,
            as_user,
            reason,
        } => {
            let user = cli_user(&mut conn, &as_user)?;
            print(&svc::decline(&mut conn, &user, id, reason.as_deref()).map_err(app_err)?);
        }
    }
    Ok(0)
}
