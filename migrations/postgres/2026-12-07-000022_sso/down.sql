DROP INDEX sso_logins_expires;
DROP TABLE sso_logins;
DROP INDEX sso_identities_user;
DROP TABLE sso_identities;
