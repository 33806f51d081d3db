//! Teams, users, memberships and API tokens.

use diesel::prelude::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

use chrono::NaiveDateTime;

use super::models::{Team, User};
use super::schema::{api_tokens, team_members, teams, users, web_sessions};
use super::{best_effort, now, DbConn};
use crate::domain::account::{touch_due, touch_interval};

pub fn find_team(conn: &mut DbConn, name: &str) -> QueryResult<Option<Team>> {
    teams::table
        .filter(teams::name.eq(name))
        .select(Team::as_select())
        .first(conn)
        .optional()
}

pub fn create_team(conn: &mut DbConn, name: &str) -> QueryResult<Team> {
    diesel::insert_into(teams::table)
        .values((teams::name.eq(name), teams::created_at.eq(now())))
        .returning(teams::all_columns)
        .get_result(conn)
}

pub fn list_teams(conn: &mut DbConn) -> QueryResult<Vec<Team>> {
    teams::table
        .order(teams::name.asc())
        .select(Team::as_select())
        .load(conn)
}

pub fn find_user_by_email(conn: &mut DbConn, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::email.eq(email.trim().to_lowercase()))
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn find_user(conn: &mut DbConn, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Who may act: a person who is not deactivated. The one rule every loader of an acting
/// person applies (a browser session, an API token, a calendar feed token), so that a
/// deactivation refuses all of them at once.
fn active() -> diesel::dsl::IsNull<users::deactivated_at> {
    users::deactivated_at.is_null()
}

/// The person with this id, unless they are deactivated.
pub fn find_active_user(conn: &mut DbConn, id: i64) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .filter(active())
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Mark the person deactivated by `by` (`None`: the command line) unless they are already;
/// whether this call did it.
pub fn deactivate(conn: &mut DbConn, id: i64, by: Option<i64>) -> QueryResult<bool> {
    Ok(diesel::update(users::table.find(id).filter(active()))
        .set((
            users::deactivated_at.eq(Some(now())),
            users::deactivated_by.eq(by),
        ))
        .execute(conn)?
        == 1)
}

/// Undo [`deactivate`]; whether the person was deactivated.
pub fn reactivate(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
    Ok(diesel::update(
        users::table
            .find(id)
            .filter(users::deactivated_at.is_not_null()),
    )
    .set((
        users::deactivated_at.eq(None::<NaiveDateTime>),
        users::deactivated_by.eq(None::<i64>),
    ))
    .execute(conn)?
        == 1)
}

/// Take the row locks of every active admin (an `UPDATE` that changes nothing: the lock on
/// PostgreSQL, a no-op under SQLite's `BEGIN IMMEDIATE`) and count them, so that two
/// deactivations at once cannot both leave the other as "the last admin" and remove both.
pub fn lock_active_admins(conn: &mut DbConn) -> QueryResult<usize> {
    diesel::update(
        users::table
            .filter(users::is_admin.eq(true))
            .filter(active()),
    )
    .set(users::is_admin.eq(true))
    .execute(conn)
}

/// The ids of those of `ids` who are deactivated.
pub fn deactivated_among(
    conn: &mut DbConn,
    ids: &[i64],
) -> QueryResult<std::collections::HashSet<i64>> {
    Ok(users::table
        .filter(users::id.eq_any(ids))
        .filter(users::deactivated_at.is_not_null())
        .select(users::id)
        .load::<i64>(conn)?
        .into_iter()
        .collect())
}

pub fn create_user(
    conn: &mut DbConn,
    email: &str,
    name: &str,
    is_admin: bool,
) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values((
            users::email.eq(email.trim().to_lowercase()),
            users::name.eq(name),
            users::is_admin.eq(is_admin),
            users::created_at.eq(now()),
        ))
        .returning(users::all_columns)
        .get_result(conn)
}

pub fn update_user(conn: &mut DbConn, id: i64, name: &str, is_admin: bool) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((users::name.eq(name), users::is_admin.eq(is_admin)))
        .execute(conn)
        .map(|_| ())
}

