//! What a notification says, per event: subject, headline, paragraphs, facts and the link.
//! The common part (the change, its operation, targets, fingerprint, undo, tier, expiry
//! and teams) is the same in every mail; each event's own words come from one function
//! ([`words`] hands each event to it). `mail.rs` turns the result into a MIME message.

use serde_json::Value;

use crate::domain::change::number;
use crate::domain::event::{Event, SignoffExpiry, Stale, Staleness};
use crate::domain::resolution::short_fingerprint;
use crate::domain::signoff::Side;

/// What a notification says: headline, paragraphs, facts.
pub(super) struct Content {
    pub(super) subject: String,
    pub(super) headline: String,
    pub(super) paragraphs: Vec<String>,
    pub(super) facts: Vec<(String, String)>,
    pub(super) link_label: &'static str,
    pub(super) reason: &'static str,
}

/// A payload value as text (`""` for null).
pub(super) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The change a mail is about, as its words name it.
struct About {
    chg: String,
    title: String,
    actor: String,
    /// The short fingerprint.
    fp: String,
    implementing_team: String,
}

/// One event's words: what it adds to the common part of the mail.
struct Words {
    subject: String,
    headline: String,
    paragraphs: Vec<String>,
    facts: Vec<(String, String)>,
    link_label: &'static str,
    reason: &'static str,
}

impl Words {
    fn new(subject: String, headline: String) -> Words {
        Words {
            subject,
            headline,
            paragraphs: Vec::new(),
            facts: Vec::new(),
            link_label: "Open the change",
            reason: "you take part in this change",
        }
    }

    fn say(mut self, paragraph: impl Into<String>) -> Words {
        self.paragraphs.push(paragraph.into());
        self
    }

    fn link(mut self, label: &'static str) -> Words {
        self.link_label = label;
        self
    }

    fn because(mut self, reason: &'static str) -> Words {
        self.reason = reason;
        self
    }
}

/// The facts every mail of a change lists.
fn common_facts(p: &Value, a: &About) -> Vec<(String, String)> {
    let mut facts = vec![
        ("Change".to_string(), format!("{} · {}", a.chg, a.title)),
        (
            "Operation".to_string(),
            match (p["operation_label"].as_str(), p["effect_text"].as_str()) {
                (Some(label), Some(effect)) => format!("{label} — {effect}"),
                _ => s(&p["operation"]),
            },
        ),
        ("Targets".to_string(), s(&p["summary"])),
        ("Fingerprint".to_string(), a.fp.clone()),
    ];
    if let Some(undo) = p["undo"].as_str() {
        facts.push(("Undo".to_string(), undo.to_string()));
    }
    if let Some(tier) = p["tier"].as_str() {
        facts.push(("Sign-offs".to_string(), format!("risk {tier}")));
    }
    if let Some(life) = p["signoffs_expire_after"].as_str() {
        facts.push((
            "Expiry".to_string(),
            format!("a sign-off counts for {life} after it is given"),
        ));
    }
    facts.push((
        "Teams".to_string(),
        format!(
            "requested by {}, implemented by {}",
            s(&p["requesting_team"]),
            s(&p["implementing_team"])
        ),
    ));
    facts
}

/// What the notification of payload `p` says.
pub(super) fn content(p: &Value) -> Content {
    let a = About {
        chg: number(p["change_id"].as_i64().unwrap_or_default()),
        title: s(&p["title"]),
        actor: s(&p["actor"]),
        fp: p["fingerprint"]
            .as_str()
            .map(short_fingerprint)
            .unwrap_or_default(),
        implementing_team: s(&p["implementing_team"]),
    };
    let mut facts = common_facts(p, &a);
    let event = Event::from_stored(p["action"].as_str().unwrap_or_default(), &p["detail"]);
    let w = event
        .as_ref()
        .and_then(|e| words(e, &a))
        .unwrap_or_else(|| {
            // An event this build cannot read back (written by another version).
            let what = s(&p["action"]).replace('_', " ");
            Words::new(
                format!("[{}] {what}: {}", a.chg, a.title),
                format!("{}: {what}", a.chg),
            )
        });
    facts.extend(w.facts);
    Content {
        subject: w.subject,
        headline: w.headline,
        paragraphs: w.paragraphs,
        facts,
        link_label: w.link_label,
        reason: w.reason,
    }
}

