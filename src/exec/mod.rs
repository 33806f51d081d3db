//! The execution runner: a worker thread that leases running executions in the database
//! and works through their items wave by wave.
//!
//! Exactly once: a built-in effect and its item's result are written in one transaction
//! that first re-checks this worker's lease, so after a crash the item is either done
//! (and never run again) or still pending (and run by whoever holds the lease next). The
//! external executor cannot share a transaction with the remote system: it is called
//! outside one and its result recorded after, so a crash between the two repeats the
//! call with the same idempotency key (at-least-once delivery, deduplicated by key).

pub mod builtin;
mod drift;
mod gates;
pub mod webhook;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::db::audit::Actor;
use crate::db::models::{Change, Execution};
use crate::db::{changes as change_repo, exec as repo, write_tx, DbConn, Pool, WriteTx};
use crate::domain::event::Event;
use crate::domain::execution::{final_state, wave_halts, ExecState, ItemStatus, Wave};
use crate::domain::schema::Effect;
use crate::domain::{ChangeState, Schema};
use crate::error::{AppError, AppResult};
use crate::service::events::record;

/// Wakes an idle worker as soon as there is work (an execute or resume in this process).
#[derive(Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        let mut f = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        *f = true;
        self.cv.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let f = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        let (mut f, _) = self
            .cv
            .wait_timeout_while(f, timeout, |woken| !*woken)
            .unwrap_or_else(|e| e.into_inner());
        *f = false;
    }
}

/// What the runner needs.
#[derive(Clone)]
pub struct Ctx {
    pub pool: Pool,
    pub schema: Arc<Schema>,
    pub config: Config,
    pub owner: String,
    pub stop: Arc<AtomicBool>,
    pub wake: Arc<Wake>,
}

