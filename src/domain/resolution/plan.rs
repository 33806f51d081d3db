//! What a selector asks of the inventory, decided before anything is read: the explicit ID
//! lines (parsed, a repeated ID counted once), the `where` attributes, the `within` scope's
//! kind and the levels below it, and which entities could be targets at all. The loader
//! (`db::resolve`) reads what the plan names; [`super::evaluate`] judges what it read.

use std::collections::{BTreeSet, HashMap};

use super::problems::{kind_desc, plural_desc, Problems};
use crate::domain::schema::{Effect, Kind, Operation, Schema};
use crate::domain::selector::{split_claimed_kind, Selector};
use crate::domain::EntityState;

/// Repeated IDs named one by one in the warnings; the rest are counted.
pub const NAMED_REPEATS: usize = 5;

/// The columns of an entity that resolution reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityFacts {
    pub id: String,
    pub kind: String,
    pub parent_id: Option<String>,
    pub name: String,
    /// The attributes as a JSON object (empty when the loader did not need them).
    pub attrs: String,
    pub state: EntityState,
}

/// One distinct explicit ID: the first line that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdLine<'a> {
    pub line: usize,
    /// The line, trimmed (with its `kind:` prefix, if any).
    pub input: &'a str,
    pub id: &'a str,
}

/// A `within` whose kind is a scope of the operation's kind.
#[derive(Debug)]
pub struct ScopePlan<'a> {
    pub kind: &'a Kind,
    /// The kinds below the scope down to the operation's kind, top-down.
    pub levels: Vec<String>,
    /// The scope's ID lines, trimmed.
    pub lines: Vec<&'a str>,
}

/// A selector read against the schema, before any entity is loaded.
#[derive(Debug)]
pub struct Plan<'a> {
    pub schema: &'a Schema,
    pub op: &'a Operation,
    pub selector: &'a Selector,
    pub target_kind: &'a Kind,
    /// The distinct explicit IDs, sorted by ID.
    pub wanted: Vec<IdLine<'a>>,
    /// Every `where` attribute is one of the target kind's.
    pub filter_ok: bool,
    pub scope: Option<ScopePlan<'a>>,
    pub(crate) problems: Problems,
    pub(crate) warnings: Vec<String>,
}

