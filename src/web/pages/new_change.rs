//! The new-change form: preview (a resolution that stores nothing), create, create and submit; every problem shown on the re-rendered form.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::change::TargetRow;
use super::{html, layout, see_other, Layout, PageResult};
use crate::domain::resolution::{short_fingerprint, Resolution, ResolutionError};
use crate::domain::selector::{Scope, Selector};
use crate::error::{AppError, ErrorCode};
use crate::service::changes::{self as svc, CreateChange};
use crate::service::views::number;
use crate::service::CurrentUser;
use crate::web::session::WebUser;
use crate::web::{run_as, with_conn, State};

// ---- new change -----------------------------------------------------------------------

pub struct OpChoice {
    pub name: String,
    pub label: String,
    pub explain: String,
    pub selected: bool,
    /// For the live check in app.js: the target kind's label and full-match ID syntax.
    pub kind_label: String,
    pub pattern: String,
}

#[derive(Template)]
#[template(path = "new_change.html")]
pub(crate) struct NewChangePage {
    pub(crate) l: Layout,
    pub(crate) ops: Vec<OpChoice>,
    pub(crate) teams: Vec<(String, bool)>,
    pub(crate) f: ChangeForm,
    pub(crate) scope_kinds: Vec<(String, String, bool)>,
    pub(crate) errors: Vec<ResolutionError>,
    /// All problems (`errors` holds the first ones).
    pub(crate) error_count: u64,
    pub(crate) truncated: bool,
    /// Editing this change (`CHG-n`) instead of requesting a new one.
    pub(crate) editing: Option<String>,
    pub(crate) problems: Vec<String>,
    pub(crate) preview: Option<Preview>,
}

pub struct Preview {
    pub text: String,
    pub targets: u64,
    pub roots: u64,
    pub per_kind: Vec<(String, u64)>,
    pub sample_roots: Vec<(String, String)>,
    /// The first targets, each with what would happen to it.
    pub first: Vec<TargetRow>,
    pub warnings: Vec<String>,
    /// The population guards' outcomes, with their numbers.
    pub guards: Vec<crate::domain::resolution::GuardCheck>,
    /// The risk tier whose sign-off policy the change would need.
    pub tier: Option<String>,
    /// "sign-offs expire 72 hours after they are given", when they do.
    pub expiry: Option<String>,
    /// What one more change could undo.
    pub undo: Option<crate::domain::resolution::UndoPlan>,
    /// The budget the change would draw from, its state now and whether the change fits.
    pub budget: Option<(bool, String)>,
    /// The freezes the chosen window overlaps, in words.
    pub freezes: Vec<String>,
    pub fingerprint: String,
}

#[derive(Deserialize, Default, Clone)]
pub struct ChangeForm {
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub requesting_team: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub rationale: String,
    #[serde(default)]
    pub ids: String,
    #[serde(default)]
    pub scope_kind: String,
    #[serde(default)]
    pub scope_ids: String,
    #[serde(default, rename = "where")]
    pub filter: String,
    #[serde(default)]
    pub params: String,
    #[serde(default)]
    pub not_before: String,
    #[serde(default)]
    pub not_after: String,
    #[serde(default)]
    pub expect_targets: String,
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub action: String,
}

pub(crate) fn lines(s: &str) -> Vec<String> {
    s.lines().map(|l| l.trim().to_string()).collect::<Vec<_>>()
}

