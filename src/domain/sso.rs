//! Single sign-on's rules, without a provider or a database: who may sign in, and which
//! teams and admin rights the provider's groups give them.

use std::collections::BTreeSet;

/// What the provider said of a person (from a verified ID token, and the userinfo answer).
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    /// `None`: the provider sent no groups claim (taken as no groups).
    pub groups: Option<Vec<String>>,
}

/// The configuration the rules read (from `COUNTERSIGN_OIDC_…`).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Lower case; empty: any domain.
    pub allowed_domains: &'a [String],
    /// `(group, team)`.
    pub teams: &'a [(String, String)],
    pub admin_groups: Option<&'a [String]>,
}

/// Who signs in, and what the groups give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Lower case.
    pub email: String,
    pub name: String,
    /// Of the teams the mapping names, the ones the person is in.
    pub teams: BTreeSet<String>,
    /// Every team the mapping names (memberships of the others are left alone).
    pub managed: BTreeSet<String>,
    /// `Some`: admin rights follow the groups.
    pub admin: Option<bool>,
}

/// Why a person the provider vouched for may not sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoEmail,
    Unverified { email: String },
    Domain { email: String, allowed: Vec<String> },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoEmail => f.write_str(
                "the provider sent no email address (ask for the `email` scope, COUNTERSIGN_OIDC_SCOPES)",
            ),
            Refusal::Unverified { email } => {
                write!(f, "the provider has not verified the address {email}")
            }
            Refusal::Domain { email, allowed } => write!(
                f,
                "{email} is not an address of {} (COUNTERSIGN_OIDC_ALLOWED_DOMAINS)",
                allowed.join(", ")
            ),
        }
    }
}

/// The groups in a claim's value: a list of names, or one name.
pub fn groups_of(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str())
            .map(str::to_string)
            .collect(),
        serde_json::Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub fn decide(c: &Claims, p: Policy<'_>) -> Result<Decision, Refusal> {
    let email = c
        .email
        .as_deref()
        .map(|e| e.trim().to_lowercase())
        .filter(|e| e.contains('@'))
        .ok_or(Refusal::NoEmail)?;
    if c.email_verified == Some(false) {
        return Err(Refusal::Unverified { email });
    }
    let domain = email.rsplit('@').next().unwrap_or_default();
    if !p.allowed_domains.is_empty() && !p.allowed_domains.iter().any(|d| d == domain) {
        return Err(Refusal::Domain {
            email,
            allowed: p.allowed_domains.to_vec(),
        });
    }
    let groups: BTreeSet<&str> = c.groups.iter().flatten().map(String::as_str).collect();
    let teams = p
        .teams
        .iter()
        .filter(|(g, _)| groups.contains(g.as_str()))
        .map(|(_, t)| t.clone())
        .collect();
    let managed = p.teams.iter().map(|(_, t)| t.clone()).collect();
    let admin = p
        .admin_groups
        .map(|admins| admins.iter().any(|g| groups.contains(g.as_str())));
    let name = c
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_string());
    Ok(Decision {
        email,
        name,
        teams,
        managed,
        admin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(email: &str, groups: &[&str]) -> Claims {
        Claims {
            subject: "s1".into(),
            email: Some(email.into()),
            email_verified: Some(true),
            name: Some("Alice Example".into()),
            groups: Some(groups.iter().map(|g| g.to_string()).collect()),
        }
    }

    fn map() -> Vec<(String, String)> {
        vec![
            ("req".into(), "app-owners".into()),
            ("ops".into(), "platform-ops".into()),
            ("ops-leads".into(), "platform-ops".into()),
        ]
    }

    #[test]
    fn groups_give_the_mapped_teams_and_admin() {
        let (domains, teams, admins) = (
            vec!["corp.example".to_string()],
            map(),
            vec!["cs-admins".to_string()],
        );
        let p = Policy {
            allowed_domains: &domains,
            teams: &teams,
            admin_groups: Some(&admins),
        };
        let d = decide(
            &claims("Alice@Corp.Example", &["req", "ops-leads", "other"]),
            p,
        )
        .unwrap();
        assert_eq!(d.email, "alice@corp.example");
        assert_eq!(d.name, "Alice Example");
        assert_eq!(
            d.teams.iter().map(String::as_str).collect::<Vec<_>>(),
            ["app-owners", "platform-ops"]
        );
        assert_eq!(d.managed.len(), 2);
        assert_eq!(d.admin, Some(false));
        let d = decide(&claims("a@corp.example", &["cs-admins"]), p).unwrap();
        assert!(d.teams.is_empty());
        assert_eq!(d.admin, Some(true));
        // No groups claim at all: no mapped team (the safe side), not an error.
        let mut c = claims("a@corp.example", &[]);
        c.groups = None;
        assert!(decide(&c, p).unwrap().teams.is_empty());
        // Admin rights left alone without COUNTERSIGN_OIDC_ADMIN_GROUPS.
        let p = Policy {
            admin_groups: None,
            ..p
        };
        assert_eq!(
            decide(&claims("a@corp.example", &["cs-admins"]), p)
                .unwrap()
                .admin,
            None
        );
    }

    #[test]
    fn refusals_say_why() {
        let (domains, teams) = (vec!["corp.example".to_string()], map());
        let p = Policy {
            allowed_domains: &domains,
            teams: &teams,
            admin_groups: None,
        };
        let r = decide(&claims("mallory@corp.example.evil", &[]), p).unwrap_err();
        assert_eq!(
            r.to_string(),
            "mallory@corp.example.evil is not an address of corp.example (COUNTERSIGN_OIDC_ALLOWED_DOMAINS)"
        );
        let mut c = claims("a@corp.example", &[]);
        c.email_verified = Some(false);
        assert!(matches!(decide(&c, p), Err(Refusal::Unverified { .. })));
        c.email_verified = None;
        assert!(
            decide(&c, p).is_ok(),
            "providers that do not say are trusted"
        );
        c.email = None;
        assert_eq!(decide(&c, p), Err(Refusal::NoEmail));
        c.email = Some("no-at-sign".into());
        assert_eq!(decide(&c, p), Err(Refusal::NoEmail));
        let any = Policy {
            allowed_domains: &[],
            ..p
        };
        assert!(decide(&claims("x@anywhere.example", &[]), any).is_ok());
    }

    #[test]
    fn a_groups_claim_is_a_list_or_one_name() {
        assert_eq!(groups_of(&serde_json::json!(["a", 1, "b"])), ["a", "b"]);
        assert_eq!(groups_of(&serde_json::json!("a")), ["a"]);
        assert!(groups_of(&serde_json::json!({"a": 1})).is_empty());
    }
}
