//! Rendering: an outbox row's stored facts → subject, plain text and HTML (askama
//! templates under `templates/mail/`), and the MIME message with its threading headers.

use askama::Template;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use serde_json::Value;

use crate::db::models::OutboxRow;
use crate::domain::change::number;
use crate::domain::event::{Event, Stale, Staleness};
use crate::domain::resolution::short_fingerprint;

/// Where links in mails point and who mails come from.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub from: String,
    pub public_url: String,
}

impl MailSettings {
    pub fn of(config: &crate::config::MailConfig) -> Self {
        MailSettings {
            from: config.from.clone(),
            public_url: config.public_url.clone(),
        }
    }

    fn domain(&self) -> String {
        self.from
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_string())
            .unwrap_or_else(|| "countersign.local".into())
    }
    fn change_link(&self, id: i64) -> String {
        format!(
            "{}/changes/{}",
            self.public_url.trim_end_matches('/'),
            number(id)
        )
    }
    pub fn prefs_link(&self) -> String {
        format!(
            "{}/settings/notifications",
            self.public_url.trim_end_matches('/')
        )
    }
    /// The thread all mails of one change belong to.
    pub fn thread_id(&self, change: i64) -> String {
        format!("<change-{change}@{}>", self.domain())
    }
}

#[derive(Template)]
#[template(path = "mail/notification.txt", escape = "none")]
struct NotificationText<'a> {
    headline: &'a str,
    paragraphs: &'a [String],
    facts: &'a [(String, String)],
    link: &'a str,
    link_label: &'a str,
    reason: &'a str,
    prefs_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/notification.html")]
struct NotificationHtml<'a> {
    subject: &'a str,
    change: &'a str,
    headline: &'a str,
    paragraphs: &'a [String],
    facts: &'a [(String, String)],
    link: &'a str,
    link_label: &'a str,
    reason: &'a str,
    prefs_link: &'a str,
}

pub struct DigestItem {
    pub change: String,
    pub headline: String,
    pub link: String,
}

#[derive(Template)]
#[template(path = "mail/digest.txt", escape = "none")]
struct DigestText<'a> {
    items: &'a [DigestItem],
    prefs_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/digest.html")]
struct DigestHtml<'a> {
    items: &'a [DigestItem],
    prefs_link: &'a str,
}

#[derive(Template)]
#[template(path = "mail/notice.txt", escape = "none")]
struct NoticeText<'a> {
    body: &'a str,
    change: &'a str,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct NoticeHtml<'a> {
    subject: &'a str,
    paragraphs: &'a [String],
    change: &'a str,
}

/// A mail ready to send.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub thread: Option<String>,
    pub unsubscribe: bool,
}

