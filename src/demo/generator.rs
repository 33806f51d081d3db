//! A deterministic inventory generator: orgs, their sites and the app installations on
//! each site, as NDJSON import lines. The demo uses it for its inventory, the benchmarks
//! for theirs.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const ADJ: [&str; 16] = [
    "Acme", "Blue", "Northern", "Bright", "Swift", "Quiet", "Golden", "Iron", "Silver", "Red",
    "Open", "Clear", "Rapid", "Vast", "Prime", "Noble",
];
const NOUN: [&str; 16] = [
    "Harbor",
    "Labs",
    "Foods",
    "Logistics",
    "Health",
    "Media",
    "Energy",
    "Systems",
    "Retail",
    "Capital",
    "Works",
    "Travel",
    "Studio",
    "Farms",
    "Robotics",
    "Bank",
];
const REGIONS: [&str; 3] = ["eu", "us", "apac"];
const APPS: [&str; 4] = ["insight", "ledger", "pulse", "beacon"];

fn uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}

/// A deterministic inventory: `orgs` organisations with `sites_per_org` sites each; each
/// site has `apps_per_site` app installations (the demo varies it). Lines are NDJSON.
pub struct Generator {
    rng: StdRng,
}

pub struct GenEntity {
    pub kind: &'static str,
    pub id: String,
    pub parent: Option<String>,
    pub name: String,
    pub attrs: serde_json::Value,
}

impl GenEntity {
    pub fn line(&self) -> String {
        json!({"kind": self.kind, "id": self.id, "parent": self.parent, "name": self.name, "attrs": self.attrs}).to_string()
    }
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Calls `emit` for every entity, parents before children.
    pub fn generate(
        &mut self,
        orgs: usize,
        sites_per_org: usize,
        apps: impl Fn(usize, &mut StdRng) -> Vec<&'static str>,
        mut emit: impl FnMut(GenEntity),
    ) {
        let mut site_no = 0usize;
        for o in 0..orgs {
            let org_id = format!("org-{:08x}", self.rng.gen::<u32>());
            let org_name = format!("{} {} {}", ADJ[o % 16], NOUN[(o / 16) % 16], o / 256 + 1);
            let slug = org_name.to_lowercase().replace(' ', "-");
            emit(GenEntity {
                kind: "org",
                id: org_id.clone(),
                parent: None,
                name: org_name,
                attrs: json!({"plan": if o % 5 == 0 { "legacy" } else { "standard" }, "region": REGIONS[o % 3]}),
            });
            for s in 0..sites_per_org {
                let site_id = uuid(&mut self.rng);
                let site_name = format!("{slug}-{}.example.net", s + 1);
                emit(GenEntity {
                    kind: "site",
                    id: site_id.clone(),
                    parent: Some(org_id.clone()),
                    name: site_name.clone(),
                    attrs: json!({"url": format!("https://{site_name}"), "tier": if s == 0 { "production" } else { "staging" }}),
                });
                for app in apps(site_no, &mut self.rng) {
                    let id = uuid(&mut self.rng);
                    emit(GenEntity {
                        kind: "app_install",
                        id,
                        parent: Some(site_id.clone()),
                        name: format!("{app} on {site_name}"),
                        attrs: json!({"app": app, "version": format!("{}.{}.{}", 1 + site_no % 3, site_no % 10, site_no % 7)}),
                    });
                }
                site_no += 1;
            }
        }
    }
}

/// The demo's apps per site: every 50th site is empty; `insight` on about 1 site in 7.
pub fn demo_apps(site: usize, rng: &mut StdRng) -> Vec<&'static str> {
    if site % 50 == 49 {
        return vec![];
    }
    let mut v = vec![APPS[1 + site % 3]];
    if site % 7 == 0 {
        v.push("insight");
    }
    if rng.gen_bool(0.3) {
        let extra = APPS[1 + (site + 1) % 3];
        if !v.contains(&extra) {
            v.push(extra);
        }
    }
    v
}
