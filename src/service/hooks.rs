//! A team's chat and event hooks: subscribe (Slack, Microsoft Teams, signed JSON), list,
//! delete, send a test, see the deliveries. Members of the team and admins manage them;
//! every act is audited. Deliveries are outbox rows written with the event
//! (`notify::hooks::dispatch`); a dead one is retried by an admin like a mail.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::events::record;
use super::CurrentUser;
use crate::db::models::{Hook, NewHook, OutboxRow};
use crate::db::{hooks as repo, now, users, write_tx, DbConn};
use crate::domain::event::Event;
use crate::domain::hook::{self, HookFormat, HookKind, MAX_HOOKS_PER_TEAM};
use crate::domain::OutboxState;
use crate::error::{AppError, AppResult, ErrorCode};

/// A hook as its team sees it: the address masked (Slack's and Teams' carry their
/// credential), never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct HookView {
    pub id: i64,
    pub team: String,
    pub name: String,
    pub format: HookFormat,
    pub format_label: &'static str,
    pub url: String,
    pub events: Vec<HookKind>,
    pub signed: bool,
    pub created_at: chrono::NaiveDateTime,
    /// The newest delivery, if any.
    pub last_delivery: Option<DeliveryView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub delivery_id: String,
    pub event: String,
    pub change: Option<String>,
    pub state: OutboxState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: chrono::NaiveDateTime,
    pub next_attempt_at: chrono::NaiveDateTime,
    pub sent_at: Option<chrono::NaiveDateTime>,
}

impl From<OutboxRow> for DeliveryView {
    fn from(r: OutboxRow) -> Self {
        DeliveryView {
            id: r.id,
            delivery_id: r.message_id,
            event: r.event_kind,
            change: r.change_id.map(super::views::number),
            state: r.state,
            attempts: r.attempts,
            last_error: r.last_error,
            created_at: r.created_at,
            next_attempt_at: r.next_attempt_at,
            sent_at: r.sent_at,
        }
    }
}

/// What a new hook is made of.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHookInput {
    /// One line of at most 80 characters (say, the channel it posts to).
    pub name: String,
    /// `slack`, `teams` or `json`.
    pub format: String,
    /// The receiver's address: http or https, at most 2000 characters.
    pub url: String,
    /// The events it subscribes to (README "Chat and event hooks").
    pub events: Vec<String>,
    /// A JSON hook's HMAC key; generated when not given. Not for Slack or Teams.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A created hook, with its secret shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedHook {
    pub hook: HookView,
    pub secret: Option<String>,
}

