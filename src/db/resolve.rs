//! Resolution: evaluate a selector against the inventory. Every bad input becomes a
//! line-numbered error that names what the ID really is; good inputs become the sorted
//! target list, its blast-radius summary and its fingerprint.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use diesel::QueryResult;

use super::inventory::{self, EntityLite};
use super::DbConn;
use crate::domain::execution::{RestorePoint, RestoreSpec};
use crate::domain::resolution::{
    fingerprint, Resolution, ResolutionError, ResolvedTarget, RootRef, Summary, MAX_STORED_ERRORS,
};
use crate::domain::schema::{Effect, Kind, Operation, Schema};
use crate::domain::selector::{split_claimed_kind, Selector};
use crate::domain::EntityState;

struct Errs {
    list: Vec<ResolutionError>,
}

impl Errs {
    fn push(&mut self, field: &str, line: Option<usize>, input: &str, code: &str, message: String) {
        self.list.push(ResolutionError {
            field: field.into(),
            line,
            input: input.into(),
            code: code.into(),
            message,
            actual_kind: None,
            expected_kind: None,
        });
    }
    fn push_kinds(
        &mut self,
        field: &str,
        line: Option<usize>,
        input: &str,
        message: String,
        actual: &str,
        expected: &str,
    ) {
        self.list.push(ResolutionError {
            field: field.into(),
            line,
            input: input.into(),
            code: "wrong_kind".into(),
            message,
            actual_kind: Some(actual.into()),
            expected_kind: Some(expected.into()),
        });
    }
}

fn kind_desc(schema: &Schema, name: &str) -> String {
    schema
        .kind(name)
        .map(Kind::a_describe)
        .unwrap_or_else(|| name.to_string())
}

fn plural_desc(k: &Kind) -> String {
    format!("{} ({})", k.plural, k.name)
}

fn count_words(n: u64, k: Option<&Kind>, fallback: &str) -> String {
    match k {
        Some(k) if n == 1 => format!("1 {}", k.label),
        Some(k) => format!("{n} {}", k.plural),
        None => format!("{n} {fallback}"),
    }
}

/// Why an entity in `state` cannot be a target of `effect`, if it cannot.
fn state_problem(effect: Effect, e: &EntityLite) -> Option<(&'static str, String)> {
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

/// The states an entity may be in to be a target of `effect` (see [`state_problem`]).
fn usable_states(effect: Effect) -> &'static [EntityState] {
    match effect {
        Effect::Purge => &[EntityState::Deleted, EntityState::Purged],
        e if e.acts_on_deleted() => &[EntityState::Deleted],
        _ => &[EntityState::Active],
    }
}

fn attrs_match(e: &EntityLite, filter: &BTreeMap<String, String>) -> bool {
    if filter.is_empty() {
        return true;
    }
    let attrs: BTreeMap<String, String> = serde_json::from_str(&e.attrs).unwrap_or_default();
    filter.iter().all(|(k, v)| attrs.get(k) == Some(v))
}

