//! Single sign-on's storage: sign-ins under way at the provider (`sso_logins`) and the
//! people's identities there (`sso_identities`).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{sso_identities, sso_logins};
use super::{now, DbConn};

/// A sign-in under way, as stored (the state itself only as its hash).
#[derive(Debug, Clone, Queryable)]
pub struct PendingLogin {
    pub state_hash: String,
    pub browser_hash: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub next_path: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Store a sign-in under way; expired ones of anyone go at the same time.
pub fn insert_login(conn: &mut DbConn, login: &PendingLogin) -> QueryResult<()> {
    diesel::delete(sso_logins::table.filter(sso_logins::expires_at.lt(now()))).execute(conn)?;
    diesel::insert_into(sso_logins::table)
        .values((
            sso_logins::state_hash.eq(&login.state_hash),
            sso_logins::browser_hash.eq(&login.browser_hash),
            sso_logins::nonce.eq(&login.nonce),
            sso_logins::pkce_verifier.eq(&login.pkce_verifier),
            sso_logins::next_path.eq(&login.next_path),
            sso_logins::created_at.eq(login.created_at),
            sso_logins::expires_at.eq(login.expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Take (read and delete, so it is used once) the sign-in whose state hashes to
/// `state_hash`.
pub fn take_login(conn: &mut DbConn, state_hash: &str) -> QueryResult<Option<PendingLogin>> {
    // One statement: two requests with the same state cannot both get it.
    diesel::delete(sso_logins::table.find(state_hash))
        .returning(sso_logins::all_columns)
        .get_result(conn)
        .optional()
}

/// The person an identity at `issuer` belongs to.
pub fn user_of(conn: &mut DbConn, issuer: &str, subject: &str) -> QueryResult<Option<i64>> {
    sso_identities::table
        .find((issuer, subject))
        .select(sso_identities::user_id)
        .first(conn)
        .optional()
}

/// Whether the person has an identity at `issuer`.
pub fn has_identity(conn: &mut DbConn, user_id: i64, issuer: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        sso_identities::table
            .filter(sso_identities::user_id.eq(user_id))
            .filter(sso_identities::issuer.eq(issuer)),
    ))
    .get_result(conn)
}

/// Link an identity to a person.
pub fn link(conn: &mut DbConn, issuer: &str, subject: &str, user_id: i64) -> QueryResult<()> {
    let t = now();
    diesel::insert_into(sso_identities::table)
        .values((
            sso_identities::issuer.eq(issuer),
            sso_identities::subject.eq(subject),
            sso_identities::user_id.eq(user_id),
            sso_identities::created_at.eq(t),
            sso_identities::last_login_at.eq(t),
        ))
        .execute(conn)?;
    Ok(())
}

/// Record a sign-in with an identity.
pub fn touch(conn: &mut DbConn, issuer: &str, subject: &str) -> QueryResult<()> {
    diesel::update(sso_identities::table.find((issuer, subject)))
        .set(sso_identities::last_login_at.eq(now()))
        .execute(conn)?;
    Ok(())
}
