//! Editing a change (title, rationale, targets, window): re-resolved on save.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;

use super::new_change::{new_change_page, to_request, ChangeForm};
use super::{html, layout, see_other, Layout, PageResult};
use crate::domain::access::ChangeAction;
use crate::error::{AppError, ErrorCode};
use crate::service::changes::{self as svc, change_id};
use crate::service::views::{number, ChangeView};
use crate::web::session::WebUser;
use crate::web::{run_as, State};

// ---- editing a change -----------------------------------------------------------------

/// The full edit form (targets included) is for changes whose targets are chosen: the
/// service decides who may edit (`allowed_actions`); a rollback or bulk restore has fixed
/// targets, so its text is edited on the change page instead.
pub(crate) fn editable(v: &ChangeView) -> Result<(), AppError> {
    if !v.allowed_actions.contains(&ChangeAction::Edit) {
        return Err(AppError::new(ErrorCode::NotAllowed,
            format!(
                "Only the author of a change edits it, while it is a draft, awaiting sign-off or approved ({} is {}); comment instead.",
                v.number, v.state
            ),
        ));
    }
    if v.rollback_of.is_some() || v.targets.get("restore").is_some() {
        return Err(AppError::new(ErrorCode::FixedTargets,
            "A rollback or bulk restore has fixed targets: edit its title and rationale on its page, or cancel it and request a new one.",
        ));
    }
    Ok(())
}

pub(crate) fn form_of(v: &ChangeView) -> ChangeForm {
    let t = &v.targets;
    let strings = |x: &serde_json::Value| -> Vec<String> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pairs = |x: &serde_json::Value| -> String {
        x.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        format!(
                            "{k} = {}",
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    ChangeForm {
        operation: v.operation.name.clone(),
        requesting_team: v.requesting_team.clone(),
        title: v.title.clone(),
        rationale: v.rationale.clone(),
        ids: strings(&t["ids"]).join("\n"),
        scope_kind: t["within"]["kind"].as_str().unwrap_or_default().to_string(),
        scope_ids: strings(&t["within"]["ids"]).join("\n"),
        filter: pairs(&t["where"]),
        params: pairs(&v.params),
        expect_targets: v
            .expect
            .as_ref()
            .and_then(|e| e["targets"].as_u64())
            .map(|n| n.to_string())
            .unwrap_or_default(),
        ..Default::default()
    }
}

pub async fn edit_form(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
) -> PageResult {
    let id = change_id(&path)?;
    let v = run_as(&state, w.user.clone(), move |conn, schema, viewer| {
        svc::view_for(conn, schema, viewer, id)
    })
    .await?;
    editable(&v)?;
    let l = layout(&req, &state, &w).await;
    let mut page = new_change_page(
        &state,
        l,
        &w.user,
        form_of(&v),
        v.errors.clone(),
        v.error_count as u64,
        vec![],
        None,
    );
    page.editing = Some(v.number.clone());
    Ok(html(StatusCode::OK, page.render()))
}

pub async fn save_edit(
    req: HttpRequest,
    state: State,
    w: WebUser,
    path: web::Path<String>,
    form: web::Form<ChangeForm>,
) -> PageResult {
    let f = form.into_inner();
    w.check_csrf(&f.csrf)?;
    let id = change_id(&path)?;
    let again = |l: Layout, problems: Vec<String>| {
        let mut page = new_change_page(&state, l, &w.user, f.clone(), vec![], 0, problems, None);
        page.editing = Some(number(id));
        html(ErrorCode::FormProblems.status(), page.render())
    };
    let cr = match to_request(&f) {
        Ok(r) => r,
        Err(problems) => {
            let l = layout(&req, &state, &w).await;
            return Ok(again(l, problems));
        }
    };
    let saved = run_as(&state, w.user.clone(), move |conn, schema, user| {
        let v = svc::view_for(conn, schema, user, id)?;
        editable(&v)?;
        // The form edits the expected target count; an expected root count set through the
        // API is kept.
        let roots = v.expect.as_ref().and_then(|e| e["roots"].as_u64());
        let expect = match (cr.expect.and_then(|e| e.targets), roots) {
            (None, None) => None,
            (targets, roots) => Some(crate::domain::resolution::Expectation { targets, roots }),
        };
        svc::edit(
            conn,
            schema,
            user,
            id,
            svc::EditChange {
                title: Some(cr.title),
                rationale: Some(cr.rationale),
                params: Some(cr.params),
                targets: Some(cr.targets),
                expect: Some(expect),
            },
        )
    })
    .await;
    match saved {
        Ok(_) => Ok(see_other(&format!("/changes/{}?done=saved", number(id)))),
        Err(AppError::Client { message, code, .. }) if code != ErrorCode::NotFound => {
            let l = layout(&req, &state, &w).await;
            Ok(again(l, vec![message]))
        }
        Err(e) => Err(e.into()),
    }
}
