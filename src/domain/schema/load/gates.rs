//! What stands between an operation's waves (`bake`, `health_check`, `pause_after_waves`),
//! checked against its waves on the loader's shared problem list.

use super::super::{BakeTime, HealthCheck, WaveGates, DEFAULT_HEALTH_TIMEOUT_MS};
use super::{RawOperation, Table};
use crate::domain::waves::WaveSize;

/// The longest a health endpoint may take to answer.
const MAX_HEALTH_TIMEOUT_MS: u64 = 60_000;

pub(super) fn between_waves(
    t: &Table,
    o: &RawOperation,
    waves: &[WaveSize],
    p: &mut super::Problems,
) -> WaveGates {
    let bake = o.bake.as_deref().and_then(|b| match BakeTime::parse(b) {
        Ok(b) => Some(b),
        Err(m) => {
            t.push(p, "bake", m);
            None
        }
    });
    let health_check = o.health_check.as_ref().map(|h| {
        if !(h.endpoint.starts_with("http://") || h.endpoint.starts_with("https://")) {
            t.push(
                p,
                "health_check.endpoint",
                format!("`{}` is not an http:// or https:// URL", h.endpoint),
            );
        }
        let env_ok = !h.secret_env.is_empty()
            && h.secret_env
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !env_ok {
            t.push(
                p,
                "health_check.secret_env",
                format!(
                    "`{}` is not an environment variable name (A-Z, 0-9, _): name the variable that holds the signing secret, never the secret itself",
                    h.secret_env
                ),
            );
        }
        let timeout_ms = h.timeout_ms.unwrap_or(DEFAULT_HEALTH_TIMEOUT_MS);
        if !(100..=MAX_HEALTH_TIMEOUT_MS).contains(&timeout_ms) {
            t.push(
                p,
                "health_check.timeout_ms",
                format!("`timeout_ms = {timeout_ms}`: a health endpoint has between 100 and {MAX_HEALTH_TIMEOUT_MS} ms to answer (default {DEFAULT_HEALTH_TIMEOUT_MS})"),
            );
        }
        HealthCheck {
            endpoint: h.endpoint.clone(),
            secret_env: h.secret_env.clone(),
            timeout_ms,
        }
    });
    // The waves an execution of this operation can have at most: one per size, and the
    // last takes the rest.
    let count = waves.len() as u32 + 1;
    let mut pauses = o.pause_after_waves.clone();
    pauses.sort_unstable();
    pauses.dedup();
    for &w in &pauses {
        if w == 0 || w >= count {
            t.push(
                p,
                "pause_after_waves",
                format!(
                    "there is no wave after wave {w}: this operation runs in {count} wave(s), so a pause can follow waves 1 to {}",
                    count.saturating_sub(1)
                ),
            );
        }
    }
    let gates = WaveGates {
        bake,
        health_check,
        pause_after_waves: pauses,
    };
    if gates.any() && count < 2 {
        t.push(
            p,
            "waves",
            "bake, health_check and pause_after_waves act between waves, and this operation runs in one: give it `waves`",
        );
    }
    gates
}