impl<'a> Plan<'a> {
    pub fn new(schema: &'a Schema, op: &'a Operation, selector: &'a Selector) -> Plan<'a> {
        let target_kind = schema
            .kind(&op.target)
            .expect("validated schema: operation target exists");
        let mut plan = Plan {
            schema,
            op,
            selector,
            target_kind,
            wanted: Vec::with_capacity(selector.ids.len()),
            filter_ok: true,
            scope: None,
            problems: Problems::default(),
            warnings: Vec::new(),
        };
        plan.read_ids();
        plan.read_filter();
        plan.scope = plan.read_scope();
        plan
    }

    /// Explicit lines: empty ones and lines that claim another kind are errors, a repeated
    /// ID is counted once (with a warning).
    fn read_ids(&mut self) {
        let (schema, op, selector) = (self.schema, self.op, self.selector);
        let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(selector.ids.len());
        let mut repeats = 0usize;
        for (i, raw) in selector.ids.iter().enumerate() {
            let line = i + 1;
            let input = raw.trim();
            if input.is_empty() {
                let message = "empty line: expected an ID".into();
                self.problems
                    .push("targets.ids", Some(line), raw, "empty", message);
                continue;
            }
            let (claimed, id) = split_claimed_kind(input);
            let id = match claimed {
                Some(k) if schema.kind(k).is_some() => {
                    if k != op.target {
                        let msg = format!("line says `{k}:`, but {} acts on {}; the ID of {} is never a target of this operation", op.label, plural_desc(self.target_kind), kind_desc(schema, k));
                        self.problems.push_kinds(
                            "targets.ids",
                            Some(line),
                            input,
                            msg,
                            k,
                            &op.target,
                        );
                        continue;
                    }
                    id
                }
                _ => input,
            };
            if let Some(first) = first_line.get(id) {
                repeats += 1;
                if repeats <= NAMED_REPEATS {
                    self.warnings.push(format!(
                        "line {line}: `{id}` repeats line {first} and is counted once"
                    ));
                }
                continue;
            }
            first_line.insert(id, line);
            self.wanted.push(IdLine { line, input, id });
        }
        if repeats > NAMED_REPEATS {
            self.warnings.push(format!(
                "{} more repeated IDs were counted once",
                repeats - NAMED_REPEATS
            ));
        }
        self.wanted.sort_unstable_by(|a, b| a.id.cmp(b.id));
    }

    /// `where` may only name attributes of the target kind.
    fn read_filter(&mut self) {
        let target_kind = self.target_kind;
        for k in self.selector.filter.keys() {
            if target_kind.attributes.contains(k) {
                continue;
            }
            self.filter_ok = false;
            let attrs = if target_kind.attributes.is_empty() {
                "none".to_string()
            } else {
                target_kind.attributes.join(", ")
            };
            self.problems.push(
                &format!("targets.where.{k}"),
                None,
                k,
                "unknown_attribute",
                format!(
                    "{} have no attribute `{k}` (their attributes: {attrs})",
                    target_kind.plural
                ),
            );
        }
    }

    /// `within`: its kind must be a kind above the operation's.
    fn read_scope(&mut self) -> Option<ScopePlan<'a>> {
        let (schema, op) = (self.schema, self.op);
        let within = self.selector.within.as_ref()?;
        let Some(scope_kind) = schema.kind(&within.kind) else {
            self.problems.push(
                "targets.within.kind",
                None,
                &within.kind,
                "unknown_kind",
                format!(
                    "unknown kind `{}` (the schema has: {})",
                    within.kind,
                    schema.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            return None;
        };
        let Some(levels) = schema.descent(&within.kind, &op.target) else {
            let scopes: Vec<String> = schema
                .ancestry(&op.target)
                .iter()
                .skip(1)
                .map(|k| format!("`{}`", k.name))
                .collect();
            let allowed = if scopes.is_empty() {
                format!("{} have no scope kinds", self.target_kind.plural)
            } else {
                format!(
                    "scopes of {} are {}",
                    self.target_kind.plural,
                    scopes.join(", ")
                )
            };
            self.problems.push(
                "targets.within.kind",
                None,
                &within.kind,
                "wrong_scope_kind",
                format!(
                    "{} is not a scope of {}: {allowed}",
                    scope_kind.describe(),
                    plural_desc(self.target_kind)
                ),
            );
            return None;
        };
        if within.ids.is_empty() {
            let message = "a scope needs at least one ID".into();
            self.problems
                .push("targets.within.ids", None, "", "empty", message);
        }
        Some(ScopePlan {
            kind: scope_kind,
            levels,
            lines: within.ids.iter().map(|s| s.trim()).collect(),
        })
    }

    /// Judge the scope lines against the scope entities found (`rows`): the distinct scope
    /// IDs to descend from, in line order. With `problems`, every bad line is an error.
    pub(crate) fn judge_scopes(
        &self,
        rows: &[EntityFacts],
        mut problems: Option<&mut Problems>,
    ) -> Vec<&'a str> {
        let Some(scope) = &self.scope else {
            return Vec::new();
        };
        let found: HashMap<&str, &EntityFacts> = rows.iter().map(|e| (e.id.as_str(), e)).collect();
        let (kind, field) = (scope.kind, "targets.within.ids");
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, id) in scope.lines.iter().copied().enumerate() {
            let line = Some(i + 1);
            let hit = found.get(id);
            if hit.is_some_and(|e| e.kind == kind.name) {
                if seen.insert(id) {
                    out.push(id);
                }
                continue;
            }
            let Some(p) = problems.as_deref_mut() else {
                continue;
            };
            match hit {
                None if kind.matches(id) => p.push(
                    field,
                    line,
                    id,
                    "not_found",
                    format!(
                        "scope `{id}` is not in the inventory: there is no {} with that ID",
                        kind.describe()
                    ),
                ),
                None => p.push(
                    field,
                    line,
                    id,
                    "pattern_mismatch",
                    format!(
                        "scope `{id}` is not a valid {} ID: expected {}",
                        kind.describe(),
                        kind.syntax_hint()
                    ),
                ),
                Some(e) => {
                    let msg = format!(
                        "scope `{id}` is {}, but the scope kind is {}",
                        kind_desc(self.schema, &e.kind),
                        kind.describe()
                    );
                    p.push_kinds(field, line, id, msg, &e.kind, &kind.name);
                }
            }
        }
        out
    }