impl Ctx {
    fn ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.config.lease_secs as i64)
    }
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A running worker thread; stopping it lets the current batch finish and frees the lease.
pub struct Worker {
    stop: Arc<AtomicBool>,
    wake: Arc<Wake>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(pool: Pool, schema: Arc<Schema>, config: Config, wake: Arc<Wake>) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Ctx {
            pool,
            schema,
            config,
            owner: format!(
                "{}:{}:{}",
                hostname(),
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            stop: stop.clone(),
            wake: wake.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("countersign-worker".into())
            .spawn(move || run(ctx))
            .expect("spawn worker thread");
        Worker {
            stop,
            wake,
            handle: Some(handle),
        }
    }

    /// Stop and wait for the thread (it finishes its current batch).
    pub fn stop(mut self) {
        self.signal();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }

    fn signal(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.notify();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.signal();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

/// The worker loop: claim an execution, run it until it stops or the lease is lost.
pub fn run(ctx: Ctx) {
    // Every line this thread logs names the worker; a claimed execution adds its own span.
    let _worker = tracing::info_span!("worker", owner = %ctx.owner).entered();
    tracing::info!("execution worker started");
    // Webhook clients (keep-alive connections) live as long as the worker.
    let mut hooks = webhook::Hooks::default();
    // Expiring sign-offs are swept here (why here: `service::expiry::Sweeper`).
    let mut expiry = crate::service::expiry::Sweeper::default();
    // Scheduled starts are started here too, also between the batches of an execution.
    let mut starter = crate::service::execution::Starter::default();
    while !ctx.stopping() {
        expiry.tick(&ctx.pool, &ctx.schema);
        starter.tick(&ctx.pool, &ctx.schema);
        let claimed = ctx.pool.get().map_err(AppError::from).and_then(|mut conn| {
            write_tx(&mut conn, |c| Ok(repo::claim(c, &ctx.owner, ctx.ttl())?))
        });
        match claimed {
            Ok(Some(e)) => {
                let _span =
                    tracing::info_span!("execution", execution = e.id, change = e.change_id)
                        .entered();
                tracing::info!("claimed execution");
                run_execution(&ctx, e.id, &mut hooks, &mut starter);
            }
            Ok(None) => ctx.wake.wait(Duration::from_millis(ctx.config.poll_ms)),
            Err(err) => {
                tracing::warn!(error = %err, "worker could not look for work");
                ctx.wake
                    .wait(Duration::from_millis(ctx.config.poll_ms.max(500)));
            }
        }
    }
    tracing::info!("execution worker stopped");
}

/// What one step did.
enum Step {
    /// More to do now.
    Continue,
    /// Nothing due before this long (retries waiting).
    Wait(Duration),
    /// The execution stopped (final, halted, aborted) or this worker lost its lease.
    Stop,
}

fn run_execution(
    ctx: &Ctx,
    exec_id: i64,
    hooks: &mut webhook::Hooks,
    starter: &mut crate::service::execution::Starter,
) {
    let mut errors = 0u32;
    loop {
        starter.tick(&ctx.pool, &ctx.schema);
        if ctx.stopping() {
            if let Ok(mut conn) = ctx.pool.get() {
                let _ = write_tx(&mut conn, |c| repo::release(c, exec_id, &ctx.owner));
            }
            return;
        }
        let step = ctx
            .pool
            .get()
            .map_err(AppError::from)
            .and_then(|mut conn| step(ctx, &mut conn, exec_id, hooks));
        match step {
            Ok(Step::Continue) => {
                errors = 0;
                if ctx.config.exec_throttle_ms > 0 {
                    std::thread::sleep(Duration::from_millis(ctx.config.exec_throttle_ms));
                }
            }
            Ok(Step::Wait(d)) => {
                errors = 0;
                ctx.wake
                    .wait(d.min(Duration::from_secs(ctx.config.lease_secs / 3 + 1)));
            }
            Ok(Step::Stop) => return,
            Err(e) => {
                errors += 1;
                tracing::error!(execution = exec_id, error = %e, attempt = errors, "execution step failed; retrying");
                std::thread::sleep(Duration::from_millis(200 * u64::from(errors.min(10))));
            }
        }
    }
}

fn waves_of(e: &Execution) -> Vec<Wave> {
    serde_json::from_str(&e.waves).unwrap_or_default()
}

/// Lock the change, then re-check the lease: the order every writer of an execution uses
/// (change row first, execution row second), so they never deadlock on PostgreSQL.
fn fence(ctx: &Ctx, conn: &mut DbConn, exec_id: i64) -> AppResult<Option<(Execution, Change)>> {
    let Some(e) = repo::get(conn, exec_id)? else {
        return Ok(None);
    };
    let Some(c) = change_repo::lock(conn, e.change_id)? else {
        return Ok(None);
    };
    if !repo::heartbeat(conn, exec_id, &ctx.owner, ctx.ttl())? {
        return Ok(None);
    }
    let e = repo::get(conn, exec_id)?.expect("execution exists");
    Ok(Some((e, c)))
}

/// [`fence`] for a transaction that starts a batch: during a lockdown the execution is
/// paused here instead (`service::calendar::runner`), and `None` stops this worker.
fn fence_batch(
    ctx: &Ctx,
    conn: &mut WriteTx<'_>,
    exec_id: i64,
) -> AppResult<Option<(Execution, Change)>> {
    let Some((e, c)) = fence(ctx, conn, exec_id)? else {
        return Ok(None);
    };
    if crate::service::calendar::runner::pause_if_locked_down(conn, &e, &c)? {
        return Ok(None);
    }
    Ok(Some((e, c)))
}

fn step(ctx: &Ctx, conn: &mut DbConn, exec_id: i64, hooks: &mut webhook::Hooks) -> AppResult<Step> {
    let effect = match repo::get(conn, exec_id)? {
        // Claimed after its bake: the gates before the next wave.
        Some(e) if e.state == ExecState::Baking => return gates::baked(ctx, conn, e, hooks),
        // Before a wave's first batch: are its targets still what was signed?
        Some(e) if drift::due(&e) => return drift::check(ctx, conn, e.id),
        Some(e) => Some(e.effect),
        None => return Ok(Step::Stop),
    };
    match effect {
        Some(Effect::Webhook) => webhook::step(ctx, conn, exec_id, hooks),
        Some(effect) => write_tx(conn, |conn| {
            let Some((e, c)) = fence_batch(ctx, conn, exec_id)? else {
                return Ok(Step::Stop);
            };
            let items = repo::pending(conn, e.id, e.current_wave, ctx.config.exec_batch as i64)?;
            if items.is_empty() {
                return end_of_wave(ctx, conn, &e, &c);
            }
            let fit = match take_budget(ctx, conn, &e, &c, &items)? {
                Ok(n) => n,
                Err(step) => return Ok(step),
            };
            let counts = builtin::apply(conn, &ctx.schema, &c, effect, &items[..fit])?;
            repo::add_counts(conn, e.id, counts.done, counts.failed, counts.skipped)?;
            Ok(Step::Continue)
        }),
        None => Err(AppError::Unexpected(anyhow::anyhow!(
            "execution {exec_id} has an unknown effect"
        ))),
    }
}

/// Inside the fenced transaction: the current wave has no due items. Wait for retries,
/// halt on too many failures, go on to the next wave, or finish.
fn end_of_wave(ctx: &Ctx, conn: &mut WriteTx<'_>, e: &Execution, c: &Change) -> AppResult<Step> {
    let waves = waves_of(e);
    let wave = e.current_wave;
    if wave as usize <= waves.len() {
        if repo::pending_count(conn, e.id, wave)? > 0 {
            let next = repo::next_retry(conn, e.id, wave)?;
            let wait = next
                .map(|t| (t - crate::db::now()).to_std().unwrap_or_default())
                .unwrap_or(Duration::from_millis(100));
            return Ok(Step::Wait(wait.max(Duration::from_millis(10))));
        }
        let counts = repo::wave_counts(conn, e.id)?;
        let of = |status: ItemStatus| {
            counts
                .iter()
                .filter(|(w, s, _)| *w == wave && *s == status)
                .map(|(_, _, n)| *n as u64)
                .sum::<u64>()
        };
        let (done, failed, skipped) = (
            of(ItemStatus::Done),
            of(ItemStatus::Failed),
            of(ItemStatus::Skipped),
        );
        let threshold = ctx
            .schema
            .operation(&c.operation)
            .map(|o| o.failure_threshold)
            .unwrap_or(0.0);
        repo::set_wave(conn, e.id, wave + 1)?;
        record(
            conn,
            &Actor::system(),
            Some(c.id),
            Event::WaveCompleted {
                wave: wave as u32,
                of: waves.len() as u32,
                done,
                failed,
                skipped,
            },
        )?;
        if wave_halts(done, failed, threshold) {
            let reason = format!(
                "wave {wave} of {}: {failed} of {} targets failed, above the tolerated failure rate of {:.0}%; nothing more runs until someone resumes or aborts",
                waves.len(),
                done + failed,
                threshold * 100.0
            );
            tracing::warn!(wave, failed, "execution halted");
            halt(conn, e, c, (done, failed), reason, None)?;
            return Ok(Step::Stop);
        }
        if (wave as usize) < waves.len() {
            // A wave re-run after a retry of failed targets passed its gates the first time.
            if wave > e.rerun_through_wave {
                let op = ctx.schema.operation(&c.operation);
                if let Some(step) = gates::after_wave(conn, e, c, op, wave as u32)? {
                    return Ok(step);
                }
            }
            return Ok(Step::Continue);
        }
    }
    // Never "finished" with a target nothing acted on: that would be a bug upstream, and
    // the screens would say every target was dealt with.
    let left = repo::unfinished_count(conn, e.id)?;
    if left > 0 {
        tracing::error!(left, "execution at its end with targets not run; halting");
        let reason = format!(
            "{left} target(s) are still pending or drifted after the last wave; nothing more runs until someone resumes, skips or aborts"
        );
        halt(conn, e, c, (e.done as u64, e.failed as u64), reason, None)?;
        return Ok(Step::Stop);
    }
    finish(conn, e.id, c.id)?;
    Ok(Step::Stop)
}

/// Halt the execution (and its change) with `reason`, and tell the participants.
/// `budget`: the group whose budget is spent, when that is why.
fn halt(
    conn: &mut WriteTx<'_>,
    e: &Execution,
    c: &Change,
    (done, failed): (u64, u64),
    reason: String,
    budget: Option<String>,
) -> AppResult<()> {
    repo::set_state(conn, e.id, ExecState::Halted, Some(&reason))?;
    change_repo::set_state(conn, c.id, ChangeState::Halted)?;
    record(
        conn,
        &Actor::system(),
        Some(c.id),
        Event::ExecutionHalted {
            wave: e.current_wave as u32,
            done,
            failed,
            reason,
            budget,
        },
    )?;
    Ok(())
}

/// Take a batch from the change's budget: `Ok(n)`: run the first `n` items; `Err(step)`:
/// nothing fits, the execution halted.
fn take_budget(
    ctx: &Ctx,
    conn: &mut WriteTx<'_>,
    e: &Execution,
    c: &Change,
    items: &[crate::db::models::ExecutionItem],
) -> AppResult<Result<usize, Step>> {
    let taken = crate::service::budget::take_batch(conn, &ctx.schema, c, items)?;
    let Some(reason) = taken.halt else {
        return Ok(Ok(taken.fit));
    };
    tracing::warn!(reason = %reason, "execution halted: budget spent");
    let group = crate::service::budget::budget_of(&ctx.schema, c).map(|b| b.group.clone());
    halt(conn, e, c, (e.done as u64, e.failed as u64), reason, group)?;
    Ok(Err(Step::Stop))
}

/// All items processed: the final state from the counts.
fn finish(conn: &mut WriteTx<'_>, exec_id: i64, change_id: i64) -> AppResult<()> {
    let e = repo::get(conn, exec_id)?.expect("execution exists");
    let state = final_state(e.done as u64, e.failed as u64);
    repo::set_state(conn, exec_id, state, None)?;
    change_repo::set_state(conn, change_id, change_state(state))?;
    record(
        conn,
        &Actor::system(),
        Some(change_id),
        Event::ExecutionFinished {
            state,
            done: e.done as u64,
            failed: e.failed as u64,
            skipped: e.skipped as u64,
            total: e.total as u64,
        },
    )?;
    tracing::info!(
        state = state.as_str(),
        done = e.done,
        failed = e.failed,
        "execution finished"
    );
    Ok(())
}

/// The change state that mirrors an execution state.
pub fn change_state(s: ExecState) -> ChangeState {
    match s {
        ExecState::Running | ExecState::Baking | ExecState::Paused => ChangeState::Executing,
        ExecState::Halted => ChangeState::Halted,
        ExecState::Completed => ChangeState::Completed,
        ExecState::PartiallyFailed => ChangeState::PartiallyFailed,
        ExecState::Failed => ChangeState::Failed,
        ExecState::Aborted => ChangeState::Aborted,
    }
}