/// Each event's words; `None` for events nobody is mailed about.
fn words(e: &Event, a: &About) -> Option<Words> {
    let (chg, title, actor) = (&a.chg, &a.title, &a.actor);
    Some(match e {
        Event::Submitted { .. } => submitted(a),
        Event::Signed { side, comment, .. } => signed(a, *side, comment),
        Event::Approved { reviewer, .. } => Words::new(
            format!("[{chg}] Approved: {title}"),
            format!("{chg} is approved"),
        )
        .say(format!(
            "{} signed fingerprint {}. {} can now execute it.",
            if reviewer.is_empty() {
                "Both teams"
            } else {
                "Both teams and the third side"
            },
            a.fp,
            a.implementing_team
        )),
        Event::SignoffsStale(st) => stale(a, st),
        Event::Rejected { reason, .. } => Words::new(
            format!("[{chg}] Rejected: {title}"),
            format!("{actor} rejected {chg}"),
        )
        .say(format!("Reason: {reason}")),
        Event::Cancelled { reason, .. } => {
            let w = Words::new(
                format!("[{chg}] Cancelled: {title}"),
                format!("{actor} cancelled {chg}"),
            );
            match reason.as_deref().filter(|r| !r.is_empty()) {
                Some(r) => w.say(format!("Reason: {r}")),
                None => w,
            }
        }
        Event::Commented { body, .. } => Words::new(
            format!("[{chg}] Comment from {actor}: {title}"),
            format!("{actor} commented on {chg}"),
        )
        .say(body.clone())
        .link("Reply"),
        Event::ExecutionStarted { targets, waves, .. } => {
            let waves: Vec<String> = waves.iter().map(u64::to_string).collect();
            Words::new(
                format!("[{chg}] Execution started: {title}"),
                format!("{actor} started executing {chg}"),
            )
            .say(format!(
                "{targets} targets, in waves of {}.",
                waves.join(", then ")
            ))
            .link("Watch the progress")
        }
        Event::ExecutionHalted {
            wave,
            done,
            failed,
            reason,
            budget,
        } => halted(a, (*wave, *done, *failed), reason, budget.is_some()),
        Event::ExecutionPaused { wave, reason } => Words::new(
            format!("[{chg}] Paused after wave {wave}, waiting for an implementer: {title}"),
            format!("Execution of {chg}: paused after wave {wave}"),
        )
        .say(format!("{}.", reason))
        .say(format!(
            "Nothing more runs until a member of {} continues it (or aborts it).",
            a.implementing_team
        ))
        .link("Continue or abort")
        .because("the operation pauses here for a person to decide"),
        Event::StartUnscheduled { reason, .. } => Words::new(
            format!("[{chg}] Scheduled start did not happen: {title}"),
            format!("The scheduled start of {chg} was refused"),
        )
        .say(format!("{reason}."))
        .say(format!(
            "Nothing ran. A member of {} can execute it by hand or schedule it again once the reason is gone.",
            a.implementing_team
        ))
        .link("Open the change")
        .because("you take part in this change"),
        Event::ExecutionPausedByOperator { wave, reason, .. } => Words::new(
            format!("[{chg}] Paused by {actor}: {title}"),
            format!("{actor} paused the execution of {chg} during wave {wave}"),
        )
        .say(format!("{reason}."))
        .say(format!(
            "Nothing more runs until a member of {} continues it (or aborts it).",
            a.implementing_team
        ))
        .link("Continue or abort")
        .because("you take part in this change"),
        Event::ExecutionFinished {
            state,
            done,
            failed,
            skipped,
            total,
        } => {
            let st = state.as_str().replace('_', " ");
            Words::new(
                format!("[{chg}] Execution {st}: {title}"),
                format!("Execution of {chg}: {st}"),
            )
            .say(format!(
                "{done} done, {failed} failed, {skipped} skipped of {total}."
            ))
        }
        // Aborted by a person: what ran before it stays; the rest is skipped.
        Event::ExecutionAborted {
            skipped, reason, ..
        } => Words::new(
            format!("[{chg}] Execution aborted: {title}"),
            format!("Execution of {chg}: aborted"),
        )
        .say(format!("{skipped} pending targets were skipped."))
        .say(format!("Reason: {reason}")),
        Event::RollbackCreated { rollback, .. } => Words::new(
            format!("[{chg}] Rollback created: {title}"),
            format!("{actor} created a rollback of {chg}"),
        )
        .say(format!(
            "{rollback} undoes {chg}: it needs its sign-offs before it can run."
        )),
        Event::CustomerNoticeDrafted {
            subject,
            recipients,
            approver_team,
            ..
        } => Words::new(
            format!("[{chg}] Customer notice to approve: {subject}"),
            format!("{actor} drafted a customer notice for {chg}"),
        )
        .say(format!(
            "{actor} drafted a notice to {recipients} contact(s) of the customers of {chg}: “{subject}”. Nothing reaches them until a member of {} approves it.",
            approver_team.as_deref().unwrap_or_default()
        ))
        .link("Review the notice")
        .because("your team approves customer notices drafted by the other team"),
        Event::LockdownDeclared {
            reason,
            proposed_by,
            confirmed_by,
            ..
        } => Words::new(
            format!("[{chg}] Lockdown: nothing runs — {title}"),
            format!("A lockdown is in force: {chg} does not run"),
        )
        .say(format!("Reason: {reason}."))
        .say(format!(
            "Declared by {proposed_by}, confirmed by {confirmed_by}. No execution starts; a running one pauses at its next batch and resumes by itself when two admins lift the lockdown."
        ))
        .because("you take part in a change that is approved or executing"),
        Event::LockdownLifted {
            reason,
            proposed_by,
            confirmed_by,
            ..
        } => Words::new(
            format!("[{chg}] Lockdown lifted — {title}"),
            format!("The lockdown is lifted: {chg} may run again"),
        )
        .say(format!("Reason: {reason}."))
        .say(format!(
            "Lift proposed by {proposed_by}, confirmed by {confirmed_by}. An execution the lockdown paused goes on where it stopped."
        ))
        .because("you take part in a change that is approved or executing"),
        Event::FreezeExceptionGiven {
            freeze_name,
            comment,
            ..
        } => Words::new(
            format!("[{chg}] Freeze exception given: {title}"),
            format!("{actor} gave {chg} an exception to the freeze “{freeze_name}”"),
        )
        .say(format!(
            "{chg} may run during the soft freeze “{freeze_name}” with fingerprint {}.",
            a.fp
        ))
        .say(if comment.is_empty() { "No comment.".to_string() } else { format!("Comment: {comment}") }),
        Event::SignoffExpiring(e) => expiring(a, e),
        Event::SignoffsExpired {
            signoffs,
            unapproved,
        } => expired(a, signoffs, *unapproved),
        _ => return None,
    })
}