    /// Could `e` be a target: the operation's kind, in a state its effect acts on? The
    /// loader reads ancestors, descendants, children and retention dates for these.
    pub fn may_target(&self, e: &EntityFacts) -> bool {
        e.kind == self.op.target && self.usable_states().contains(&e.state)
    }

    /// Without `within`, a `where` queries the whole kind (in the database, with a limit).
    pub fn queries_whole_kind(&self) -> bool {
        self.selector.within.is_none() && !self.selector.filter.is_empty() && self.filter_ok
    }

    /// A scope is descended only when its `where` can be applied.
    pub fn descends(&self) -> Option<&ScopePlan<'a>> {
        self.scope.as_ref().filter(|_| self.filter_ok)
    }

    /// A cascading soft delete takes every active descendant of its targets with it.
    pub fn cascades(&self) -> bool {
        self.op.cascade && self.op.effect == Effect::SoftDelete
    }

    /// A destructive operation that does not cascade refuses targets with active children.
    pub fn checks_children(&self) -> bool {
        self.op.effect.is_destructive()
            && !self.op.cascade
            && !self.schema.children_of(&self.op.target).is_empty()
    }

    /// A purge refuses targets still within their retention period.
    pub fn checks_retention(&self) -> bool {
        self.op.effect == Effect::Purge
    }

    /// The states an entity may be in to be a target (see [`state_problem`]).
    pub fn usable_states(&self) -> &'static [EntityState] {
        usable_states(self.op.effect)
    }

    /// The line that names `id` explicitly, if one does.
    pub fn line_of(&self, id: &str) -> Option<usize> {
        self.wanted
            .binary_search_by(|w| w.id.cmp(id))
            .ok()
            .map(|i| self.wanted[i].line)
    }
}

/// Why an entity in `e.state` cannot be a target of `effect`, if it cannot: (code, message).
pub fn state_problem(effect: Effect, e: &EntityFacts) -> Option<(&'static str, String)> {
    if e.state == EntityState::Purged {
        return (effect != Effect::Purge).then(|| {
            (
                "purged",
                format!(
                    "`{}` ({}) was purged permanently; nothing can act on it any more",
                    e.id, e.name
                ),
            )
        });
    }
    if effect.acts_on_deleted() {
        (e.state != EntityState::Deleted).then(|| {
            (
                "not_deleted",
                format!(
                    "`{}` ({}) is not deleted; there is nothing to {}",
                    e.id,
                    e.name,
                    if effect == Effect::Restore {
                        "restore"
                    } else {
                        "purge"
                    }
                ),
            )
        })
    } else {
        (e.state != EntityState::Active).then(|| {
            (
                "already_deleted",
                format!("`{}` ({}) is already deleted", e.id, e.name),
            )
        })
    }
}

/// The states an entity may be in to be a target of `effect`: exactly those for which
/// [`state_problem`] finds none.
pub fn usable_states(effect: Effect) -> &'static [EntityState] {
    match effect {
        Effect::Purge => &[EntityState::Deleted, EntityState::Purged],
        e if e.acts_on_deleted() => &[EntityState::Deleted],
        _ => &[EntityState::Active],
    }
}
