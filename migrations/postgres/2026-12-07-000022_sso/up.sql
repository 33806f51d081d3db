-- Single sign-on (issue #14). Keep in step with the other backend.
-- A person's identity at an OpenID provider: the provider's (issuer, subject) pair is
-- what identifies them there for good (an email address can be reassigned).
CREATE TABLE sso_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id BIGINT NOT NULL REFERENCES users(id),
    created_at TIMESTAMP NOT NULL,
    last_login_at TIMESTAMP NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX sso_identities_user ON sso_identities(user_id);
-- A sign-in under way at the provider: found by the hash of its `state`, bound to the
-- browser that started it (the hash of a cookie's value), used once, for ten minutes.
CREATE TABLE sso_logins (
    state_hash TEXT PRIMARY KEY NOT NULL,
    browser_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    next_path TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sso_logins_expires ON sso_logins(expires_at);
