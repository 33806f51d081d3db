//! What happens between an operation's waves (issue #13): a bake time the execution waits
//! after each wave, a health check that must answer `{"healthy": true}` before the next
//! wave starts, and manual gates (`pause_after_waves`) an implementer continues.

use std::fmt;

use serde::Serialize;

/// The controls between waves (`bake`, `health_check`, `pause_after_waves`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WaveGates {
    /// How long the execution waits after each wave before the next (`bake = "10m"`).
    pub bake: Option<BakeTime>,
    /// Asked after each wave's bake; anything but `{"healthy": true}` halts the execution.
    pub health_check: Option<HealthCheck>,
    /// Waves after which an implementer must continue the execution by hand (1-based).
    pub pause_after_waves: Vec<u32>,
}

impl WaveGates {
    /// Does anything stand between two waves?
    pub fn any(&self) -> bool {
        self.bake.is_some() || self.health_check.is_some() || !self.pause_after_waves.is_empty()
    }

    /// Does the execution wait for a person after wave `wave` (1-based)?
    pub fn pauses_after(&self, wave: u32) -> bool {
        self.pause_after_waves.contains(&wave)
    }
}

/// The health endpoint asked between waves. The secret is never in the schema:
/// `secret_env` names the environment variable that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub endpoint: String,
    pub secret_env: String,
    pub timeout_ms: u64,
}

/// Default time a health endpoint has to answer.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 5000;

/// A bake time: a whole number of seconds, minutes or hours, from 1 second to 24 hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct BakeTime {
    count: u32,
    unit: char,
}

/// The longest bake (a day): longer waits belong in the change's window, not between waves.
pub const MAX_BAKE_SECONDS: i64 = 24 * 3600;

impl BakeTime {
    /// `"30s"`, `"10m"`, `"2h"`; anything else is refused with what is expected.
    pub fn parse(text: &str) -> Result<BakeTime, String> {
        let t = text.trim();
        let expected =
            "expected a whole number of seconds, minutes or hours such as \"30s\", \"10m\" or \"2h\"";
        let Some((i, unit)) = t.char_indices().last() else {
            return Err(format!("`{t}` is not a duration: {expected}"));
        };
        let digits = &t[..i];
        if !matches!(unit, 's' | 'm' | 'h')
            || digits.is_empty()
            || !digits.chars().all(|c| c.is_ascii_digit())
        {
            return Err(format!("`{t}` is not a duration: {expected}"));
        }
        let too_long = || format!("`{t}` is longer than a day, the longest bake");
        let count: u32 = digits.parse().map_err(|_| too_long())?;
        let b = BakeTime { count, unit };
        if count == 0 {
            return Err(format!(
                "`{t}` is no wait: leave `bake` out for none, or give at least \"1s\""
            ));
        }
        if b.seconds() > MAX_BAKE_SECONDS {
            return Err(too_long());
        }
        Ok(b)
    }

    pub fn seconds(self) -> i64 {
        let per = match self.unit {
            's' => 1,
            'm' => 60,
            _ => 3600,
        };
        i64::from(self.count) * per
    }

    pub fn duration(self) -> chrono::Duration {
        chrono::Duration::seconds(self.seconds())
    }
}

impl fmt::Display for BakeTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            's' => "second",
            'm' => "minute",
            _ => "hour",
        };
        let s = if self.count == 1 { "" } else { "s" };
        write!(f, "{} {unit}{s}", self.count)
    }
}

impl From<BakeTime> for String {
    fn from(b: BakeTime) -> String {
        b.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schema::{Schema, EXAMPLE_SCHEMA};

    #[test]
    fn the_schema_checks_what_stands_between_waves() {
        let bad = format!(
        "{EXAMPLE_SCHEMA}\n\n[operations.gated]\nlabel = \"G\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nwaves = [1]\nbake = \"3d\"\npause_after_waves = [2]\nhealth_check = {{ endpoint = \"ftp://x\", secret_env = \"lower\", timeout_ms = 10 }}\n"
    );
        let e = Schema::from_toml(&bad).unwrap_err().to_string();
        for want in [
            "operations.gated.bake",
            "not a duration",
            "there is no wave after wave 2",
            "`ftp://x` is not an http:// or https:// URL",
            "`lower` is not an environment variable name",
            "between 100 and 60000 ms",
        ] {
            assert!(e.contains(want), "{want:?} missing in {e}");
        }
        let one_wave = format!(
        "{EXAMPLE_SCHEMA}\n\n[operations.gated]\nlabel = \"G\"\ntarget = \"app_install\"\neffect = \"soft_delete\"\nimplemented_by = \"platform-ops\"\nwaves = []\nbake = \"1m\"\n"
    );
        let e = Schema::from_toml(&one_wave).unwrap_err().to_string();
        assert!(e.contains("this operation runs in one"), "{e}");
    }

    #[test]
    fn bake_times_parse_and_refuse() {
        assert_eq!(BakeTime::parse("10m").unwrap().seconds(), 600);
        assert_eq!(BakeTime::parse(" 30s ").unwrap().to_string(), "30 seconds");
        assert_eq!(BakeTime::parse("1h").unwrap().to_string(), "1 hour");
        assert_eq!(BakeTime::parse("24h").unwrap().seconds(), MAX_BAKE_SECONDS);
        for bad in [
            "",
            "10",
            "m",
            "0s",
            "-1m",
            "1.5m",
            "10 m",
            "3d",
            "25h",
            "99999999999s",
        ] {
            assert!(BakeTime::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(BakeTime::parse("0m")
            .unwrap_err()
            .contains("leave `bake` out"));
        assert!(BakeTime::parse("2000m")
            .unwrap_err()
            .contains("longer than a day"));
    }

    #[test]
    fn gates_say_when_they_pause() {
        let g = WaveGates {
            pause_after_waves: vec![1, 3],
            ..WaveGates::default()
        };
        assert!(g.any());
        assert!(g.pauses_after(1) && !g.pauses_after(2) && g.pauses_after(3));
        assert!(!WaveGates::default().any());
    }
}