fn submitted(a: &About) -> Words {
    Words::new(
        format!("[{}] Needs your sign-off: {}", a.chg, a.title),
        format!("{} submitted {} for sign-off", a.actor, a.chg),
    )
    .say(format!(
        "A sign-off applies to fingerprint {} only: if the target list changes, earlier sign-offs go stale and must be given again.",
        a.fp
    ))
    .link("Review and sign")
    .because("your team signs this kind of change")
}

fn signed(a: &About, side: Side, comment: &str) -> Words {
    let w = Words::new(
        format!("[{}] Signed by {}: {}", a.chg, a.actor, a.title),
        match side {
            Side::Reviewer => format!("{} signed {} as its third side (reviewer)", a.actor, a.chg),
            _ => format!("{} signed the {side} side of {}", a.actor, a.chg),
        },
    );
    if comment.is_empty() {
        w
    } else {
        w.say(format!("“{comment}”"))
    }
}

/// A sign-off went stale: the text was rewritten, or the target list changed (with what
/// was added and removed, targets and roots).
fn stale(a: &About, st: &Stale) -> Words {
    let (chg, title, fp) = (&a.chg, &a.title, &a.fp);
    match &st.why {
        Staleness::Text { fields, .. } => {
            let fields: Vec<&str> = fields
                .iter()
                .map(String::as_str)
                .filter(|x| *x == "title" || *x == "rationale")
                .collect();
            Words::new(
                format!("[{chg}] Text changed, sign again: {title}"),
                format!("{chg} was reworded after your sign-off"),
            )
            .say(format!(
                "{} rewrote the {} after you signed. A sign-off covers the text its signer read, so yours no longer counts: read the change again and sign if you still agree (the targets did not change; fingerprint {fp}).",
                a.actor,
                if fields.is_empty() { "text".to_string() } else { fields.join(" and ") }
            ))
            .link("Read it again and sign")
        }
        Staleness::Targets {
            added,
            removed,
            added_sample,
            removed_sample,
            roots_added,
            roots_removed,
        } => {
            let mut w = Words::new(
                format!("[{chg}] Your sign-off went stale: {title}"),
                format!("The target list of {chg} changed after you signed"),
            )
            .say(format!(
                "The resolved target list changed: {added} added, {removed} removed ({}). Your sign-off was for {} and no longer counts; the new fingerprint is {fp}.",
                st.reason,
                st.previous_fingerprint.as_deref().map(short_fingerprint).unwrap_or_default()
            ))
            .link("Review the difference and sign again");
            for (label, list) in [
                ("Added", added_sample),
                ("Removed", removed_sample),
                ("Roots added", roots_added),
                ("Roots removed", roots_removed),
            ] {
                if !list.is_empty() {
                    let ids: Vec<&str> = list.iter().take(10).map(String::as_str).collect();
                    w.facts.push((label.to_string(), ids.join(", ")));
                }
            }
            w
        }
    }
}

