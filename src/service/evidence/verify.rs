//! The offline check of an evidence bundle (no database): every file's SHA-256 and size
//! against the manifest, the chain segment's links and hashes recomputed with the server's
//! hash function (`db::audit::event_hash`), and the change's events (`events.json`) against
//! the segment, both ways. Two passes over the archive keep memory to the manifest, the
//! change's events and one chain row at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{CHAIN, EVENTS, FORMAT, MANIFEST};
use crate::db::audit::{event_hash, HASHED_TIME};
use crate::service::views::number;

/// One thing checked, and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    pub ok: bool,
    pub what: String,
}

/// Everything checked, in order.
#[derive(Debug, Default)]
pub struct Report {
    /// `CHG-12`, once the manifest was read.
    pub change: Option<String>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.ok)
    }
    fn pass(&mut self, what: impl Into<String>) {
        self.checks.push(Check {
            ok: true,
            what: what.into(),
        });
    }
    fn fail(&mut self, what: impl Into<String>) {
        self.checks.push(Check {
            ok: false,
            what: what.into(),
        });
    }
}

#[derive(Debug, Deserialize)]
struct FileEntry {
    name: String,
    sha256: String,
    bytes: u64,
}

#[derive(Debug, Deserialize)]
struct Head {
    id: i64,
    hash: String,
}

#[derive(Debug, Deserialize)]
struct Segment {
    first_id: Option<i64>,
    last_id: Option<i64>,
    events: u64,
    prev_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    format: String,
    change_id: i64,
    chain_head: Head,
    segment: Segment,
    files: Vec<FileEntry>,
}

#[derive(Debug, Deserialize)]
struct ChainRow {
    id: i64,
    at: String,
    actor: String,
    action: String,
    change_id: Option<i64>,
    detail: String,
    prev_hash: String,
    hash: String,
}

#[derive(Debug, Deserialize)]
struct EventEntry {
    id: i64,
    actor: String,
    action: String,
    change: Option<String>,
    detail: serde_json::Value,
    hash: String,
}

#[derive(Debug, Deserialize)]
struct Events {
    events: Vec<EventEntry>,
}

/// The files that are read whole (small): the manifest and the change's events.
const SMALL_LIMIT: u64 = 256 * 1024 * 1024;
/// Chain problems reported at most (the rest are counted).
const MAX_CHAIN_PROBLEMS: usize = 20;

fn entries(path: &Path) -> std::io::Result<tar::Archive<flate2::read::GzDecoder<File>>> {
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(File::open(
        path,
    )?)))
}

/// `dir/name` → `name` (a bundle's files are under its one directory).
fn inner_name(entry_path: &Path) -> String {
    let mut parts = entry_path.components();
    parts.next();
    parts.as_path().to_string_lossy().into_owned()
}

/// Check bundle `path`. An unreadable archive is a failed check, not an error.
pub fn verify(path: &Path) -> Report {
    let mut report = Report::default();
    let (manifest, events) = match first_pass(path) {
        Ok(found) => found,
        Err(e) => {
            report.fail(format!(
                "{}: not a readable evidence bundle (.tar.gz): {e}",
                path.display()
            ));
            return report;
        }
    };
    let Some(manifest) = manifest else {
        report.fail(format!("{MANIFEST} is missing from the bundle"));
        return report;
    };
    let manifest: Manifest = match serde_json::from_slice(&manifest) {
        Ok(m) => m,
        Err(e) => {
            report.fail(format!("{MANIFEST} cannot be read: {e}"));
            return report;
        }
    };
    report.change = Some(number(manifest.change_id));
    if manifest.format == FORMAT {
        report.pass(format!("{MANIFEST}: format {FORMAT}"));
    } else {
        report.fail(format!(
            "{MANIFEST}: format `{}`, this build reads `{FORMAT}`",
            manifest.format
        ));
    }
    let mut chain = ChainCheck::new(manifest.change_id);
    if let Err(e) = second_pass(path, &manifest, &mut chain, &mut report) {
        report.fail(format!("the bundle could not be read to its end: {e}"));
        return report;
    }
    chain.finish(&manifest, &mut report);
    check_events(&manifest, events.as_deref(), &chain, &mut report);
    report
}

/// The manifest's and `events.json`'s bytes.
type Small = (Option<Vec<u8>>, Option<Vec<u8>>);