/// Resolve `selector` for `op` against the inventory as it is now.
pub fn resolve(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    params: &serde_json::Value,
    selector: &Selector,
) -> QueryResult<Resolution> {
    let started = std::time::Instant::now();
    let lap = |what: &str| {
        tracing::debug!(
            phase = what,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "resolve"
        )
    };
    let mut errs = Errs { list: Vec::new() };
    let mut warnings = Vec::new();
    let target_kind = schema
        .kind(&op.target)
        .expect("validated schema: operation target exists");
    // id -> (entity, explicit line)
    let mut picked: BTreeMap<String, (EntityLite, Option<usize>)> = BTreeMap::new();

    // 1. Explicit IDs.
    let mut first_line: HashMap<&str, usize> = HashMap::with_capacity(selector.ids.len());
    let mut wanted: Vec<(usize, &str, &str)> = Vec::with_capacity(selector.ids.len()); // (line, input, id)
    let mut duplicates = 0usize;
    for (i, raw) in selector.ids.iter().enumerate() {
        let line = i + 1;
        let input = raw.trim();
        if input.is_empty() {
            errs.push(
                "targets.ids",
                Some(line),
                raw,
                "empty",
                "empty line: expected an ID".into(),
            );
            continue;
        }
        let (claimed, id) = split_claimed_kind(input);
        let id = match claimed {
            Some(k) if schema.kind(k).is_some() => {
                if k != op.target {
                    let msg = format!("line says `{k}:`, but {} acts on {}; the ID of {} is never a target of this operation", op.label, plural_desc(target_kind), kind_desc(schema, k));
                    errs.push_kinds("targets.ids", Some(line), input, msg, k, &op.target);
                    continue;
                }
                id
            }
            _ => input,
        };
        if let Some(first) = first_line.get(id) {
            duplicates += 1;
            if duplicates <= 5 {
                warnings.push(format!(
                    "line {line}: `{id}` repeats line {first} and is counted once"
                ));
            }
            continue;
        }
        first_line.insert(id, line);
        wanted.push((line, input, id));
    }
    drop(first_line);
    if duplicates > 5 {
        warnings.push(format!(
            "{} more repeated IDs were counted once",
            duplicates - 5
        ));
    }
    if !wanted.is_empty() {
        let ids: Vec<&str> = wanted.iter().map(|(_, _, id)| *id).collect();
        let mut fetched = inventory::fetch_refs(conn, &ids)?;
        drop(ids);
        lap("fetched explicit ids");
        // Merge-walk the two ID-sorted lists (IDs in `wanted` are distinct).
        fetched.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        wanted.sort_unstable_by(|a, b| a.2.cmp(b.2));
        let mut rows = fetched.into_iter().peekable();
        for (line, input, id) in &wanted {
            let (line, input, id) = (*line, *input, *id);
            while rows.peek().is_some_and(|e| e.id.as_str() < id) {
                rows.next();
            }
            let hit = if rows.peek().is_some_and(|e| e.id == id) {
                rows.next()
            } else {
                None
            };
            match hit {
                Some(e) if e.kind != op.target => {
                    let mut msg = format!(
                        "`{id}` is {}, but {} acts on {}",
                        kind_desc(schema, &e.kind),
                        op.label,
                        plural_desc(target_kind)
                    );
                    if schema.descent(&e.kind, &op.target).is_some() {
                        msg.push_str(&format!(
                            "; {} can only be a scope: to act on the {} inside it, use targets.within with kind `{}`",
                            kind_desc(schema, &e.kind),
                            target_kind.plural,
                            e.kind
                        ));
                    }
                    errs.push_kinds("targets.ids", Some(line), input, msg, &e.kind, &op.target);
                }
                Some(e) => match state_problem(op.effect, &e) {
                    Some((code, msg)) => errs.push("targets.ids", Some(line), input, code, msg),
                    None => {
                        picked.insert(e.id.clone(), (e, Some(line)));
                    }
                },
                None => {
                    if target_kind.matches(id) {
                        errs.push(
                            "targets.ids",
                            Some(line),
                            input,
                            "not_found",
                            format!(
                                "`{id}` is not in the inventory: there is no {} with that ID",
                                target_kind.describe()
                            ),
                        );
                    } else {
                        let mut msg = format!(
                            "`{id}` is not a valid {} ID: expected {}",
                            target_kind.describe(),
                            target_kind.syntax_hint()
                        );
                        let looks: Vec<String> = schema
                            .kinds_matching(id)
                            .iter()
                            .map(|k| k.describe())
                            .collect();
                        if !looks.is_empty() {
                            msg.push_str(&format!(
                                " (it looks like {} ID)",
                                looks
                                    .iter()
                                    .map(|l| format!("{} {l}", crate::domain::schema::article(l)))
                                    .collect::<Vec<_>>()
                                    .join(" or ")
                            ));
                        }
                        errs.push("targets.ids", Some(line), input, "pattern_mismatch", msg);
                    }
                }
            }
        }
    }

    // 2. Scoped query.
    let mut query_excluded = 0u64;
    let mut filter_ok = true;
    for k in selector.filter.keys() {
        if !target_kind.attributes.contains(k) {
            filter_ok = false;
            let attrs = if target_kind.attributes.is_empty() {
                "none".to_string()
            } else {
                target_kind.attributes.join(", ")
            };
            errs.push(
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
    let mut candidates: Option<Vec<EntityLite>> = None;
    // Set when the database counted more matches than it returned.
    let mut matched_total: Option<u64> = None;
    if let Some(within) = &selector.within {
        match schema.kind(&within.kind) {
            None => errs.push(
                "targets.within.kind",
                None,
                &within.kind,
                "unknown_kind",
                format!(
                    "unknown kind `{}` (the schema has: {})",
                    within.kind,
                    schema.kinds.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(scope_kind) => match schema.descent(&within.kind, &op.target) {
                None => {
                    let scopes: Vec<String> = schema
                        .ancestry(&op.target)
                        .iter()
                        .skip(1)
                        .map(|k| format!("`{}`", k.name))
                        .collect();
                    let allowed = if scopes.is_empty() {
                        format!("{} have no scope kinds", target_kind.plural)
                    } else {
                        format!("scopes of {} are {}", target_kind.plural, scopes.join(", "))
                    };
                    errs.push(
                        "targets.within.kind",
                        None,
                        &within.kind,
                        "wrong_scope_kind",
                        format!(
                            "{} is not a scope of {}: {allowed}",
                            scope_kind.describe(),
                            plural_desc(target_kind)
                        ),
                    );
                }
                Some(levels) => {
                    let mut scope_ids: Vec<&str> = Vec::new();
                    let raw: Vec<&str> = within.ids.iter().map(|s| s.trim()).collect();
                    let found: HashMap<String, EntityLite> = inventory::fetch_lite(conn, &raw)?
                        .into_iter()
                        .map(|e| (e.id.clone(), e))
                        .collect();
                    let mut seen = BTreeSet::new();
                    for (i, id) in raw.iter().enumerate() {
                        let line = Some(i + 1);
                        match found.get(*id) {
                            None if scope_kind.matches(id) => errs.push("targets.within.ids", line, id, "not_found", format!("scope `{id}` is not in the inventory: there is no {} with that ID", scope_kind.describe())),
                            None => errs.push("targets.within.ids", line, id, "pattern_mismatch", format!("scope `{id}` is not a valid {} ID: expected {}", scope_kind.describe(), scope_kind.syntax_hint())),
                            Some(e) if e.kind != within.kind => {
                                let msg = format!("scope `{id}` is {}, but the scope kind is {}", kind_desc(schema, &e.kind), scope_kind.describe());
                                errs.push_kinds("targets.within.ids", line, id, msg, &e.kind, &within.kind);
                            }
                            Some(_) => {
                                if seen.insert(*id) {
                                    scope_ids.push(id);
                                }
                            }
                        }
                    }
                    if within.ids.is_empty() {
                        errs.push(
                            "targets.within.ids",
                            None,
                            "",
                            "empty",
                            "a scope needs at least one ID".into(),
                        );
                    }
                    let mut frontier: Vec<String> =
                        scope_ids.iter().map(|s| s.to_string()).collect();
                    let mut level_rows = Vec::new();
                    for (depth, level) in levels.iter().enumerate() {
                        let refs: Vec<&str> = frontier.iter().map(String::as_str).collect();
                        // The last level is the operation's kind: its `where` goes to SQL
                        // (and is checked again below, with the states).
                        level_rows = if depth + 1 == levels.len() && filter_ok {
                            inventory::children_lite_where(conn, &refs, level, &selector.filter)?
                        } else {
                            inventory::children_lite(conn, &refs, level)?
                        };
                        frontier = level_rows.iter().map(|e| e.id.clone()).collect();
                    }
                    candidates = Some(level_rows);
                }
            },
        }
    } else if !selector.filter.is_empty() && filter_ok {
        // The whole kind: the database filters and stops after one more than the limit.
        let m = inventory::matching_of_kind(
            conn,
            &op.target,
            &selector.filter,
            usable_states(op.effect),
            op.max_targets.saturating_add(1),
        )?;
        query_excluded += m.others;
        matched_total = m.total;
        candidates = Some(m.rows);
    }
    if let Some(rows) = candidates {
        if filter_ok {
            for e in rows {
                if !attrs_match(&e, &selector.filter) {
                    continue;
                }
                if state_problem(op.effect, &e).is_some() {
                    query_excluded += 1;
                    continue;
                }
                picked.entry(e.id.clone()).or_insert((e, None));
            }
        }
    }
    if query_excluded > 0 {
        let what = if op.effect.acts_on_deleted() {
            "are not deleted"
        } else {
            "are already deleted"
        };
        warnings.push(format!(
            "{query_excluded} {} matched the query but {what}, and were left out",
            target_kind.plural
        ));
    }
    if selector.is_empty() {
        errs.push(
            "targets",
            None,
            "",
            "empty",
            "name the targets: `ids`, and/or `within` (+ `where`)".into(),
        );
    }

    lap("selected");
    // 3. Ancestry of every target: scope paths, scope counts, roots.
    let mut cache: HashMap<String, (String, Option<String>, String)> = HashMap::new(); // id -> (kind, parent, name)
    let mut missing: BTreeSet<String> = picked
        .values()
        .filter_map(|(e, _)| e.parent_id.clone())
        .collect();
    while !missing.is_empty() {
        let ids: Vec<&str> = missing.iter().map(String::as_str).collect();
        let rows = inventory::fetch_refs(conn, &ids)?;
        let mut next = BTreeSet::new();
        for r in rows {
            if let Some(p) = &r.parent_id {
                if !cache.contains_key(p) {
                    next.insert(p.clone());
                }
            }
            cache.insert(r.id.clone(), (r.kind, r.parent_id, r.name));
        }
        next.retain(|p| !cache.contains_key(p));
        missing = next;
    }
    lap("fetched ancestry");
    // Scope path and root per distinct parent (thousands), not per target (100k).
    struct Place {
        path: String,
        root: String,
    }
    let mut per_scope: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut places: HashMap<&str, Place> = HashMap::new();
    for (e, _) in picked.values() {
        let Some(parent) = e.parent_id.as_deref() else {
            continue;
        };
        let Some((parent_key, _)) = cache.get_key_value(parent) else {
            continue;
        };
        if places.contains_key(parent_key.as_str()) {
            continue;
        }
        let mut chain: Vec<&str> = Vec::new();
        let mut cur = Some(parent);
        while let Some(p) = cur {
            match cache.get_key_value(p) {
                Some((key, (k, up, _))) => {
                    per_scope.entry(k.clone()).or_default().insert(key.as_str());
                    chain.push(key.as_str());
                    cur = up.as_deref();
                }
                None => break,
            }
            if chain.len() > 64 {
                break;
            }
        }
        chain.reverse();
        let root = chain.first().map(|r| r.to_string()).unwrap_or_default();
        places.insert(
            parent_key.as_str(),
            Place {
                path: chain.join("/"),
                root,
            },
        );
    }
    let mut roots: BTreeSet<String> = places.values().map(|p| p.root.clone()).collect();
    let mut targets = Vec::with_capacity(picked.len());
    let mut explicit_line: HashMap<String, usize> = HashMap::new();
    let need_lines =
        (op.effect.is_destructive() && !op.cascade && !schema.children_of(&op.target).is_empty())
            || op.effect == Effect::Purge;
    for (id, (e, line)) in picked {
        let scope_path = match e.parent_id.as_deref().and_then(|p| places.get(p)) {
            Some(place) => place.path.clone(),
            None => {
                roots.insert(id.clone());
                String::new()
            }
        };
        if need_lines {
            if let Some(l) = line {
                explicit_line.insert(id.clone(), l);
            }
        }
        targets.push(ResolvedTarget {
            kind: e.kind,
            id,
            scope_path,
            name: e.name,
        });
    }
    let primary = targets.len() as u64;
    // A cascading delete takes every active descendant with it, in the list both teams sign.
    let mut cascaded: BTreeMap<String, u64> = BTreeMap::new();
    if op.cascade && op.effect == Effect::SoftDelete {
        let mut frontier: Vec<(String, String)> = targets
            .iter()
            .map(|t| (t.id.clone(), join_path(&t.scope_path, &t.id)))
            .collect();
        while !frontier.is_empty() {
            let ids: Vec<&str> = frontier.iter().map(|(id, _)| id.as_str()).collect();
            let paths: HashMap<&str, &str> = frontier
                .iter()
                .map(|(id, p)| (id.as_str(), p.as_str()))
                .collect();
            let mut next = Vec::new();
            for k in inventory::active_children_lite(conn, &ids)? {
                let Some(path) = k.parent_id.as_deref().and_then(|p| paths.get(p)) else {
                    continue;
                };
                *cascaded.entry(k.kind.clone()).or_default() += 1;
                next.push((k.id.clone(), join_path(path, &k.id)));
                targets.push(ResolvedTarget {
                    kind: k.kind,
                    id: k.id,
                    scope_path: path.to_string(),
                    name: k.name,
                });
            }
            frontier = next;
        }
    }
    targets.sort_unstable_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    let per_scope: BTreeMap<String, usize> =
        per_scope.into_iter().map(|(k, v)| (k, v.len())).collect();
    lap("built and sorted targets");

    // 4. Policy checks on the whole list.
    if op.effect.is_destructive()
        && !op.cascade
        && !schema.children_of(&op.target).is_empty()
        && !targets.is_empty()
    {
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        let counts = inventory::active_children_counts(conn, &ids)?;
        let child_words = schema
            .children_of(&op.target)
            .iter()
            .map(|k| k.plural.clone())
            .collect::<Vec<_>>()
            .join(" / ");
        for t in &targets {
            if let Some(n) = counts.get(&t.id) {
                let line = explicit_line.get(&t.id).copied();
                let field = if line.is_some() {
                    "targets.ids"
                } else {
                    "targets.within"
                };
                errs.push(field, line, &t.id, "has_active_children", format!("`{}` ({}) still has {n} active {child_words}; {} does not cascade: remove them first", t.id, t.name, op.label));
            }
        }
    }
    if op.effect == Effect::Purge && !targets.is_empty() {
        // The only irreversible effect: nothing still within its retention period.
        let ids: Vec<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        let t_now = super::now();
        for (id, purge_after) in inventory::not_yet_purgeable(conn, &ids, t_now)? {
            let line = explicit_line.get(&id).copied();
            let field = if line.is_some() {
                "targets.ids"
            } else {
                "targets.within"
            };
            let name = targets
                .binary_search_by(|t| {
                    (t.kind.as_str(), t.id.as_str()).cmp(&(op.target.as_str(), id.as_str()))
                })
                .map(|i| targets[i].name.clone())
                .unwrap_or_default();
            let message = match purge_after {
                Some(p) => format!(
                    "`{id}` ({name}) is still within its retention period: it may be purged after {} — until then it can be restored",
                    p.format("%Y-%m-%d %H:%M UTC")
                ),
                None => format!("`{id}` ({name}) has no retention date (it was not deleted by a change), so it cannot be purged"),
            };
            errs.push(field, line, &id, "within_retention", message);
        }
    }
    if targets.len() as u64 > op.max_targets {
        let n = matched_total.unwrap_or(0).max(targets.len() as u64);
        errs.push("targets", None, "", "too_many_targets", format!("the selection resolves to {n} {}, more than {}'s limit of {}: split the change or raise max_targets in the schema", target_kind.plural, op.label, op.max_targets));
    }
    if targets.is_empty() && errs.list.is_empty() {
        errs.push(
            "targets",
            None,
            "",
            "no_targets",
            format!(
                "the selection matches no {} that {} can act on",
                target_kind.plural, op.label
            ),
        );
    }

    // 5. Summary.
    let chain = schema.ancestry(&op.target);
    let root_kind = chain.last().map(|k| k.name.clone()).unwrap_or_default();
    let mut scopes = BTreeMap::new();
    for k in chain.iter().skip(1) {
        scopes.insert(
            k.name.clone(),
            per_scope.get(&k.name).map(|n| *n as u64).unwrap_or(0),
        );
    }
    let n = primary;
    let mut text = count_words(n, Some(target_kind), "targets");
    for (i, k) in chain.iter().enumerate().skip(1) {
        let c = scopes.get(&k.name).copied().unwrap_or(0);
        text.push_str(if i == 1 { " on " } else { " of " });
        text.push_str(&count_words(c, Some(k), &k.name));
    }
    let verb = match op.effect {
        Effect::SoftDelete => "soft-deleted",
        Effect::Restore => "restored",
        Effect::SetAttributes => "changed",
        Effect::Purge => "purged permanently",
        Effect::Webhook => "sent to the external executor",
    };
    text.push_str(&format!(
        "; {} {verb}",
        count_words(n, Some(target_kind), "targets")
    ));
    if !cascaded.is_empty() {
        let below = cascaded
            .iter()
            .map(|(k, c)| count_words(*c, schema.kind(k), k))
            .collect::<Vec<_>>()
            .join(" and ");
        text.push_str(&format!(" with the {below} below them (cascade)"));
    }
    if let Some(parent) = chain.get(1) {
        text.push_str(&format!(", 0 {} {verb}", parent.plural));
    }
    let sample_roots = roots
        .iter()
        .take(10)
        .map(|r| RootRef {
            id: r.clone(),
            name: cache
                .get(r)
                .map(|c| c.2.clone())
                .or_else(|| targets.iter().find(|t| &t.id == r).map(|t| t.name.clone()))
                .unwrap_or_default(),
        })
        .collect();
    let summary = Summary {
        targets: targets.len() as u64,
        cascaded,
        target_kind: op.target.clone(),
        scopes,
        root_kind,
        roots: roots.len() as u64,
        sample_roots,
        text,
        warnings,
    };

    let mut errors = errs.list;
    errors.sort_by(|a, b| (a.field.as_str(), a.line).cmp(&(b.field.as_str(), b.line)));
    let error_count = errors.len() as u64;
    errors.truncate(MAX_STORED_ERRORS);
    let fp = fingerprint(&schema.hash, &op.name, params, &targets);
    lap("fingerprinted");
    Ok(Resolution {
        targets,
        summary,
        errors,
        error_count,
        fingerprint: fp,
    })
}

/// Resolve a rollback: exactly the targets the original execution changed, as long as
/// they are still in the state that execution left them in (anything restored or changed
/// since is left out, with a warning, so the fingerprint shows it).
pub fn resolve_rollback(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    original_change: i64,
    execution_id: i64,
    inverse: Effect,
) -> QueryResult<Resolution> {
    let positions = super::exec::done_positions(conn, execution_id)?;
    let rows = super::exec::targets_at(conn, original_change, &positions)?;
    let ids: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let ents = super::exec::entities_by_id(conn, &ids)?;
    let mut targets = Vec::with_capacity(rows.len());
    let mut gone = 0u64;
    let mut moved = 0u64;
    for (_, kind, id, scope_path, name) in &rows {
        let ok = match ents.get(id) {
            None => {
                gone += 1;
                false
            }
            Some(e) => match inverse {
                Effect::Restore => {
                    e.state == EntityState::Deleted && e.deleted_by == Some(original_change)
                }
                _ => e.state == EntityState::Active,
            },
        };
        if ok {
            targets.push(ResolvedTarget {
                kind: kind.clone(),
                id: id.clone(),
                scope_path: scope_path.clone(),
                name: name.clone(),
            });
        } else if ents.contains_key(id) {
            moved += 1;
        }
    }
    targets.sort_unstable_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    let mut warnings = Vec::new();
    if moved > 0 {
        warnings.push(format!("{moved} of the {} targets the original execution changed are no longer as it left them (restored or changed since) and are left out", rows.len()));
    }
    if gone > 0 {
        warnings.push(format!("{gone} targets are no longer in the inventory"));
    }
    let summary = summarize(schema, &op.target, &targets, inverse, warnings);
    let params = rollback_params(original_change);
    let fp = fingerprint(
        &schema.hash,
        &rollback_operation(&op.name),
        &params,
        &targets,
    );
    let errors = if targets.is_empty() {
        vec![ResolutionError {
            field: "targets".into(),
            line: None,
            input: String::new(),
            code: "no_targets".into(),
            message: "nothing left to roll back: every target is already back or gone".into(),
            actual_kind: None,
            expected_kind: None,
        }]
    } else {
        vec![]
    };
    Ok(Resolution {
        error_count: errors.len() as u64,
        targets,
        summary,
        errors,
        fingerprint: fp,
    })
}

/// The operation name a rollback's fingerprint is computed with.
fn join_path(scope: &str, id: &str) -> String {
    if scope.is_empty() {
        id.to_string()
    } else {
        format!("{scope}/{id}")
    }
}

/// Resolve a bulk restore: the named entities and everything the named changes touched,
/// back to the state they had at `point`. Entities already as they were, or that were not
/// active at the point, are left out with a warning; unknown, purged and wrong-kind IDs are
/// errors with their line in `entities`.
pub fn resolve_restore(
    conn: &mut DbConn,
    schema: &Schema,
    op: &Operation,
    spec: &RestoreSpec,
    point: &RestorePoint,
) -> QueryResult<Resolution> {
    let mut errs = Errs { list: Vec::new() };
    let mut candidates: BTreeMap<String, Option<usize>> = BTreeMap::new();
    for (i, raw) in spec.entities.iter().enumerate() {
        let id = raw.trim();
        if !id.is_empty() {
            candidates.entry(id.to_string()).or_insert(Some(i + 1));
        }
    }
    if !spec.changes.is_empty() {
        for id in super::exec::touched_by(conn, &spec.changes)? {
            candidates.entry(id).or_insert(None);
        }
    }
    // The operation's kind and everything below it.
    let mut allowed: BTreeSet<&str> = BTreeSet::new();
    let mut frontier = vec![op.target.as_str()];
    while let Some(k) = frontier.pop() {
        if allowed.insert(k) {
            frontier.extend(schema.children_of(k).iter().map(|c| c.name.as_str()));
        }
    }
    let target_kind = schema.kind(&op.target);
    let ids: Vec<&str> = candidates.keys().map(String::as_str).collect();
    let ents = super::exec::entities_by_id(conn, &ids)?;
    let states = super::exec::state_at(conn, &ents, point)?;
    let (mut unchanged, mut not_active) = (0u64, 0u64);
    let mut picked = Vec::new();
    for (id, line) in &candidates {
        let field = "entities";
        let Some(e) = ents.get(id) else {
            errs.push(
                field,
                *line,
                id,
                "not_found",
                format!("`{id}` is not in the inventory"),
            );
            continue;
        };
        if !allowed.contains(e.kind.as_str()) {
            errs.push_kinds(
                field,
                *line,
                id,
                format!(
                    "`{id}` is {}; {} restores {} and what is below them",
                    kind_desc(schema, &e.kind),
                    op.label,
                    target_kind
                        .map(plural_desc)
                        .unwrap_or_else(|| op.target.clone())
                ),
                &e.kind,
                &op.target,
            );
            continue;
        }
        if e.state == EntityState::Purged {
            errs.push(
                field,
                *line,
                id,
                "purged",
                format!(
                    "`{id}` ({}) was purged permanently and cannot be restored",
                    e.name
                ),
            );
            continue;
        }
        let (state, attrs) = states
            .get(id)
            .map(|(s, a)| (*s, a.as_str()))
            .unwrap_or((e.state, e.attrs.as_str()));
        if state != EntityState::Active {
            not_active += 1;
        } else if e.state == EntityState::Active && e.attrs == attrs {
            unchanged += 1;
        } else {
            picked.push(e);
        }
    }
    let parents: BTreeSet<&str> = picked
        .iter()
        .filter_map(|e| e.parent_id.as_deref())
        .collect();
    let paths = scope_paths(conn, parents)?;
    let mut targets: Vec<ResolvedTarget> = picked
        .into_iter()
        .map(|e| ResolvedTarget {
            kind: e.kind.clone(),
            id: e.id.clone(),
            scope_path: e
                .parent_id
                .as_deref()
                .and_then(|p| paths.get(p).cloned())
                .unwrap_or_default(),
            name: e.name.clone(),
        })
        .collect();
    targets.sort_unstable_by(|a, b| (&a.kind, &a.id).cmp(&(&b.kind, &b.id)));
    let mut warnings = Vec::new();
    if unchanged > 0 {
        warnings.push(format!(
            "{unchanged} entities are already as they were at that point and are left out"
        ));
    }
    if not_active > 0 {
        warnings.push(format!(
            "{not_active} entities were not active at that point and are left out"
        ));
    }
    if targets.len() as u64 > op.max_targets {
        errs.push("entities", None, "", "too_many_targets", format!("the restore covers {} entities, more than {}'s limit of {}: split it or raise max_targets in the schema", targets.len(), op.label, op.max_targets));
    }
    if targets.is_empty() && errs.list.is_empty() {
        errs.push(
            "entities",
            None,
            "",
            "no_targets",
            "nothing to restore: every entity named is already as it was at that point".into(),
        );
    }
    let summary = summarize(schema, &op.target, &targets, Effect::Restore, warnings);
    let fp = fingerprint(
        &schema.hash,
        &restore_operation(&op.name),
        &spec.selector(),
        &targets,
    );
    let mut errors = errs.list;
    errors.sort_by(|a, b| (a.line, &a.input).cmp(&(b.line, &b.input)));
    let error_count = errors.len() as u64;
    errors.truncate(MAX_STORED_ERRORS);
    Ok(Resolution {
        targets,
        summary,
        errors,
        error_count,
        fingerprint: fp,
    })
}

/// Root-first scope paths (`org/site`) of the given parent entities.
fn scope_paths(conn: &mut DbConn, parents: BTreeSet<&str>) -> QueryResult<HashMap<String, String>> {
    let mut up: HashMap<String, Option<String>> = HashMap::new();
    let mut missing: Vec<String> = parents.iter().map(|p| p.to_string()).collect();
    while !missing.is_empty() {
        let ids: Vec<&str> = missing.iter().map(String::as_str).collect();
        let mut next = Vec::new();
        for r in inventory::fetch_refs(conn, &ids)? {
            if let Some(p) = &r.parent_id {
                if !up.contains_key(p) {
                    next.push(p.clone());
                }
            }
            up.insert(r.id, r.parent_id);
        }
        next.retain(|p| !up.contains_key(p));
        next.sort();
        next.dedup();
        missing = next;
    }
    let mut out = HashMap::new();
    for p in parents {
        let mut chain = vec![p];
        let mut cur = up.get(p).and_then(|x| x.as_deref());
        while let Some(c) = cur {
            if chain.len() > 64 {
                break;
            }
            chain.push(c);
            cur = up.get(c).and_then(|x| x.as_deref());
        }
        chain.reverse();
        out.insert(p.to_string(), chain.join("/"));
    }
    Ok(out)
}

/// The operation name a bulk restore's fingerprint is computed with.
pub fn restore_operation(op: &str) -> String {
    format!("restore:{op}")
}

pub fn rollback_operation(op: &str) -> String {
    format!("rollback:{op}")
}

/// The parameters a rollback's fingerprint is computed with.
pub fn rollback_params(original_change: i64) -> serde_json::Value {
    serde_json::json!({"rollback_of": original_change})
}

/// A blast-radius summary from stored scope paths (root first, `/`-separated).
fn summarize(
    schema: &Schema,
    target_kind: &str,
    targets: &[ResolvedTarget],
    effect: Effect,
    warnings: Vec<String>,
) -> Summary {
    let chain = schema.ancestry(target_kind);
    let root_kind = chain.last().map(|k| k.name.clone()).unwrap_or_default();
    let mut per_level: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut roots: BTreeSet<&str> = BTreeSet::new();
    for t in targets {
        let kinds = schema.ancestry(&t.kind);
        let segs: Vec<&str> = t.scope_path.split('/').filter(|s| !s.is_empty()).collect();
        // segs[0] is the root; kinds[1..] reversed are the scope kinds, root first.
        let scope_kinds: Vec<&Kind> = kinds.iter().skip(1).rev().copied().collect();
        for (seg, k) in segs.iter().zip(scope_kinds.iter()) {
            per_level.entry(k.name.clone()).or_default().insert(seg);
        }
        roots.insert(segs.first().copied().unwrap_or(t.id.as_str()));
    }
    let mut scopes = BTreeMap::new();
    for k in chain.iter().skip(1) {
        scopes.insert(
            k.name.clone(),
            per_level.get(&k.name).map(|s| s.len() as u64).unwrap_or(0),
        );
    }
    // Descendants of a cascaded original are counted apart from the operation's own kind.
    let mut cascaded: BTreeMap<String, u64> = BTreeMap::new();
    for t in targets.iter().filter(|t| t.kind != target_kind) {
        *cascaded.entry(t.kind.clone()).or_default() += 1;
    }
    let n = targets.len() as u64 - cascaded.values().sum::<u64>();
    let target = schema.kind(target_kind);
    let mut text = count_words(n, target, "targets");
    for (i, k) in chain.iter().enumerate().skip(1) {
        text.push_str(if i == 1 { " on " } else { " of " });
        text.push_str(&count_words(scopes[&k.name], Some(k), &k.name));
    }
    if !cascaded.is_empty() {
        let below = cascaded
            .iter()
            .map(|(k, c)| count_words(*c, schema.kind(k), k))
            .collect::<Vec<_>>()
            .join(" and ");
        text.push_str(&format!(" with the {below} below them"));
    }
    let verb = match effect {
        Effect::SoftDelete => "soft-deleted",
        Effect::Restore => "restored",
        Effect::SetAttributes => "set back to their previous values",
        Effect::Purge => "purged permanently",
        Effect::Webhook => "sent to the external executor",
    };
    text.push_str(&format!("; {} {verb}", count_words(n, target, "targets")));
    Summary {
        targets: targets.len() as u64,
        cascaded,
        target_kind: target_kind.to_string(),
        scopes,
        root_kind,
        roots: roots.len() as u64,
        sample_roots: roots
            .iter()
            .take(10)
            .map(|r| RootRef {
                id: r.to_string(),
                name: String::new(),
            })
            .collect(),
        text,
        warnings,
    }
}