fn halted(a: &About, (wave, done, failed): (u32, u64, u64), why: &str, budget: bool) -> Words {
    Words::new(
        format!("[{}] Execution HALTED: {}", a.chg, a.title),
        format!("Execution of {} halted", a.chg),
    )
    .say(if budget {
        format!(
            "Halted in wave {wave} with {done} done and {failed} failed: {why}. Nothing more runs until someone of {} resumes it (once the budget has room) or aborts it.",
            a.implementing_team
        )
    } else {
        format!(
            "Wave {wave} ended with {failed} failed and {done} done: {why}. Nothing more runs until someone of {} resumes or aborts it.",
            a.implementing_team
        )
    })
    .link("Resume or abort")
}

fn expiring(a: &About, e: &SignoffExpiry) -> Words {
    let chg = &a.chg;
    Words::new(
        format!("[{chg}] Your sign-off expires soon: {}", a.title),
        format!(
            "Your sign-off on {chg} expires at {} UTC",
            e.expires_at.format("%Y-%m-%d %H:%M")
        ),
    )
    .say(format!(
        "Your {} sign-off on {chg}, given {} UTC, expires at {} UTC ({} after it was given). If {chg} has not started executing by then, your sign-off stops counting and has to be given again.",
        e.side,
        e.signed_at.format("%Y-%m-%d %H:%M"),
        e.expires_at.format("%Y-%m-%d %H:%M"),
        e.lifetime
    ))
    .because("you signed this change")
}

fn expired(a: &About, signoffs: &[SignoffExpiry], unapproved: bool) -> Words {
    let chg = &a.chg;
    let mut w = Words::new(
        format!("[{chg}] Sign-offs expired: {}", a.title),
        if unapproved {
            format!("{chg} is no longer approved: sign-offs expired")
        } else {
            format!("Sign-offs on {chg} expired")
        },
    )
    .link("Review and sign again");
    for e in signoffs {
        w = w.say(format!(
            "The {} sign-off of {}, given {} UTC, expired at {} UTC ({} after it was given) and no longer counts.",
            e.side,
            e.email,
            e.signed_at.format("%Y-%m-%d %H:%M"),
            e.expires_at.format("%Y-%m-%d %H:%M"),
            e.lifetime
        ));
    }
    if unapproved {
        w = w.say(format!(
            "{chg} is no longer approved: it is back to awaiting sign-off and needs new sign-offs on fingerprint {} before it can run.",
            a.fp
        ));
    }
    w
}