fn first_pass(path: &Path) -> std::io::Result<Small> {
    let mut archive = entries(path)?;
    let (mut manifest, mut events) = (None, None);
    for entry in archive.entries()? {
        let entry = entry?;
        let name = inner_name(&entry.path()?);
        let slot = match name.as_str() {
            MANIFEST => &mut manifest,
            EVENTS => &mut events,
            _ => continue,
        };
        let mut buf = Vec::new();
        entry.take(SMALL_LIMIT).read_to_end(&mut buf)?;
        *slot = Some(buf);
    }
    Ok((manifest, events))
}

/// A reader that hashes and counts what is read through it.
struct Hashing<R: Read> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn second_pass(
    path: &Path,
    manifest: &Manifest,
    chain: &mut ChainCheck,
    report: &mut Report,
) -> std::io::Result<()> {
    let listed: BTreeMap<&str, &FileEntry> = manifest
        .files
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    let mut seen = BTreeSet::new();
    let mut archive = entries(path)?;
    for entry in archive.entries()? {
        let entry = entry?;
        let name = inner_name(&entry.path()?);
        if name == MANIFEST {
            continue;
        }
        let mut r = Hashing {
            inner: entry,
            hasher: Sha256::new(),
            bytes: 0,
        };
        if name == CHAIN {
            let mut lines = BufReader::new(&mut r);
            let mut text = String::new();
            let mut n = 0u64;
            loop {
                text.clear();
                if lines.read_line(&mut text)? == 0 {
                    break;
                }
                n += 1;
                chain.row(n, text.trim_end_matches('\n'));
            }
        } else {
            std::io::copy(&mut r, &mut std::io::sink())?;
        }
        let sha = hex::encode(r.hasher.finalize());
        if !seen.insert(name.clone()) {
            report.fail(format!("file {name}: appears twice in the bundle"));
            continue;
        }
        match listed.get(name.as_str()) {
            None => report.fail(format!("file {name}: not in the manifest")),
            Some(f) if f.sha256 != sha || f.bytes != r.bytes => report.fail(format!(
                "file {name}: SHA-256 {sha} ({} bytes), the manifest says {} ({} bytes): the file was changed",
                r.bytes, f.sha256, f.bytes
            )),
            Some(_) => report.pass(format!("file {name}: SHA-256 matches the manifest")),
        }
    }
    for name in listed.keys() {
        if !seen.contains(*name) {
            report.fail(format!(
                "file {name}: in the manifest but not in the bundle"
            ));
        }
    }
    Ok(())
}

/// The chain segment, checked one row at a time.
struct ChainCheck {
    change_id: i64,
    first: Option<(i64, String)>,
    last: Option<(i64, String)>,
    rows: u64,
    problems: Vec<String>,
    more_problems: usize,
    /// The change's rows in the segment: id → (hash, actor, action, detail).
    of_change: BTreeMap<i64, (String, String, String, String)>,
}