/// What a team's hooks page and API show.
#[derive(Debug, Clone, Serialize)]
pub struct TeamHooks {
    pub team: String,
    pub hooks: Vec<HookView>,
    pub formats: Vec<(HookFormat, &'static str)>,
    pub events: Vec<(HookKind, &'static str)>,
}

fn view(conn: &mut DbConn, h: Hook, team: &str) -> AppResult<HookView> {
    let last = repo::deliveries(conn, h.id, 1)?.into_iter().next();
    Ok(view_with(h, team, last.map(DeliveryView::from)))
}

fn view_with(h: Hook, team: &str, last: Option<DeliveryView>) -> HookView {
    HookView {
        id: h.id,
        team: team.to_string(),
        name: h.name.clone(),
        format: h.format,
        format_label: h.format.describe(),
        url: hook::masked_url(&h.url),
        events: h.kinds(),
        signed: h.secret.is_some(),
        created_at: h.created_at,
        last_delivery: last,
    }
}

/// The team's hooks, each with its latest `n` deliveries (one query per hook).
fn hooks_of(
    conn: &mut DbConn,
    team: &crate::db::models::Team,
    n: i64,
) -> AppResult<Vec<(HookView, Vec<DeliveryView>)>> {
    repo::of_team(conn, team.id)?
        .into_iter()
        .map(|h| {
            let d: Vec<DeliveryView> = repo::deliveries(conn, h.id, n)?
                .into_iter()
                .map(DeliveryView::from)
                .collect();
            Ok((view_with(h, &team.name, d.first().cloned()), d))
        })
        .collect()
}

/// The team, if `user` may manage its hooks (a member or an admin).
fn team_for(
    conn: &mut DbConn,
    user: &CurrentUser,
    team: &str,
) -> AppResult<crate::db::models::Team> {
    let t = users::find_team(conn, team)?.ok_or_else(|| AppError::not_found("team", team))?;
    if !user.is_admin && !user.in_team(team) {
        return Err(AppError::new(
            ErrorCode::NotInTeam,
            format!("only members of {team} (and admins) manage its hooks"),
        ));
    }
    Ok(t)
}

/// The team's hook `id` (a deleted one, or another team's, is not found).
fn hook_of(conn: &mut DbConn, team: &crate::db::models::Team, id: i64) -> AppResult<Hook> {
    match repo::get(conn, id)? {
        Some((h, _)) if h.team_id == team.id && h.deleted_at.is_none() => Ok(h),
        _ => Err(AppError::not_found("hook", id)),
    }
}

pub fn list(conn: &mut DbConn, user: &CurrentUser, team: &str) -> AppResult<TeamHooks> {
    Ok(page(conn, user, team, 1)?.0)
}

/// The team's hooks (as [`list`]) and each one's latest `n` deliveries, in the same order:
/// the team's page.
pub fn page(
    conn: &mut DbConn,
    user: &CurrentUser,
    team: &str,
    n: i64,
) -> AppResult<(TeamHooks, Vec<Vec<DeliveryView>>)> {
    let t = team_for(conn, user, team)?;
    let (hooks, deliveries) = hooks_of(conn, &t, n.clamp(1, 500))?.into_iter().unzip();
    Ok((
        TeamHooks {
            team: t.name,
            hooks,
            formats: HookFormat::VALUES
                .iter()
                .map(|f| (*f, f.describe()))
                .collect(),
            events: HookKind::VALUES
                .iter()
                .map(|k| (*k, k.describe()))
                .collect(),
        },
        deliveries,
    ))
}

/// Every problem with `input`, in words, each prefixed by its field.
fn problems(input: &NewHookInput) -> Vec<String> {
    let mut p = hook::check(&input.name, &input.url, &input.events);
    match HookFormat::parse(input.format.trim()) {
        None => p.push(format!(
            "format: `{}` is not one of slack, teams, json",
            input.format.chars().take(40).collect::<String>()
        )),
        Some(HookFormat::Json) => {
            if let Some(s) = &input.secret {
                let n = s.chars().count();
                if !(16..=200).contains(&n)
                    || s.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    p.push("secret: 16 to 200 characters without spaces".into());
                }
            }
        }
        Some(_) => {
            if input.secret.as_deref().is_some_and(|s| !s.is_empty()) {
                p.push("secret: only JSON hooks are signed; Slack and Teams addresses carry their own credential".into());
            }
        }
    }
    p
}

fn invalid(problems: Vec<String>) -> AppError {
    AppError::new(ErrorCode::InvalidHook, problems.join("; "))
        .with_details(json!({"problems": problems}))
}

pub fn create(
    conn: &mut DbConn,
    user: &CurrentUser,
    team: &str,
    input: &NewHookInput,
) -> AppResult<CreatedHook> {
    let t = team_for(conn, user, team)?;
    let p = problems(input);
    if !p.is_empty() {
        return Err(invalid(p));
    }
    let format = HookFormat::parse(input.format.trim()).expect("checked");
    let mut events: Vec<HookKind> = input
        .events
        .iter()
        .filter_map(|e| HookKind::parse(e))
        .collect();
    events.sort();
    events.dedup();
    let secret = (format == HookFormat::Json).then(|| {
        input
            .secret
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                let mut b = [0u8; 24];
                rand::thread_rng().fill_bytes(&mut b);
                hex::encode(b)
            })
    });
    let hook = write_tx(conn, |conn| -> AppResult<Hook> {
        if repo::count_locked(conn, t.id)? >= MAX_HOOKS_PER_TEAM as i64 {
            return Err(invalid(vec![format!(
                "{}: a team has at most {MAX_HOOKS_PER_TEAM} hooks; delete one first",
                t.name
            )]));
        }
        let h = repo::insert(
            conn,
            &NewHook {
                team_id: t.id,
                name: input.name.trim().to_string(),
                format,
                url: input.url.trim().to_string(),
                secret: secret.clone(),
                events: serde_json::to_string(
                    &events.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
                )
                .expect("a list of strings"),
                created_by: user.id,
                created_at: now(),
            },
        )?;
        record(
            conn,
            &user.actor(),
            None,
            Event::HookCreated {
                hook: h.id,
                team: t.name.clone(),
                name: h.name.clone(),
                format,
                url: hook::masked_url(&h.url),
                events: events.iter().map(|k| k.to_string()).collect(),
            },
        )?;
        Ok(h)
    })?;
    Ok(CreatedHook {
        hook: view(conn, hook, &t.name)?,
        secret,
    })
}

