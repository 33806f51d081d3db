//! The drift check before each wave (issue #13): a wave's targets run only when each is
//! still what both teams signed — in a state the effect acts on, under the same scope
//! path, and not changed by anyone else since the change was approved. Pure: the runner
//! reads the facts (`db::exec::drift`) and this decides, target by target, in words.

use std::collections::HashMap;

use super::entity::EntityState;
use super::resolution::scope;

/// Most drifted targets named in a halt reason (all are kept on their items).
pub const NAMED_IN_REASON: usize = 5;

/// One target of the wave, as signed.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    pub position: i64,
    pub kind: &'a str,
    pub id: &'a str,
    pub scope_path: &'a str,
}

/// An entity as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now {
    pub kind: String,
    pub parent_id: Option<String>,
    pub state: EntityState,
}

/// The first change someone else made to an entity since the approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub version: i64,
    pub at: chrono::NaiveDateTime,
    /// "an import", "CHG-12".
    pub by: String,
    /// What differs: "name", "attributes", "parent", "state".
    pub what: Vec<&'static str>,
}

/// A target that must not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub position: i64,
    pub id: String,
    pub why: String,
}

/// Every target of `signed` that drifted. `entities` holds the targets and every entity
/// named in their scope paths; `changed` the targets someone else changed since approval;
/// `usable`: the states the execution's effect acts on (empty: any, as for a restore to a
/// point in time, which may also take active entities back).
pub fn check(
    signed: &[Signed<'_>],
    entities: &HashMap<String, Now>,
    changed: &HashMap<String, Changed>,
    usable: &[EntityState],
) -> Vec<Drift> {
    let mut out = Vec::new();
    for t in signed {
        if let Some(why) = why(t, entities, changed, usable) {
            out.push(Drift {
                position: t.position,
                id: t.id.to_string(),
                why,
            });
        }
    }
    out
}

fn why(
    t: &Signed<'_>,
    entities: &HashMap<String, Now>,
    changed: &HashMap<String, Changed>,
    usable: &[EntityState],
) -> Option<String> {
    let Some(now) = entities.get(t.id) else {
        return Some(format!("{} {} is no longer in the inventory", t.kind, t.id));
    };
    if !usable.is_empty() && !usable.contains(&now.state) {
        return Some(format!(
            "{} {} is {} now; it was {} when signed",
            t.kind,
            t.id,
            now.state,
            usable
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    // The scope path, link by link: the target's parent, then each ancestor's.
    let path: Vec<&str> = scope::segments(t.scope_path).collect();
    let mut child = t.id;
    let mut child_now = now;
    for expected in path
        .iter()
        .rev()
        .map(|s| Some(*s))
        .chain(std::iter::once(None))
    {
        if child_now.parent_id.as_deref() != expected {
            if expected.is_none() && child != t.id {
                // The top of the signed path gained a parent: not a move out of scope.
                break;
            }
            return Some(format!(
                "{} {} moved out of its signed scope: {} is now under {}, it was under {}",
                t.kind,
                t.id,
                child,
                child_now.parent_id.as_deref().unwrap_or("nothing"),
                expected.unwrap_or("nothing")
            ));
        }
        let Some(parent) = expected else { break };
        let Some(p) = entities.get(parent) else {
            return Some(format!(
                "{} {}: its ancestor {parent} is no longer in the inventory",
                t.kind, t.id
            ));
        };
        child = parent;
        child_now = p;
    }
    if let Some(c) = changed.get(t.id) {
        return Some(format!(
            "{} {} changed since it was signed: {} by {} at {} UTC (version {})",
            t.kind,
            t.id,
            c.what.join(", "),
            c.by,
            c.at.format("%Y-%m-%d %H:%M:%S"),
            c.version
        ));
    }
    None
}

/// The halt reason: how many of how many checked, the first few named, what the
/// implementers may do.
pub fn reason(wave: u32, waves: usize, first: &[Drift], drifted: usize, checked: usize) -> String {
    let named: Vec<&str> = first
        .iter()
        .take(NAMED_IN_REASON)
        .map(|d| d.why.as_str())
        .collect();
    let more = drifted.saturating_sub(named.len());
    format!(
        "drift before wave {wave} of {waves}: {drifted} of {checked} target(s) are no longer what was signed ({}{}); they were not run. Skip them (skip-drifted) and resume, or abort",
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(kind: &str, parent: Option<&str>, state: EntityState) -> Now {
        Now {
            kind: kind.into(),
            parent_id: parent.map(Into::into),
            state,
        }
    }

    fn inventory() -> HashMap<String, Now> {
        use EntityState::Active;
        [
            ("org-1", now("org", None, Active)),
            ("org-2", now("org", None, Active)),
            ("site-1", now("site", Some("org-1"), Active)),
            ("site-2", now("site", Some("org-2"), Active)),
            ("app-1", now("app", Some("site-1"), Active)),
            ("app-2", now("app", Some("site-2"), Active)),
            ("app-3", now("app", Some("site-1"), EntityState::Deleted)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn t<'a>(position: i64, id: &'a str, path: &'a str) -> Signed<'a> {
        Signed {
            position,
            kind: "app",
            id,
            scope_path: path,
        }
    }

    #[test]
    fn unchanged_targets_pass() {
        let d = check(
            &[t(0, "app-1", "org-1/site-1"), t(1, "app-2", "org-2/site-2")],
            &inventory(),
            &HashMap::new(),
            &[EntityState::Active],
        );
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn deleted_missing_moved_and_changed_targets_drift() {
        let mut changed = HashMap::new();
        changed.insert(
            "app-2".to_string(),
            Changed {
                version: 4,
                at: chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
                    .unwrap()
                    .and_hms_opt(10, 0, 0)
                    .unwrap(),
                by: "an import".into(),
                what: vec!["attributes"],
            },
        );
        let signed = [
            t(0, "app-3", "org-1/site-1"),
            t(1, "app-9", "org-1/site-1"),
            // Signed under site-2 of org-1; site-2 is under org-2 now.
            t(2, "app-2", "org-1/site-2"),
            // Signed under site-2; app-1 is under site-1 now.
            t(3, "app-1", "org-2/site-2"),
        ];
        let d = check(&signed, &inventory(), &changed, &[EntityState::Active]);
        let whys: Vec<&str> = d.iter().map(|d| d.why.as_str()).collect();
        assert_eq!(d.len(), 4, "{whys:?}");
        assert!(whys[0].contains("app-3 is deleted now; it was active"));
        assert!(whys[1].contains("app-9 is no longer in the inventory"));
        assert!(
            whys[2].contains("site-2 is now under org-2, it was under org-1"),
            "{}",
            whys[2]
        );
        assert!(whys[3].contains("app-1 is now under site-1, it was under site-2"));
        // A move is named before a change of the same target.
        let only_changed = check(
            &[t(1, "app-2", "org-2/site-2")],
            &inventory(),
            &changed,
            &[EntityState::Active],
        );
        assert_eq!(only_changed.len(), 1);
        assert!(only_changed[0]
            .why
            .contains("changed since it was signed: attributes by an import"));
    }

    #[test]
    fn a_restore_acts_on_deleted_targets() {
        let d = check(
            &[t(0, "app-3", "org-1/site-1"), t(1, "app-1", "org-1/site-1")],
            &inventory(),
            &HashMap::new(),
            &[EntityState::Deleted],
        );
        assert_eq!(d.len(), 1);
        assert!(d[0].why.contains("app-1 is active now; it was deleted"));
    }

    #[test]
    fn the_reason_names_the_first_few() {
        let drifted: Vec<Drift> = (0..8)
            .map(|i| Drift {
                position: i,
                id: format!("app-{i}"),
                why: format!("app app-{i} is deleted now"),
            })
            .collect();
        let r = reason(2, 3, &drifted, 8, 100);
        assert!(r.starts_with("drift before wave 2 of 3: 8 of 100 target(s)"));
        assert!(r.contains("app app-4 is deleted now; and 3 more"));
        assert!(!r.contains("app-5 is"));
    }
}