impl ChainCheck {
    fn new(change_id: i64) -> Self {
        ChainCheck {
            change_id,
            first: None,
            last: None,
            rows: 0,
            problems: Vec::new(),
            more_problems: 0,
            of_change: BTreeMap::new(),
        }
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_CHAIN_PROBLEMS {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }

    fn row(&mut self, line_no: u64, text: &str) {
        let r: ChainRow = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                self.problem(format!("{CHAIN} line {line_no} is not an audit row: {e}"));
                return;
            }
        };
        self.rows += 1;
        match &self.last {
            None => self.first = Some((r.id, r.prev_hash.clone())),
            Some((prev_id, prev_hash)) => {
                let (prev_id, prev_hash) = (*prev_id, prev_hash.clone());
                if r.id != prev_id + 1 {
                    self.problem(format!(
                        "event {}: missing from the chain segment (after event {prev_id} comes event {})",
                        prev_id + 1,
                        r.id
                    ));
                }
                if r.prev_hash != prev_hash {
                    self.problem(format!(
                        "event {}: its prev_hash is not the hash of event {prev_id} before it (an event was removed or altered)",
                        r.id
                    ));
                }
            }
        }
        match chrono::NaiveDateTime::parse_from_str(&r.at, HASHED_TIME) {
            Ok(at) => {
                let h = event_hash(
                    &r.prev_hash,
                    r.id,
                    &at,
                    &r.actor,
                    &r.action,
                    r.change_id,
                    &r.detail,
                );
                if h != r.hash {
                    self.problem(format!(
                        "event {}: its content does not match its hash (the row was altered)",
                        r.id
                    ));
                }
            }
            Err(e) => self.problem(format!(
                "event {}: its time `{}` is unreadable: {e}",
                r.id, r.at
            )),
        }
        if r.change_id == Some(self.change_id) {
            self.of_change
                .insert(r.id, (r.hash.clone(), r.actor, r.action, r.detail));
        }
        self.last = Some((r.id, r.hash));
    }

    fn finish(&self, m: &Manifest, report: &mut Report) {
        for p in &self.problems {
            report.fail(p.clone());
        }
        if self.more_problems > 0 {
            report.fail(format!(
                "{} more problems in the chain segment",
                self.more_problems
            ));
        }
        let first = self.first.as_ref().map(|f| f.0);
        let last = self.last.as_ref().map(|l| l.0);
        let prev = self.first.as_ref().map(|f| f.1.clone());
        if (first, last, self.rows, prev.as_ref())
            == (
                m.segment.first_id,
                m.segment.last_id,
                m.segment.events,
                m.segment.prev_hash.as_ref(),
            )
        {
            if self.problems.is_empty() {
                report.pass(format!(
                    "chain segment: events {} to {} ({} events) link and recompute",
                    first.unwrap_or(0),
                    last.unwrap_or(0),
                    self.rows
                ));
            }
        } else {
            report.fail(format!(
                "chain segment: holds events {} to {} ({} events), the manifest says {} to {} ({} events)",
                first.map(|i| i.to_string()).unwrap_or("-".into()),
                last.map(|i| i.to_string()).unwrap_or("-".into()),
                self.rows,
                m.segment.first_id.map(|i| i.to_string()).unwrap_or("-".into()),
                m.segment.last_id.map(|i| i.to_string()).unwrap_or("-".into()),
                m.segment.events
            ));
        }
        match &self.last {
            Some((id, hash)) if *id == m.chain_head.id && *hash != m.chain_head.hash => {
                report.fail(format!(
                    "chain head: event {id} is the head, but its hash is not the manifest's chain head hash"
                ))
            }
            Some((id, _)) if *id > m.chain_head.id => report.fail(format!(
                "chain head: the segment ends at event {id}, after the manifest's head (event {})",
                m.chain_head.id
            )),
            _ => report.pass(format!(
                "chain head at the time: event {} ({})",
                m.chain_head.id, m.chain_head.hash
            )),
        }
    }
}

/// `events.json` against the segment: each event of the change in it is the segment's row
/// (same hash, actor, action, detail), and each row of the change in the segment is in it.
fn check_events(m: &Manifest, events: Option<&[u8]>, chain: &ChainCheck, report: &mut Report) {
    let Some(bytes) = events else {
        report.fail(format!("{EVENTS} is missing from the bundle"));
        return;
    };
    let events: Events = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            report.fail(format!("{EVENTS} cannot be read: {e}"));
            return;
        }
    };
    let chg = number(m.change_id);
    let before = report.failures().count();
    let mut listed = BTreeSet::new();
    for e in &events.events {
        listed.insert(e.id);
        if e.change.as_deref() != Some(chg.as_str()) {
            report.fail(format!("event {} ({EVENTS}): not an event of {chg}", e.id));
            continue;
        }
        match chain.of_change.get(&e.id) {
            None => report.fail(format!(
                "event {} ({EVENTS}): not in the chain segment as an event of {chg}",
                e.id
            )),
            Some((hash, actor, action, detail)) => {
                let same_detail =
                    serde_json::from_str::<serde_json::Value>(detail).is_ok_and(|d| d == e.detail);
                if *hash != e.hash || *actor != e.actor || *action != e.action || !same_detail {
                    report.fail(format!(
                        "event {} ({EVENTS}): differs from its row in the chain segment",
                        e.id
                    ));
                }
            }
        }
    }
    for id in chain.of_change.keys() {
        if !listed.contains(id) {
            report.fail(format!(
                "event {id}: an event of {chg} in the chain segment but missing from {EVENTS}"
            ));
        }
    }
    if report.failures().count() == before {
        report.pass(format!(
            "{EVENTS}: all {} events of {chg} are in the chain segment, and it has no others",
            events.events.len()
        ));
    }
}