/// The form's fields as a service request; problems are messages for the form. Public for
/// the fuzz target (`countersign::fuzzing::new_change_form`), which decodes the body as
/// `web::Form` does and then runs this.
pub fn to_request(f: &ChangeForm) -> Result<CreateChange, Vec<String>> {
    let mut problems = Vec::new();
    // Keep blank lines out but line numbers right: the resolver counts lines of `ids`.
    let mut ids = lines(&f.ids);
    while ids.last().is_some_and(String::is_empty) {
        ids.pop();
    }
    let scope_ids: Vec<String> = lines(&f.scope_ids)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    let mut filter = BTreeMap::new();
    for (i, l) in f.filter.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        match l.split_once('=') {
            Some((k, v)) => {
                filter.insert(k.trim().to_string(), v.trim().to_string());
            }
            None => problems.push(format!(
                "Attribute filter line {}: `{l}` is not `name = value`",
                i + 1
            )),
        }
    }
    let mut params = serde_json::Map::new();
    for (i, l) in f.params.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        match l.split_once('=') {
            Some((k, v)) => {
                params.insert(k.trim().into(), serde_json::Value::String(v.trim().into()));
            }
            None => problems.push(format!(
                "Parameter line {}: `{l}` is not `name = value`",
                i + 1
            )),
        }
    }
    let time = |label: &str, s: &str, problems: &mut Vec<String>| {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        match chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
            Ok(t) => Some(t.and_utc()),
            Err(_) => {
                problems.push(format!("{label}: `{s}` is not a date and time"));
                None
            }
        }
    };
    let not_before = time("Not before", &f.not_before, &mut problems);
    let not_after = time("Not after", &f.not_after, &mut problems);
    let expect = match f.expect_targets.trim() {
        "" => None,
        n => match n.parse::<u64>() {
            Ok(n) => Some(crate::domain::resolution::Expectation {
                targets: Some(n),
                roots: None,
            }),
            Err(_) => {
                problems.push(format!("Expected target count: `{n}` is not a number"));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(CreateChange {
        title: f.title.clone(),
        rationale: f.rationale.clone(),
        requesting_team: f.requesting_team.clone(),
        operation: f.operation.clone(),
        params: serde_json::Value::Object(params),
        targets: Selector {
            ids,
            within: (!scope_ids.is_empty()).then(|| Scope {
                kind: f.scope_kind.clone(),
                ids: scope_ids,
            }),
            filter,
        },
        expect,
        not_before,
        not_after,
        submit: false,
    })
}

/// The targets the preview lists, with what would happen to each.
const PREVIEW_TARGETS: usize = 20;

pub(crate) fn preview_of(
    schema: &crate::domain::Schema,
    r: &Resolution,
    effects: &svc::Effects,
) -> Preview {
    let mut per_kind: BTreeMap<String, u64> = BTreeMap::new();
    for t in &r.targets {
        *per_kind.entry(t.kind.clone()).or_default() += 1;
    }
    Preview {
        text: r.summary.text.clone(),
        targets: r.summary.targets,
        roots: r.summary.roots,
        per_kind: per_kind
            .into_iter()
            .map(|(k, n)| (schema.kind(&k).map(|k| k.plural.clone()).unwrap_or(k), n))
            .collect(),
        sample_roots: r
            .summary
            .sample_roots
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect(),
        first: r
            .targets
            .iter()
            .take(PREVIEW_TARGETS)
            .map(|t| {
                TargetRow::new(
                    t.kind.clone(),
                    t.id.clone(),
                    t.name.clone(),
                    t.scope_path.clone(),
                    effects.get(&t.id),
                )
            })
            .collect(),
        warnings: r.summary.warnings.clone(),
        guards: r.summary.guards.clone(),
        tier: None,
        expiry: None,
        undo: r.summary.undo.clone(),
        budget: None,
        freezes: vec![],
        fingerprint: short_fingerprint(&r.fingerprint),
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn new_change_page(
    state: &State,
    l: Layout,
    user: &CurrentUser,
    f: ChangeForm,
    errors: Vec<ResolutionError>,
    error_count: u64,
    problems: Vec<String>,
    preview: Option<Preview>,
) -> NewChangePage {
    let ops =
        state
            .schema
            .operations
            .values()
            .map(|o| {
                let kind = state.schema.kind(&o.target);
                OpChoice {
                    name: o.name.clone(),
                    label: o.label.clone(),
                    explain: format!(
                    "Acts on {} — {}. Needs {} requester and {} implementer sign-off(s) from {}{}{}.",
                    kind.map(|k| k.plural.clone()).unwrap_or_else(|| o.target.clone()),
                    o.effect.plain_words(),
                    o.signoffs.requester,
                    o.signoffs.implementer,
                    o.implemented_by,
                    if o.cascade { "; takes everything below its targets with it" } else { "" },
                    o.signoffs_expire_after.map(|l| format!("; {}", l.note())).unwrap_or_default()
                ),
                    selected: o.name == f.operation,
                    kind_label: kind.map(|k| k.label.clone()).unwrap_or_default(),
                    pattern: kind
                        .map(|k| {
                            let prefix = k.prefix.as_deref().map(regex::escape).unwrap_or_default();
                            let body = k.pattern.clone().unwrap_or_else(|| ".+".into());
                            format!("^{prefix}(?:{body})$")
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
    let teams = user
        .teams
        .iter()
        .map(|t| (t.clone(), *t == f.requesting_team))
        .collect();
    let scope_kinds = state
        .schema
        .kinds
        .values()
        .filter(|k| !state.schema.children_of(&k.name).is_empty())
        .map(|k| (k.name.clone(), k.label.clone(), k.name == f.scope_kind))
        .collect();
    NewChangePage {
        l,
        ops,
        teams,
        f,
        scope_kinds,
        error_count: error_count.max(errors.len() as u64),
        truncated: error_count > errors.len() as u64,
        editing: None,
        errors,
        problems,
        preview,
    }
}

#[derive(Deserialize)]
pub struct NewQuery {
    pub(crate) operation: Option<String>,
}

pub async fn new_change(
    req: HttpRequest,
    state: State,
    w: WebUser,
    q: web::Query<NewQuery>,
) -> HttpResponse {
    let f = ChangeForm {
        operation: q.operation.clone().unwrap_or_default(),
        requesting_team: w.user.teams.first().cloned().unwrap_or_default(),
        ..Default::default()
    };
    let l = layout(&req, &state, &w).await;
    html(
        StatusCode::OK,
        new_change_page(&state, l, &w.user, f, vec![], 0, vec![], None).render(),
    )
}

/// Resolve the form's selector (nothing stored) and describe it as the preview shows it:
/// the blast radius, each target's effect, the tier, the budget and the sign-off lifetime.
async fn preview_for(
    state: &State,
    request: &CreateChange,
) -> Result<(Resolution, Preview), AppError> {
    let schema = state.schema.clone();
    let targets = request.targets.clone();
    let (op_name, params) = (request.operation.clone(), request.params.clone());
    let window = (
        request.not_before.map(|t| t.naive_utc()),
        request.not_after.map(|t| t.naive_utc()),
    );
    let (r, sets, budget, freezes) = with_conn(state, move |conn| {
        let op = schema
            .operation(&op_name)
            .ok_or_else(|| AppError::new(ErrorCode::UnknownOperation, "Choose an operation."))?;
        let params = svc::check_params(op, &params)?;
        svc::check_selector(op, &targets)?;
        crate::db::snapshot(conn, |conn| {
            let r = crate::db::resolve::resolve(conn, &schema, op, &params, &targets)?;
            let first: Vec<svc::TargetRef<'_>> = r
                .targets
                .iter()
                .take(PREVIEW_TARGETS)
                .map(svc::TargetRef::from)
                .collect();
            let sets = svc::planned_effects(conn, &schema, op, &params, &first)?;
            let budget = match &op.budget {
                Some(b) => Some(crate::service::budget::state(conn, b)?),
                None => None,
            };
            let freezes =
                crate::service::calendar::overlapping(conn, &op_name, window.0, window.1)?;
            Ok((r, sets, budget, freezes))
        })
    })
    .await?;
    let mut preview = preview_of(&state.schema, &r, &sets);
    preview.freezes = freezes;
    preview.budget = budget.map(|b| crate::service::budget::preview_line(&b, &r.summary));
    let op = state.schema.operation(&request.operation);
    preview.tier = op.and_then(|op| {
        op.policy(
            r.summary.targets,
            r.summary.roots,
            false,
            crate::domain::resolution::guards::selects_everything(&r.summary.guards),
        )
        .describe()
    });
    preview.expiry = op.and_then(|op| op.signoffs_expire_after).map(|l| l.note());
    Ok((r, preview))
}

/// What the resolution contradicts of the author's `expect` (targets, roots), in words.
fn expectation_problems(
    e: &crate::domain::resolution::Expectation,
    summary: &crate::domain::resolution::Summary,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(t) = e.targets.filter(|t| *t != summary.targets) {
        problems.push(format!(
            "You expected {t} targets; the list resolves to {}.",
            summary.targets
        ));
    }
    if let Some(n) = e.roots.filter(|n| *n != summary.roots) {
        problems.push(format!(
            "You expected {n} roots; the list resolves to {}.",
            summary.roots
        ));
    }
    problems
}

pub async fn create_change(
    req: HttpRequest,
    state: State,
    w: WebUser,
    form: web::Form<ChangeForm>,
) -> PageResult {
    let f = form.into_inner();
    w.check_csrf(&f.csrf)?;
    let again = |l: Layout, errors: Vec<ResolutionError>, count: u64, problems, preview| {
        html(
            ErrorCode::FormProblems.status(),
            new_change_page(
                &state,
                l,
                &w.user,
                f.clone(),
                errors,
                count,
                problems,
                preview,
            )
            .render(),
        )
    };
    let request = match to_request(&f) {
        Ok(r) => r,
        Err(problems) => {
            let l = layout(&req, &state, &w).await;
            return Ok(again(l, vec![], 0, problems, None));
        }
    };
    // "Create": one transaction resolves, stores and submits. Only when that is refused is
    // the list resolved again, for the preview that shows why.
    let mut refused = None;
    if f.action == "create" {
        let attempt = CreateChange {
            submit: true,
            ..request.clone()
        };
        match run_as(&state, w.user.clone(), move |conn, schema, user| {
            svc::create(conn, schema, user, attempt)
        })
        .await
        {
            Ok(id) => return Ok(see_other(&format!("/changes/{}?done=created", number(id)))),
            Err(AppError::Client { message, .. }) => refused = Some(message),
            Err(e) => return Err(e.into()),
        }
    }
    // The preview (nothing stored), or the reasons it cannot be created.
    let (r, preview) = match preview_for(&state, &request).await {
        Ok(v) => v,
        Err(AppError::Client { message, .. }) => {
            let l = layout(&req, &state, &w).await;
            return Ok(again(l, vec![], 0, vec![message], None));
        }
        Err(e) => return Err(e.into()),
    };
    // Submission would refuse a failed expectation: say so here instead of storing a draft.
    if let Some(e) = &request.expect {
        let problems = expectation_problems(e, &r.summary);
        if !problems.is_empty() && r.error_count == 0 {
            let l = layout(&req, &state, &w).await;
            return Ok(again(l, vec![], 0, problems, Some(preview)));
        }
    }
    let l = layout(&req, &state, &w).await;
    let problems: Vec<String> = refused.into_iter().filter(|_| r.error_count == 0).collect();
    let mut resp = again(
        l,
        r.errors.clone(),
        r.error_count,
        problems.clone(),
        Some(preview),
    );
    if r.error_count == 0 && problems.is_empty() {
        *resp.status_mut() = StatusCode::OK;
    }
    Ok(resp)
}
