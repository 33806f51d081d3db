//! Single sign-on (OpenID Connect), read from the `oidc.…` settings.

use super::settings::*;
use super::Secret;

/// The OpenID provider countersign signs people in with, and how its groups map to
/// countersign's teams and admin rights.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer (`iss`); discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes asked for (always with `openid`).
    pub scopes: Vec<String>,
    /// Email domains allowed to sign in (lower case); empty: any.
    pub allowed_domains: Vec<String>,
    /// The claim (of the ID token, or of the userinfo answer) that lists a person's groups.
    pub groups_claim: String,
    /// `(group, team)`: members of the group are members of the team. The teams named here
    /// follow the groups at every sign-in; other teams are managed in countersign.
    pub teams: Vec<(String, String)>,
    /// Groups whose members are admins; `None`: admin rights are managed in countersign.
    pub admin_groups: Option<Vec<String>>,
    /// The provider's name on the sign-in button ("Sign in with …").
    pub label: String,
}

impl OidcConfig {
    /// The teams whose memberships follow the provider's groups.
    pub fn managed_teams(&self) -> Vec<String> {
        let mut v: Vec<String> = self.teams.iter().map(|(_, t)| t.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    pub(super) fn from_vars(vars: &Vars) -> anyhow::Result<Option<OidcConfig>> {
        let issuer = vars.set(&OIDC_ISSUER);
        let client_id = vars.set(&OIDC_CLIENT_ID);
        let client_secret = vars.set(&OIDC_CLIENT_SECRET);
        let scopes = vars.text(&OIDC_SCOPES);
        let domains = vars.set(&OIDC_ALLOWED_DOMAINS);
        let groups_claim = vars.text(&OIDC_GROUPS_CLAIM);
        let teams = vars.set(&OIDC_TEAMS);
        let admin_groups = vars.set(&OIDC_ADMIN_GROUPS);
        let label = vars.text(&OIDC_LABEL);
        let Some(issuer) = issuer else {
            for (s, v) in [
                (&OIDC_CLIENT_ID, &client_id),
                (&OIDC_CLIENT_SECRET, &client_secret),
                (&OIDC_ALLOWED_DOMAINS, &domains),
                (&OIDC_TEAMS, &teams),
                (&OIDC_ADMIN_GROUPS, &admin_groups),
            ] {
                if v.is_some() {
                    anyhow::bail!(
                        "{} is set but {} is not: single sign-on needs the provider's issuer URL",
                        s.var,
                        OIDC_ISSUER.var
                    );
                }
            }
            return Ok(None);
        };
        let issuer = issuer.trim().trim_end_matches('/').to_string();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            anyhow::bail!(
                "{}={issuer:?} must be an http(s) URL (the provider's issuer)",
                OIDC_ISSUER.var
            );
        }
        let need = |s: &Setting, v: Option<String>| {
            v.map(|v| v.trim().to_string())
                .ok_or_else(|| anyhow::anyhow!("{} is required with {}", s.var, OIDC_ISSUER.var))
        };
        let client_id = need(&OIDC_CLIENT_ID, client_id)?;
        let client_secret = Secret::new(need(&OIDC_CLIENT_SECRET, client_secret)?);
        let mut scopes: Vec<String> = scopes.split_whitespace().map(str::to_string).collect();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        let list = |v: Option<String>| -> Vec<String> {
            v.unwrap_or_default()
                .split(',')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect()
        };
        let allowed_domains = list(domains)
            .into_iter()
            .map(|d| d.trim_start_matches('@').to_lowercase())
            .collect();
        let teams = list(teams)
            .into_iter()
            .map(|pair| match pair.split_once('=') {
                Some((g, t)) if !g.trim().is_empty() && !t.trim().is_empty() => {
                    Ok((g.trim().to_string(), t.trim().to_string()))
                }
                _ => Err(anyhow::anyhow!(
                    "{}: {pair:?} is not `group=team` (a list such as `ops-admins=platform-ops,app-team=app-owners`)",
                    OIDC_TEAMS.var
                )),
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let admin_groups = admin_groups.map(|v| list(Some(v)));
        let groups_claim = groups_claim.trim().to_string();
        if groups_claim.is_empty() {
            anyhow::bail!("{} must name a claim", OIDC_GROUPS_CLAIM.var);
        }
        Ok(Some(OidcConfig {
            issuer,
            client_id,
            client_secret,
            scopes,
            allowed_domains,
            groups_claim,
            teams,
            admin_groups,
            label: label.trim().to_string(),
        }))
    }
}