pub fn delete(conn: &mut DbConn, user: &CurrentUser, team: &str, id: i64) -> AppResult<()> {
    let t = team_for(conn, user, team)?;
    write_tx(conn, |conn| -> AppResult<()> {
        let h = hook_of(conn, &t, id)?;
        let Some(abandoned) = repo::delete(conn, id)? else {
            return Err(AppError::not_found("hook", id));
        };
        record(
            conn,
            &user.actor(),
            None,
            Event::HookDeleted {
                hook: id,
                team: t.name.clone(),
                name: h.name,
                abandoned,
            },
        )?;
        Ok(())
    })
}

/// Queue a test message to hook `id`; returns its delivery.
pub fn test(conn: &mut DbConn, user: &CurrentUser, team: &str, id: i64) -> AppResult<DeliveryView> {
    let t = team_for(conn, user, team)?;
    let delivery = write_tx(conn, |conn| -> AppResult<String> {
        let h = hook_of(conn, &t, id)?;
        let d = crate::notify::hooks::enqueue_test(conn, h.id, &h.name, &t.name, &user.email)?;
        record(
            conn,
            &user.actor(),
            None,
            Event::HookTested {
                hook: id,
                team: t.name.clone(),
                delivery: d.clone(),
            },
        )?;
        Ok(d)
    })?;
    repo::deliveries(conn, id, 20)?
        .into_iter()
        .find(|r| r.message_id == delivery)
        .map(DeliveryView::from)
        .ok_or_else(|| AppError::not_found("delivery", &delivery))
}

/// The hook's latest deliveries, newest first.
pub fn deliveries(
    conn: &mut DbConn,
    user: &CurrentUser,
    team: &str,
    id: i64,
    limit: i64,
) -> AppResult<(HookView, Vec<DeliveryView>)> {
    let t = team_for(conn, user, team)?;
    let h = hook_of(conn, &t, id)?;
    let list = repo::deliveries(conn, id, limit.clamp(1, 500))?
        .into_iter()
        .map(DeliveryView::from)
        .collect();
    Ok((view(conn, h, &t.name)?, list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_for_json_hooks_only() {
        let mut i = NewHookInput {
            name: "ops".into(),
            format: "slack".into(),
            url: "https://hooks.slack.com/services/a/b/c".into(),
            events: vec!["approved".into()],
            secret: Some("0123456789abcdef".into()),
        };
        assert!(problems(&i)[0].starts_with("secret: only JSON"));
        i.format = "json".into();
        assert!(problems(&i).is_empty());
        i.secret = Some("short".into());
        assert!(problems(&i)[0].starts_with("secret: 16"));
        i.format = "irc".into();
        assert!(problems(&i)[0].contains("`irc` is not one of"));
    }
}
