//! Teams, users, memberships and API tokens.

use diesel::prelude::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::models::{Team, User};
use super::schema::{api_tokens, team_members, teams, users, web_sessions};
use super::{now, DbConn};

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

/// The teams of several people at once (one query), by user id.
pub fn teams_of_users(
    conn: &mut DbConn,
    user_ids: &[i64],
) -> QueryResult<std::collections::HashMap<i64, Vec<String>>> {
    let rows: Vec<(i64, String)> = team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq_any(user_ids))
        .select((team_members::user_id, teams::name))
        .load(conn)?;
    let mut out: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
    for (u, t) in rows {
        out.entry(u).or_default().push(t);
    }
    Ok(out)
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

pub fn is_member(conn: &mut DbConn, user_id: i64, team: &str) -> QueryResult<bool> {
    let n: i64 = team_members::table
        .inner_join(teams::table)
        .filter(team_members::user_id.eq(user_id).and(teams::name.eq(team)))
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

/// Create an API token; the plaintext is returned once and only its hash is stored.
/// Tokens are 256 random bits, so a plain SHA-256 is a sufficient one-way store.
pub fn create_token(conn: &mut DbConn, user_id: i64, label: &str) -> QueryResult<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("cs_{}", hex::encode(bytes));
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::user_id.eq(user_id),
            api_tokens::token_hash.eq(hash_token(&token)),
            api_tokens::label.eq(label),
            api_tokens::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(token)
}

/// The user a bearer token belongs to, if the token exists and is not revoked.
pub fn user_for_token(conn: &mut DbConn, token: &str) -> QueryResult<Option<User>> {
    api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(hash_token(token)))
        .filter(api_tokens::revoked_at.is_null())
        .select(User::as_select())
        .first(conn)
        .optional()
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

pub fn hash_password(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng as PwRng, PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut PwRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing")
        .to_string()
}

/// Whether `password` matches the stored hash (constant-time inside argon2).
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new browser session: (cookie token, CSRF token). Only the token's hash is stored.
pub fn create_session(
    conn: &mut DbConn,
    user_id: i64,
    ttl: chrono::Duration,
) -> QueryResult<(String, String)> {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut a);
    rand::rngs::OsRng.fill_bytes(&mut b);
    let token = hex::encode(a);
    let csrf = hex::encode(b);
    let t = now();
    diesel::insert_into(web_sessions::table)
        .values((
            web_sessions::token_hash.eq(hash_token(&token)),
            web_sessions::user_id.eq(user_id),
            web_sessions::csrf_token.eq(&csrf),
            web_sessions::created_at.eq(t),
            web_sessions::expires_at.eq(t + ttl),
        ))
        .execute(conn)?;
    // Old sessions of anyone go when they expire.
    diesel::delete(web_sessions::table.filter(web_sessions::expires_at.lt(t))).execute(conn)?;
    Ok((token, csrf))
}

/// The user and CSRF token of a live session.
pub fn session(conn: &mut DbConn, token: &str) -> QueryResult<Option<(User, String)>> {
    web_sessions::table
        .inner_join(users::table)
        .filter(web_sessions::token_hash.eq(hash_token(token)))
        .filter(web_sessions::expires_at.gt(now()))
        .select((User::as_select(), web_sessions::csrf_token))
        .first(conn)
        .optional()
}

pub fn end_session(conn: &mut DbConn, token: &str) -> QueryResult<()> {
    diesel::delete(web_sessions::table.filter(web_sessions::token_hash.eq(hash_token(token))))
        .execute(conn)?;
    Ok(())
}

/// A user's API tokens: (id, label, created, last used, revoked).
pub type TokenRow = (
    i64,
    String,
    chrono::NaiveDateTime,
    Option<chrono::NaiveDateTime>,
    Option<chrono::NaiveDateTime>,
);

pub fn tokens_of(conn: &mut DbConn, user_id: i64) -> QueryResult<Vec<TokenRow>> {
    api_tokens::table
        .filter(api_tokens::user_id.eq(user_id))
        .order(api_tokens::id.desc())
        .select((
            api_tokens::id,
            api_tokens::label,
            api_tokens::created_at,
            api_tokens::last_used_at,
            api_tokens::revoked_at,
        ))
        .load(conn)
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
