//! Single sign-on's use cases: remember a sign-in sent to the provider, take it back when
//! the provider returns, and sign in the person the provider vouched for, provisioning
//! them and making their team memberships and admin rights follow the provider's groups,
//! all in one write transaction.

use chrono::Duration;

use crate::config::OidcConfig;
use crate::db::audit::Actor;
use crate::db::sso::{self as repo, PendingLogin};
use crate::db::{now, users, write_tx, DbConn, WriteTx};
use crate::domain::event::Event;
use crate::domain::sso::{decide, Claims, Decision, Policy};
use crate::domain::Schema;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::service::events::record;

/// How long a sign-in may stay at the provider.
pub const LOGIN_MINUTES: i64 = 10;

/// What a sign-in sent to the provider must come back with.
pub struct Started<'a> {
    /// The `state` sent (only its hash is stored).
    pub state: &'a str,
    /// The browser's binding cookie (only its hash is stored).
    pub browser: &'a str,
    pub nonce: &'a str,
    pub pkce_verifier: &'a str,
    pub next: &'a str,
}

pub fn begin(conn: &mut DbConn, s: &Started<'_>) -> AppResult<()> {
    let t = now();
    repo::insert_login(
        conn,
        &PendingLogin {
            state_hash: users::hash_token(s.state),
            browser_hash: users::hash_token(s.browser),
            nonce: s.nonce.to_string(),
            pkce_verifier: s.pkce_verifier.to_string(),
            next_path: s.next.to_string(),
            created_at: t,
            expires_at: t + Duration::minutes(LOGIN_MINUTES),
        },
    )?;
    Ok(())
}

/// The sign-in the provider came back with: used once, by the browser that started it,
/// within [`LOGIN_MINUTES`]. Anything else (a state made up or changed, a replay, another
/// browser's link, an old one) is `sso_invalid`.
pub fn take(conn: &mut DbConn, state: &str, browser: Option<&str>) -> AppResult<PendingLogin> {
    let invalid = |why: &str| {
        AppError::new(
            ErrorCode::SsoInvalid,
            format!("This sign-in cannot be finished: {why}. Start again from the sign-in page."),
        )
    };
    let Some(login) = repo::take_login(conn, &users::hash_token(state))? else {
        return Err(invalid(
            "the provider's answer names no sign-in under way here (it was used already, or its state was changed)",
        ));
    };
    if browser.map(users::hash_token).as_deref() != Some(login.browser_hash.as_str()) {
        return Err(invalid("it was started in another browser"));
    }
    if login.expires_at < now() {
        return Err(invalid(&format!(
            "it took longer than {LOGIN_MINUTES} minutes"
        )));
    }
    Ok(login)
}

/// A signed-in person: the session's cookie token.
pub struct SignedIn {
    pub user_id: i64,
    pub email: String,
    pub session: String,
}

/// Sign in the person the provider vouched for (`claims` come from a verified ID token).
/// A refusal is audited and answered with `sso_refused`; nothing else is written then.
pub fn sign_in(
    conn: &mut DbConn,
    schema: &Schema,
    oidc: &OidcConfig,
    claims: &Claims,
    session_hours: i64,
) -> AppResult<SignedIn> {
    let policy = Policy {
        allowed_domains: &oidc.allowed_domains,
        teams: &oidc.teams,
        admin_groups: oidc.admin_groups.as_deref(),
    };
    let decision = match decide(claims, policy) {
        Ok(d) => d,
        Err(refusal) => {
            let reason = refusal.to_string();
            write_tx(conn, |tx| {
                record(
                    tx,
                    &Actor(format!("sso:{}", oidc.issuer)),
                    None,
                    Event::SsoRefused {
                        email: claims.email.clone(),
                        subject: claims.subject.clone(),
                        reason: reason.clone(),
                    },
                )
            })?;
            return Err(AppError::new(
                ErrorCode::SsoRefused,
                format!("countersign does not let this account sign in: {reason}."),
            ));
        }
    };
    // Two first sign-ins of one person at once: on PostgreSQL the second insert of the
    // person (or identity) fails on its unique key; the second try finds the first's rows.
    match write_tx(conn, |tx| {
        apply(tx, schema, oidc, claims, &decision, session_hours)
    }) {
        Err(AppError::Db(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ))) => write_tx(conn, |tx| {
            apply(tx, schema, oidc, claims, &decision, session_hours)
        }),
        other => other,
    }
}

fn apply(
    tx: &mut WriteTx<'_>,
    schema: &Schema,
    oidc: &OidcConfig,
    claims: &Claims,
    d: &Decision,
    session_hours: i64,
) -> AppResult<SignedIn> {
    let issuer = oidc.issuer.as_str();
    let (mut created, mut linked) = (false, false);
    let user = match repo::user_of(tx, issuer, &claims.subject)? {
        Some(id) => users::find_user(tx, id)?
            .ok_or_else(|| AppError::Unexpected(anyhow::anyhow!("identity without a person")))?,
        None => {
            let user = match users::find_user_by_email(tx, &d.email)? {
                Some(u) => {
                    linked = true;
                    u
                }
                None => {
                    created = true;
                    users::create_user(tx, &d.email, &d.name, d.admin.unwrap_or(false))?
                }
            };
            repo::link(tx, issuer, &claims.subject, user.id)?;
            user
        }
    };
    if user.deactivated_at.is_some() {
        return Err(AppError::new(
            ErrorCode::AccountDeactivated,
            format!("The provider signed in {}, but an admin deactivated this account in countersign: ask an admin to reactivate it.", user.email),
        ));
    }
    repo::touch(tx, issuer, &claims.subject)?;
    let actor = Actor(user.email.clone());
    let admin = d.admin.unwrap_or(user.is_admin);
    if admin != user.is_admin || d.name != user.name {
        users::update_user(tx, user.id, &d.name, admin)?;
    }
    let now_in = users::user_teams(tx, user.id)?;
    let (mut joined, mut left) = (Vec::new(), Vec::new());
    // Leaving first: `remove_member_in` locks the changes the person signed before the
    // transaction's first audit append (the lock order is change row → `audit_head`).
    for team in d
        .managed
        .iter()
        .filter(|t| !d.teams.contains(*t) && now_in.contains(*t))
    {
        if let Some(t) = users::find_team(tx, team)? {
            crate::service::remove_member_in(tx, schema, &t, &user, &actor)?;
            left.push(team.clone());
        }
    }
    for team in d.teams.iter().filter(|t| !now_in.contains(*t)) {
        let t = match users::find_team(tx, team)? {
            Some(t) => t,
            None => {
                let t = users::create_team(tx, team)?;
                record(tx, &actor, None, Event::TeamCreated { team: team.clone() })?;
                t
            }
        };
        users::add_member(tx, t.id, user.id)?;
        record(
            tx,
            &actor,
            None,
            Event::TeamMemberAdded {
                team: team.clone(),
                email: user.email.clone(),
            },
        )?;
        joined.push(team.clone());
    }
    let (session, _) = users::create_session(tx, user.id, Duration::hours(session_hours))?;
    record(
        tx,
        &actor,
        None,
        Event::SsoSignedIn {
            issuer: issuer.to_string(),
            subject: claims.subject.clone(),
            created,
            linked,
            joined,
            left,
            admin: (admin != user.is_admin).then_some(admin),
        },
    )?;
    Ok(SignedIn {
        user_id: user.id,
        email: user.email,
        session,
    })
}
