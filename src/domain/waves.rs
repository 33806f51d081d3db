//! How a signed target list is cut into waves: an operation's wave policy (counts or
//! percentages) and the plan it gives for a number of targets. Used by the schema (the
//! policy it declares) and by execution (the plan it runs); below both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One wave of an operation's policy: a number of targets or a percentage of the total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WaveSize {
    Count(u64),
    Percent(f64),
}

impl WaveSize {
    /// Parse `5`, `"5"` or `"10%"`.
    pub fn parse(s: &str) -> Result<WaveSize, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` is not a percentage"))?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(format!(
                    "`{s}`: a percentage must be above 0 and at most 100"
                ));
            }
            return Ok(WaveSize::Percent(v));
        }
        match s.parse::<u64>() {
            Ok(0) => Err("a wave needs at least 1 target".into()),
            Ok(n) => Ok(WaveSize::Count(n)),
            Err(_) => Err(format!(
                "`{s}` is neither a number of targets nor a percentage like `10%`"
            )),
        }
    }

    fn of(self, total: u64) -> u64 {
        match self {
            WaveSize::Count(n) => n,
            WaveSize::Percent(p) => ((total as f64) * p / 100.0).ceil() as u64,
        }
    }
}

impl Serialize for WaveSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for WaveSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaveSize::Count(n) => write!(f, "{n}"),
            WaveSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The default policy: 1 target (a canary), then 10 %, then the rest.
pub fn default_waves() -> Vec<WaveSize> {
    vec![WaveSize::Count(1), WaveSize::Percent(10.0)]
}

/// A planned wave: positions `start..end` of the sorted target list (1-based `number`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub number: u32,
    pub start: u64,
    pub end: u64,
}

impl Wave {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Cut `total` targets into waves: each policy entry in turn, the last wave takes the
/// rest. Empty waves are dropped, so a 1-target change runs in one wave.
pub fn plan_waves(total: u64, sizes: &[WaveSize]) -> Vec<Wave> {
    let mut out = Vec::new();
    let mut start = 0;
    for s in sizes {
        if start >= total {
            break;
        }
        let n = s.of(total).max(1).min(total - start);
        out.push(Wave {
            number: out.len() as u32 + 1,
            start,
            end: start + n,
        });
        start += n;
    }
    if start < total {
        out.push(Wave {
            number: out.len() as u32 + 1,
            start,
            end: total,
        });
    }
    out
}
