//! Rendering: an outbox row's stored facts → subject, plain text and HTML (askama
//! templates under `templates/mail/`), and the MIME message with its threading headers.

use askama::Template;
use lettre::message::header::{ContentType, Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use serde_json::Value;

use super::words::{content, s};
use crate::db::models::OutboxRow;
use crate::domain::change::number;

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