pub fn add_member(conn: &mut DbConn, team_id: i64, user_id: i64) -> QueryResult<()> {
    let exists = team_members::table
        .filter(
            team_members::team_id
                .eq(team_id)
                .and(team_members::user_id.eq(user_id)),
        )
        .count()
        .get_result::<i64>(conn)?;
    if exists == 0 {
        diesel::insert_into(team_members::table)
            .values((
                team_members::team_id.eq(team_id),
                team_members::user_id.eq(user_id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Remove a person from a team; returns whether they were a member. Their sign-offs on
/// that team's side stop counting at once (see `service::changes::records`).
pub fn remove_member(conn: &mut DbConn, team_id: i64, user_id: i64) -> QueryResult<bool> {
    let n = diesel::delete(
        team_members::table.filter(
            team_members::team_id
                .eq(team_id)
                .and(team_members::user_id.eq(user_id)),
        ),
    )
    .execute(conn)?;
    Ok(n > 0)
}

/// The teams of several people at once (one query), by user id: every membership, as the
/// people page lists them. What a signer counts for is [`counting_teams_of_users`].
pub fn teams_of_users(
    conn: &mut DbConn,
    user_ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, Vec<String>>> {
    let rows: Vec<(i64, String)> = team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq_any(user_ids))
        .select((team_members::user_id, teams::name))
        .load(conn)?;
    Ok(by_user(rows))
}

/// The teams several people count for (one query), by user id: their memberships, and
/// none for a deactivated person. A sign-off counts only while its signer is in the side's
/// team (`service::changes::records`), so a deactivated signer's sign-offs stop counting
/// by the same rule as a signer who left the team, and count again on reactivation.
pub fn counting_teams_of_users(
    conn: &mut DbConn,
    user_ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, Vec<String>>> {
    let rows: Vec<(i64, String)> = team_members::table
        .inner_join(teams::table)
        .inner_join(users::table)
        .filter(team_members::user_id.eq_any(user_ids))
        .filter(active())
        .select((team_members::user_id, teams::name))
        .load(conn)?;
    Ok(by_user(rows))
}

/// [`counting_teams_of_users`] for the people who signed change `change_id`: one statement
/// whose text never changes (an `IN (…)` list of ids is prepared anew on every call on
/// SQLite, since diesel cannot cache it), read for every view, sign-off and gate.
pub fn counting_teams_of_signers(
    conn: &mut DbConn,
    change_id: i64,
) -> QueryResult<std::collections::HashMap<i64, Vec<String>>> {
    let signers = crate::db::schema::signoffs::table
        .filter(crate::db::schema::signoffs::change_id.eq(change_id))
        .select(crate::db::schema::signoffs::user_id);
    let rows: Vec<(i64, String)> = team_members::table
        .inner_join(teams::table)
        .inner_join(users::table)
        .filter(team_members::user_id.eq_any(signers))
        .filter(active())
        .select((team_members::user_id, teams::name))
        .distinct()
        .load(conn)?;
    Ok(by_user(rows))
}

/// The deactivated people among those who signed change `change_id` (one statement of
/// fixed text; see [`counting_teams_of_signers`]).
pub fn deactivated_signers(
    conn: &mut DbConn,
    change_id: i64,
) -> QueryResult<std::collections::HashSet<i64>> {
    let signers = crate::db::schema::signoffs::table
        .filter(crate::db::schema::signoffs::change_id.eq(change_id))
        .select(crate::db::schema::signoffs::user_id);
    Ok(users::table
        .filter(users::id.eq_any(signers))
        .filter(users::deactivated_at.is_not_null())
        .select(users::id)
        .load::<i64>(conn)?
        .into_iter()
        .collect())
}

fn by_user(rows: Vec<(i64, String)>) -> std::collections::HashMap<i64, Vec<String>> {
    let mut out: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
    for (u, t) in rows {
        out.entry(u).or_default().push(t);
    }
    out
}

/// Names of the teams a user is in.
pub fn user_teams(conn: &mut DbConn, user_id: i64) -> QueryResult<Vec<String>> {
    team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq(user_id))
        .order(teams::name.asc())
        .select(teams::name)
        .load(conn)
}

/// Whether the person counts as a member of `team` now: a member, and not deactivated
/// (like [`counting_teams_of_users`]; a freeze exception counts only from a member).
pub fn is_member(conn: &mut DbConn, user_id: i64, team: &str) -> QueryResult<bool> {
    let n: i64 = team_members::table
        .inner_join(teams::table)
        .inner_join(users::table)
        .filter(team_members::user_id.eq(user_id).and(teams::name.eq(team)))
        .filter(active())
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

pub fn team_member_emails(conn: &mut DbConn, team: &str) -> QueryResult<Vec<(String, String)>> {
    team_members::table
        .inner_join(teams::table)
        .inner_join(users::table)
        .filter(teams::name.eq(team))
        .order(users::email.asc())
        .select((users::email, users::name))
        .load(conn)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Create an API token that never expires; see [`create_token_expiring`].
pub fn create_token(conn: &mut DbConn, user_id: i64, label: &str) -> QueryResult<String> {
    create_token_expiring(conn, user_id, label, None)
}

/// Create an API token; the plaintext is returned once and only its hash is stored.
/// Tokens are 256 random bits, so a plain SHA-256 is a sufficient one-way store.
pub fn create_token_expiring(
    conn: &mut DbConn,
    user_id: i64,
    label: &str,
    expires_at: Option<NaiveDateTime>,
) -> QueryResult<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("cs_{}", hex::encode(bytes));
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::user_id.eq(user_id),
            api_tokens::token_hash.eq(hash_token(&token)),
            api_tokens::label.eq(label),
            api_tokens::created_at.eq(now()),
            api_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(token)
}

/// A bearer token that exists and is not revoked (it may have expired).
pub struct TokenUse {
    pub user: User,
    pub id: i64,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
}

impl TokenUse {
    pub fn expired(&self, at: NaiveDateTime) -> bool {
        self.expires_at.is_some_and(|e| e <= at)
    }
}

/// Look a bearer token up (one query); expiry is the caller's to check, so that it can say so.
/// A deactivated person's tokens are not found ([`active`]).
pub fn token_use(conn: &mut DbConn, token: &str) -> QueryResult<Option<TokenUse>> {
    let row: Option<(User, i64, Option<NaiveDateTime>, Option<NaiveDateTime>)> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(hash_token(token)))
        .filter(api_tokens::revoked_at.is_null())
        .filter(active())
        .select((
            User::as_select(),
            api_tokens::id,
            api_tokens::expires_at,
            api_tokens::last_used_at,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(user, id, expires_at, last_used_at)| TokenUse {
        user,
        id,
        expires_at,
        last_used_at,
    }))
}

/// The user a bearer token belongs to, if the token exists, is not revoked and has not expired.
pub fn user_for_token(conn: &mut DbConn, token: &str) -> QueryResult<Option<User>> {
    let t = now();
    Ok(token_use(conn, token)?
        .filter(|u| !u.expired(t))
        .map(|u| u.user))
}

/// Record a use of a token, at most once a minute: nothing is written (no SQLite write lock
/// taken) unless the last recorded use is older, and the `WHERE` makes concurrent requests
/// write once. Returns whether this call wrote.
pub fn touch_token(conn: &mut DbConn, t: &TokenUse) -> QueryResult<bool> {
    let at = now();
    if !touch_due(t.last_used_at, at) {
        return Ok(false);
    }
    let cutoff = at - touch_interval();
    best_effort(conn, |conn| {
        diesel::update(
            api_tokens::table.find(t.id).filter(
                api_tokens::last_used_at
                    .is_null()
                    .or(api_tokens::last_used_at.le(cutoff)),
            ),
        )
        .set(api_tokens::last_used_at.eq(Some(at)))
        .execute(conn)
    })
    .map(|n| n == 1)
}

// ---- passwords, browser sessions, token management -----------------------------------

/// Store an argon2 hash of `password` for the user.
pub fn set_password(conn: &mut DbConn, user_id: i64, password: &str) -> QueryResult<()> {
    let hash = hash_password(password);
    diesel::update(users::table.find(user_id))
        .set(users::password_hash.eq(Some(hash)))
        .execute(conn)?;
    Ok(())
}

/// An argon2id PHC string for `password` ([`crate::domain::password::hash`]).
pub fn hash_password(password: &str) -> String {
    crate::domain::password::hash(password)
}

/// Whether `password` matches the stored hash ([`crate::domain::password::verify`]).
pub fn verify_password(hash: &str, password: &str) -> bool {
    crate::domain::password::verify(hash, password)
}

/// A new browser session: (cookie token, CSRF token). Only the token's hash is stored;
/// the session's public id (for URLs) is separate random text.
pub fn create_session(
    conn: &mut DbConn,
    user_id: i64,
    ttl: chrono::Duration,
) -> QueryResult<(String, String)> {
    let token = random_hex(32);
    let csrf = random_hex(32);
    let t = now();
    diesel::insert_into(web_sessions::table)
        .values((
            web_sessions::token_hash.eq(hash_token(&token)),
            web_sessions::user_id.eq(user_id),
            web_sessions::csrf_token.eq(&csrf),
            web_sessions::created_at.eq(t),
            web_sessions::expires_at.eq(t + ttl),
            web_sessions::public_id.eq(random_hex(16)),
        ))
        .execute(conn)?;
    // Old sessions of anyone go when they expire.
    diesel::delete(web_sessions::table.filter(web_sessions::expires_at.lt(t))).execute(conn)?;
    Ok((token, csrf))
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// The user and CSRF token of a live session, and when it was last seen; a deactivated
/// person's sessions are not found ([`active`]).
pub fn session(
    conn: &mut DbConn,
    token: &str,
) -> QueryResult<Option<(User, String, Option<NaiveDateTime>)>> {
    web_sessions::table
        .inner_join(users::table)
        .filter(web_sessions::token_hash.eq(hash_token(token)))
        .filter(web_sessions::expires_at.gt(now()))
        .filter(active())
        .select((
            User::as_select(),
            web_sessions::csrf_token,
            web_sessions::last_seen_at,
        ))
        .first(conn)
        .optional()
}

/// What the sessions list shows to recognise a session: its browser (the User-Agent, cut
/// to 200 characters) and network (the peer address cut to /24 or /48).
#[derive(Debug, Clone, Default)]
pub struct SeenFrom {
    pub user_agent: Option<String>,
    pub ip_prefix: Option<String>,
}

/// Record that a session was used, at most once a minute (see [`touch_token`]).
pub fn touch_session(
    conn: &mut DbConn,
    token: &str,
    last_seen: Option<NaiveDateTime>,
    from: &SeenFrom,
) -> QueryResult<bool> {
    let at = now();
    if !touch_due(last_seen, at) {
        return Ok(false);
    }
    let cutoff = at - touch_interval();
    best_effort(conn, |conn| {
        diesel::update(
            web_sessions::table
                .filter(web_sessions::token_hash.eq(hash_token(token)))
                .filter(
                    web_sessions::last_seen_at
                        .is_null()
                        .or(web_sessions::last_seen_at.le(cutoff)),
                ),
        )
        .set((
            web_sessions::last_seen_at.eq(Some(at)),
            web_sessions::user_agent.eq(&from.user_agent),
            web_sessions::ip_prefix.eq(&from.ip_prefix),
        ))
        .execute(conn)
    })
    .map(|n| n == 1)
}

/// One of a person's live sessions, for the sessions page.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub public_id: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub last_seen_at: Option<NaiveDateTime>,
    pub user_agent: Option<String>,
    pub ip_prefix: Option<String>,
    /// The session of the request (`current` token).
    pub current: bool,
}

type SessionTuple = (
    String,
    String,
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<String>,
    Option<String>,
);

/// A person's live sessions, the most recently created first.
pub fn sessions_of(conn: &mut DbConn, user_id: i64, current: &str) -> QueryResult<Vec<SessionRow>> {
    let mine = hash_token(current);
    let rows: Vec<SessionTuple> = web_sessions::table
        .filter(web_sessions::user_id.eq(user_id))
        .filter(web_sessions::expires_at.gt(now()))
        .order(web_sessions::created_at.desc())
        .select((
            web_sessions::public_id,
            web_sessions::token_hash,
            web_sessions::created_at,
            web_sessions::expires_at,
            web_sessions::last_seen_at,
            web_sessions::user_agent,
            web_sessions::ip_prefix,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(public_id, hash, created_at, expires_at, last_seen_at, user_agent, ip_prefix)| {
                SessionRow {
                    public_id,
                    current: hash == mine,
                    created_at,
                    expires_at,
                    last_seen_at,
                    user_agent,
                    ip_prefix,
                }
            },
        )
        .collect())
}

/// End one of the user's sessions by its public id; `None` if it is not theirs (or gone),
/// else whether it was the session of `current`.
pub fn revoke_session(
    conn: &mut DbConn,
    user_id: i64,
    public_id: &str,
    current: &str,
) -> QueryResult<Option<bool>> {
    let hash: Option<String> = web_sessions::table
        .filter(web_sessions::public_id.eq(public_id))
        .filter(web_sessions::user_id.eq(user_id))
        .select(web_sessions::token_hash)
        .first(conn)
        .optional()?;
    let Some(hash) = hash else {
        return Ok(None);
    };
    diesel::delete(web_sessions::table.filter(web_sessions::token_hash.eq(&hash))).execute(conn)?;
    Ok(Some(hash == hash_token(current)))
}

/// End all of the user's sessions except the one of `keep`; how many ended.
pub fn end_sessions_except(
    conn: &mut DbConn,
    user_id: i64,
    keep: Option<&str>,
) -> QueryResult<usize> {
    let keep = keep.map(hash_token).unwrap_or_default();
    diesel::delete(
        web_sessions::table
            .filter(web_sessions::user_id.eq(user_id))
            .filter(web_sessions::token_hash.ne(keep)),
    )
    .execute(conn)
}

pub fn end_session(conn: &mut DbConn, token: &str) -> QueryResult<()> {
    diesel::delete(web_sessions::table.filter(web_sessions::token_hash.eq(hash_token(token))))
        .execute(conn)?;
    Ok(())
}

/// The stored password hash of a user (for a check done off the connection).
pub fn password_hash_of(conn: &mut DbConn, user_id: i64) -> QueryResult<Option<String>> {
    Ok(users::table
        .find(user_id)
        .select(users::password_hash)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten())
}

/// Replace the password hash if it is still `old` (the person's own change: the check of
/// the current password ran outside the transaction); clears `must_change_password`.
pub fn replace_password_hash(
    conn: &mut DbConn,
    user_id: i64,
    old: &str,
    new: &str,
) -> QueryResult<bool> {
    Ok(diesel::update(
        users::table
            .find(user_id)
            .filter(users::password_hash.eq(old)),
    )
    .set((
        users::password_hash.eq(Some(new)),
        users::must_change_password.eq(false),
    ))
    .execute(conn)?
        == 1)
}

/// Set a password for someone (the command line): stores the hash, whether it must be
/// replaced at the next sign-in, and ends all their sessions. How many sessions ended.
pub fn reset_password(
    conn: &mut DbConn,
    user_id: i64,
    password: &str,
    must_change: bool,
) -> QueryResult<usize> {
    let hash = hash_password(password);
    diesel::update(users::table.find(user_id))
        .set((
            users::password_hash.eq(Some(hash)),
            users::must_change_password.eq(must_change),
        ))
        .execute(conn)?;
    end_sessions_except(conn, user_id, None)
}

/// One of a user's API tokens, for the settings page.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: i64,
    pub label: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

type TokenTuple = (
    i64,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

pub fn tokens_of(conn: &mut DbConn, user_id: i64) -> QueryResult<Vec<TokenRow>> {
    let rows: Vec<TokenTuple> = api_tokens::table
        .filter(api_tokens::user_id.eq(user_id))
        .order(api_tokens::id.desc())
        .select((
            api_tokens::id,
            api_tokens::label,
            api_tokens::created_at,
            api_tokens::expires_at,
            api_tokens::last_used_at,
            api_tokens::revoked_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, label, created_at, expires_at, last_used_at, revoked_at)| TokenRow {
                id,
                label,
                created_at,
                expires_at,
                last_used_at,
                revoked_at,
            },
        )
        .collect())
}

/// Revoke one of the user's tokens; `false` if it is not theirs or already revoked.
pub fn revoke_token(conn: &mut DbConn, user_id: i64, id: i64) -> QueryResult<bool> {
    Ok(diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::user_id.eq(user_id))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(Some(now())))
    .execute(conn)?
        == 1)
}