/// What a notification says: headline, paragraphs, facts.
struct Content {
    subject: String,
    headline: String,
    paragraphs: Vec<String>,
    facts: Vec<(String, String)>,
    link_label: &'static str,
    reason: &'static str,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn content(p: &Value) -> Content {
    let chg = number(p["change_id"].as_i64().unwrap_or_default());
    let title = s(&p["title"]);
    let actor = s(&p["actor"]);
    let d = &p["detail"];
    let fp = p["fingerprint"]
        .as_str()
        .map(short_fingerprint)
        .unwrap_or_default();
    let mut facts = vec![
        ("Change".to_string(), format!("{chg} · {title}")),
        (
            "Operation".to_string(),
            match (p["operation_label"].as_str(), p["effect_text"].as_str()) {
                (Some(label), Some(effect)) => format!("{label} — {effect}"),
                _ => s(&p["operation"]),
            },
        ),
        ("Targets".to_string(), s(&p["summary"])),
        ("Fingerprint".to_string(), fp.clone()),
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
    let mut paragraphs = Vec::new();
    let mut link_label = "Open the change";
    let mut reason = "you take part in this change";
    let event = Event::from_stored(p["action"].as_str().unwrap_or_default(), d);
    let (subject, headline) = match &event {
        Some(Event::Submitted { .. }) => {
            link_label = "Review and sign";
            reason = "your team signs this kind of change";
            paragraphs.push(format!(
                "A sign-off applies to fingerprint {fp} only: if the target list changes, earlier sign-offs go stale and must be given again."
            ));
            (
                format!("[{chg}] Needs your sign-off: {title}"),
                format!("{actor} submitted {chg} for sign-off"),
            )
        }
        Some(Event::Signed { side, comment, .. }) => {
            if !comment.is_empty() {
                paragraphs.push(format!("“{comment}”"));
            }
            (
                format!("[{chg}] Signed by {actor}: {title}"),
                format!("{actor} signed the {side} side of {chg}"),
            )
        }
        Some(Event::Approved { .. }) => {
            paragraphs.push(format!(
                "Both teams signed fingerprint {fp}. {} can now execute it.",
                s(&p["implementing_team"])
            ));
            (
                format!("[{chg}] Approved: {title}"),
                format!("{chg} is approved"),
            )
        }
        Some(Event::SignoffsStale(Stale {
            why: Staleness::Text { fields, .. },
            ..
        })) => {
            link_label = "Read it again and sign";
            let fields: Vec<&str> = fields
                .iter()
                .map(String::as_str)
                .filter(|x| *x == "title" || *x == "rationale")
                .collect();
            paragraphs.push(format!(
                "{actor} rewrote the {} after you signed. A sign-off covers the text its signer read, so yours no longer counts: read the change again and sign if you still agree (the targets did not change; fingerprint {fp}).",
                if fields.is_empty() { "text".to_string() } else { fields.join(" and ") }
            ));
            (
                format!("[{chg}] Text changed, sign again: {title}"),
                format!("{chg} was reworded after your sign-off"),
            )
        }
        Some(Event::SignoffsStale(Stale {
            previous_fingerprint,
            reason: why,
            why:
                Staleness::Targets {
                    added,
                    removed,
                    added_sample,
                    removed_sample,
                    roots_added,
                    roots_removed,
                },
            ..
        })) => {
            link_label = "Review the difference and sign again";
            paragraphs.push(format!(
                "The resolved target list changed: {added} added, {removed} removed ({why}). Your sign-off was for {} and no longer counts; the new fingerprint is {fp}.",
                previous_fingerprint.as_deref().map(short_fingerprint).unwrap_or_default()
            ));
            for (label, list) in [
                ("Added", added_sample),
                ("Removed", removed_sample),
                ("Roots added", roots_added),
                ("Roots removed", roots_removed),
            ] {
                if !list.is_empty() {
                    let ids: Vec<&str> = list.iter().take(10).map(String::as_str).collect();
                    facts.push((label.to_string(), ids.join(", ")));
                }
            }
            (
                format!("[{chg}] Your sign-off went stale: {title}"),
                format!("The target list of {chg} changed after you signed"),
            )
        }
        Some(Event::Rejected { reason: why, .. }) => {
            paragraphs.push(format!("Reason: {why}"));
            (
                format!("[{chg}] Rejected: {title}"),
                format!("{actor} rejected {chg}"),
            )
        }
        Some(Event::Cancelled { reason: why, .. }) => {
            if let Some(r) = why.as_deref().filter(|r| !r.is_empty()) {
                paragraphs.push(format!("Reason: {r}"));
            }
            (
                format!("[{chg}] Cancelled: {title}"),
                format!("{actor} cancelled {chg}"),
            )
        }
        Some(Event::Commented { body, .. }) => {
            paragraphs.push(body.clone());
            link_label = "Reply";
            (
                format!("[{chg}] Comment from {actor}: {title}"),
                format!("{actor} commented on {chg}"),
            )
        }
        Some(Event::ExecutionStarted { targets, waves, .. }) => {
            let waves: Vec<String> = waves.iter().map(u64::to_string).collect();
            paragraphs.push(format!(
                "{targets} targets, in waves of {}.",
                waves.join(", then ")
            ));
            link_label = "Watch the progress";
            (
                format!("[{chg}] Execution started: {title}"),
                format!("{actor} started executing {chg}"),
            )
        }
        Some(Event::ExecutionHalted {
            wave,
            done,
            failed,
            reason: why,
            budget,
        }) => {
            link_label = "Resume or abort";
            paragraphs.push(match budget {
                Some(_) => format!(
                    "Halted in wave {wave} with {done} done and {failed} failed: {why}. Nothing more runs until someone of {} resumes it (once the budget has room) or aborts it.",
                    s(&p["implementing_team"])
                ),
                None => format!(
                    "Wave {wave} ended with {failed} failed and {done} done: {why}. Nothing more runs until someone of {} resumes or aborts it.",
                    s(&p["implementing_team"])
                ),
            });
            (
                format!("[{chg}] Execution HALTED: {title}"),
                format!("Execution of {chg} halted"),
            )
        }
        Some(Event::ExecutionFinished {
            state,
            done,
            failed,
            skipped,
            total,
        }) => {
            let st = state.as_str().replace('_', " ");
            paragraphs.push(format!(
                "{done} done, {failed} failed, {skipped} skipped of {total}."
            ));
            (
                format!("[{chg}] Execution {st}: {title}"),
                format!("Execution of {chg}: {st}"),
            )
        }
        Some(Event::ExecutionAborted {
            skipped,
            reason: why,
            ..
        }) => {
            // Aborted by a person: what ran before it stays; the rest is skipped.
            paragraphs.push(format!("{skipped} pending targets were skipped."));
            paragraphs.push(format!("Reason: {why}"));
            (
                format!("[{chg}] Execution aborted: {title}"),
                format!("Execution of {chg}: aborted"),
            )
        }
        Some(Event::RollbackCreated { rollback, .. }) => {
            paragraphs.push(format!(
                "{rollback} undoes {chg}: it needs its sign-offs before it can run."
            ));
            (
                format!("[{chg}] Rollback created: {title}"),
                format!("{actor} created a rollback of {chg}"),
            )
        }
        Some(Event::CustomerNoticeDrafted {
            subject,
            recipients,
            approver_team,
            ..
        }) => {
            link_label = "Review the notice";
            reason = "your team approves customer notices drafted by the other team";
            paragraphs.push(format!(
                "{actor} drafted a notice to {recipients} contact(s) of the customers of {chg}: “{subject}”. Nothing reaches them until a member of {} approves it.",
                approver_team.as_deref().unwrap_or_default()
            ));
            (
                format!("[{chg}] Customer notice to approve: {subject}"),
                format!("{actor} drafted a customer notice for {chg}"),
            )
        }
        Some(Event::SignoffExpiring(e)) => {
            link_label = "Open the change";
            reason = "you signed this change";
            paragraphs.push(format!(
                "Your {} sign-off on {chg}, given {} UTC, expires at {} UTC ({} after it was given). If {chg} has not started executing by then, your sign-off stops counting and has to be given again.",
                e.side,
                e.signed_at.format("%Y-%m-%d %H:%M"),
                e.expires_at.format("%Y-%m-%d %H:%M"),
                e.lifetime
            ));
            (
                format!("[{chg}] Your sign-off expires soon: {title}"),
                format!(
                    "Your sign-off on {chg} expires at {} UTC",
                    e.expires_at.format("%Y-%m-%d %H:%M")
                ),
            )
        }
        Some(Event::SignoffsExpired {
            signoffs,
            unapproved,
        }) => {
            link_label = "Review and sign again";
            for e in signoffs {
                paragraphs.push(format!(
                    "The {} sign-off of {}, given {} UTC, expired at {} UTC ({} after it was given) and no longer counts.",
                    e.side,
                    e.email,
                    e.signed_at.format("%Y-%m-%d %H:%M"),
                    e.expires_at.format("%Y-%m-%d %H:%M"),
                    e.lifetime
                ));
            }
            if *unapproved {
                paragraphs.push(format!(
                    "{chg} is no longer approved: it is back to awaiting sign-off and needs new sign-offs on fingerprint {fp} before it can run."
                ));
            }
            (
                format!("[{chg}] Sign-offs expired: {title}"),
                if *unapproved {
                    format!("{chg} is no longer approved: sign-offs expired")
                } else {
                    format!("Sign-offs on {chg} expired")
                },
            )
        }
        // An event this build cannot read back (written by another version).
        _ => {
            let what = s(&p["action"]).replace('_', " ");
            (format!("[{chg}] {what}: {title}"), format!("{chg}: {what}"))
        }
    };
    Content {
        subject,
        headline,
        paragraphs,
        facts,
        link_label,
        reason,
    }
}

/// The one-line headline of a notification (for digests).
pub fn headline(p: &Value) -> String {
    content(p).headline
}

/// Render a notification row.
pub fn render(row: &OutboxRow, settings: &MailSettings) -> Result<Rendered, askama::Error> {
    let p: Value = serde_json::from_str(&row.payload).unwrap_or(Value::Null);
    let change = row.change_id.unwrap_or_default();
    let link = settings.change_link(change);
    let prefs_link = settings.prefs_link();
    match row.event_kind.as_str() {
        "customer_notice" => {
            let subject = s(&p["subject"]);
            let body = s(&p["body"]);
            let chg = number(change);
            let paragraphs: Vec<String> = body
                .split("\n\n")
                .map(|x| x.trim().to_string())
                .filter(|x| !x.is_empty())
                .collect();
            Ok(Rendered {
                text: NoticeText {
                    body: &body,
                    change: &chg,
                }
                .render()?,
                html: NoticeHtml {
                    subject: &subject,
                    paragraphs: &paragraphs,
                    change: &chg,
                }
                .render()?,
                subject,
                thread: None,
                unsubscribe: false,
            })
        }
        "digest" => {
            let items: Vec<DigestItem> = p["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|i| DigestItem {
                    change: number(i["change_id"].as_i64().unwrap_or_default()),
                    headline: s(&i["headline"]),
                    link: settings.change_link(i["change_id"].as_i64().unwrap_or_default()),
                })
                .collect();
            Ok(Rendered {
                subject: format!("countersign digest: {} notification(s)", items.len()),
                text: DigestText {
                    items: &items,
                    prefs_link: &prefs_link,
                }
                .render()?,
                html: DigestHtml {
                    items: &items,
                    prefs_link: &prefs_link,
                }
                .render()?,
                thread: None,
                unsubscribe: true,
            })
        }
        _ => {
            let c = content(&p);
            let chg = number(change);
            Ok(Rendered {
                text: NotificationText {
                    headline: &c.headline,
                    paragraphs: &c.paragraphs,
                    facts: &c.facts,
                    link: &link,
                    link_label: c.link_label,
                    reason: c.reason,
                    prefs_link: &prefs_link,
                }
                .render()?,
                html: NotificationHtml {
                    subject: &c.subject,
                    change: &chg,
                    headline: &c.headline,
                    paragraphs: &c.paragraphs,
                    facts: &c.facts,
                    link: &link,
                    link_label: c.link_label,
                    reason: c.reason,
                    prefs_link: &prefs_link,
                }
                .render()?,
                subject: c.subject,
                thread: Some(settings.thread_id(change)),
                unsubscribe: true,
            })
        }
    }
}

/// `List-Unsubscribe: <url>`: where to change one's notification preferences.
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// The MIME message for a row: multipart/alternative (text, HTML), a stable Message-ID
/// (the row's), and In-Reply-To/References to the change's thread.
pub fn message(row: &OutboxRow, r: &Rendered, settings: &MailSettings) -> Result<Message, String> {
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| format!("COUNTERSIGN_MAIL_FROM `{}`: {e}", settings.from))?;
    let to: Mailbox = row
        .recipient
        .parse()
        .map_err(|e| format!("recipient `{}`: {e}", row.recipient))?;
    let mut b = Message::builder()
        .from(from)
        .to(to)
        .subject(r.subject.clone())
        .message_id(Some(format!("<{}@{}>", row.message_id, settings.domain())));
    if let Some(t) = &r.thread {
        b = b.in_reply_to(t.clone()).references(t.clone());
    }
    if r.unsubscribe {
        b = b.header(ListUnsubscribe(format!("<{}>", settings.prefs_link())));
    }
    b.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(r.text.clone()),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(r.html.clone()),
            ),
    )
    .map_err(|e| format!("cannot build the message: {e}"))
}
