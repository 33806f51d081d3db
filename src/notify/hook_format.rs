//! What a hook delivery says, per format: a Slack Block Kit message, a Microsoft Teams
//! Adaptive Card, or countersign's own JSON document. Pure: the facts come from the
//! outbox row's payload (written in the event's transaction), the words from the same
//! function as the mails' (`words::content`). Links open the change page: approving
//! happens there, never in chat.

use serde_json::{json, Value};

use super::words::{content, s};
use crate::domain::change::number;
use crate::domain::hook::HookFormat;

/// One delivery's facts, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The hook event (`approved`, `lockdown`, …) or `test`.
    pub kind: String,
    /// The audit action behind it (`approved`, `calendar_confirmed`, …).
    pub action: String,
    pub headline: String,
    pub actor: String,
    /// `CHG-12 · title`, for events of a change.
    pub change: Option<ChangeFacts>,
    /// Who must act now, in words.
    pub must_act: Option<String>,
    pub link: String,
    pub link_label: String,
    /// The event's own fields, as the audit trail holds them.
    pub detail: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFacts {
    pub number: String,
    pub title: String,
    /// The state as words (`awaiting sign-off`).
    pub state: String,
    pub state_code: String,
    pub operation: String,
    /// The blast-radius line: what the resolved targets are.
    pub targets: String,
    pub target_count: i64,
    pub fingerprint: Option<String>,
    pub requesting_team: String,
    pub implementing_team: String,
}

fn state_words(state: &str) -> String {
    match state {
        "awaiting_signoff" => "awaiting sign-off".into(),
        other => other.replace('_', " "),
    }
}

/// The facts of the delivery with payload `p`, its links under `public_url`.
pub fn message(kind: &str, p: &Value, public_url: &str) -> Message {
    let base = public_url.trim_end_matches('/');
    let actor = s(&p["actor"]);
    if kind == "test" {
        return Message {
            kind: kind.into(),
            action: "hook_test".into(),
            headline: format!(
                "Test from countersign: the hook `{}` of team {} reaches this channel",
                s(&p["hook"]),
                s(&p["team"])
            ),
            actor,
            change: None,
            must_act: None,
            link: format!("{base}/teams/{}/hooks", s(&p["team"])),
            link_label: "Open the team's hooks".into(),
            detail: json!({}),
        };
    }
    let detail = p["detail"].clone();
    let Some(id) = p["change_id"].as_i64() else {
        // A calendar event: every team hears of it.
        let summary = s(&detail["summary"]);
        let what = match s(&detail["calendar_action"]).as_str() {
            "create_freeze" => "Freeze confirmed",
            "edit_freeze" => "Freeze changed",
            "lift_freeze" => "Freeze lifted",
            "declare_lockdown" => "Lockdown declared",
            "lift_lockdown" => "Lockdown lifted",
            _ => "Calendar changed",
        };
        return Message {
            kind: kind.into(),
            action: s(&p["action"]),
            headline: format!(
                "{what}: {summary} (proposed by {}, confirmed by {actor})",
                s(&detail["proposed_by"])
            ),
            actor,
            change: None,
            must_act: None,
            link: format!("{base}/calendar"),
            link_label: "Open the calendar".into(),
            detail,
        };
    };
    let words = content(p);
    let chg = number(id);
    Message {
        kind: kind.into(),
        action: s(&p["action"]),
        headline: words.headline,
        actor,
        change: Some(ChangeFacts {
            number: chg.clone(),
            title: s(&p["title"]),
            state: state_words(&s(&p["state"])),
            state_code: s(&p["state"]),
            operation: match (p["operation_label"].as_str(), p["effect_text"].as_str()) {
                (Some(label), Some(effect)) => format!("{label} — {effect}"),
                _ => s(&p["operation"]),
            },
            targets: s(&p["summary"]),
            target_count: p["targets"].as_i64().unwrap_or_default(),
            fingerprint: p["fingerprint"].as_str().map(str::to_string),
            requesting_team: s(&p["requesting_team"]),
            implementing_team: s(&p["implementing_team"]),
        }),
        must_act: p["must_act"].as_str().map(str::to_string),
        link: format!("{base}/changes/{chg}"),
        link_label: format!("Open {chg}"),
        detail,
    }
}

/// Slack's mrkdwn escapes: `&`, `<` and `>` (a title cannot make a link or a mention).
fn slack_text(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Adaptive Cards render a markdown subset in text blocks, without escapes: a zero-width
/// space between `]` and `(` keeps a title from making a link.
fn card_text(t: &str) -> String {
    t.replace("](", "]\u{200B}(")
}

/// The body posted for `m` in `format`; `delivery` is the delivery's id (also a header).
pub fn body(format: HookFormat, m: &Message, delivery: &str, at: &str) -> Value {
    match format {
        HookFormat::Slack => slack(m),
        HookFormat::Teams => teams(m),
        HookFormat::Json => generic(m, delivery, at),
    }
}

fn slack(m: &Message) -> Value {
    let mut blocks = Vec::new();
    let title = match &m.change {
        Some(c) => format!(
            "*<{}|{} · {}>*\n{}",
            m.link,
            c.number,
            slack_text(&c.title),
            slack_text(&m.headline)
        ),
        None => format!("*{}*", slack_text(&m.headline)),
    };
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": title}}));
    if let Some(c) = &m.change {
        let mut fields = vec![
            json!({"type": "mrkdwn", "text": format!("*State*\n{}", c.state)}),
            json!({"type": "mrkdwn", "text": format!("*Operation*\n{}", slack_text(&c.operation))}),
        ];
        if let Some(who) = &m.must_act {
            fields.push(
                json!({"type": "mrkdwn", "text": format!("*Who must act*\n{}", slack_text(who))}),
            );
        }
        blocks.push(json!({"type": "section", "fields": fields}));
        blocks.push(json!({"type": "context", "elements": [
            {"type": "mrkdwn", "text": format!("Blast radius: {}", slack_text(&c.targets))}
        ]}));
    }
    blocks.push(json!({"type": "actions", "elements": [{
        "type": "button",
        "text": {"type": "plain_text", "text": m.link_label},
        "url": m.link,
    }]}));
    let fallback = match &m.change {
        Some(c) => format!("{} · {}: {}", c.number, c.title, m.headline),
        None => m.headline.clone(),
    };
    json!({"text": slack_text(&fallback), "blocks": blocks})
}

fn teams(m: &Message) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock", "text": card_text(&m.headline), "weight": "Bolder",
        "size": "Medium", "wrap": true,
    })];
    if let Some(c) = &m.change {
        body.push(json!({"type": "TextBlock", "text": card_text(&format!("{} · {}", c.number, c.title)), "wrap": true}));
        let mut facts = vec![
            json!({"title": "State", "value": c.state}),
            json!({"title": "Operation", "value": card_text(&c.operation)}),
            json!({"title": "Blast radius", "value": card_text(&c.targets)}),
        ];
        if let Some(who) = &m.must_act {
            facts.push(json!({"title": "Who must act", "value": card_text(who)}));
        }
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": m.link_label, "url": m.link}],
            },
        }],
    })
}

fn generic(m: &Message, delivery: &str, at: &str) -> Value {
    json!({
        "delivery_id": delivery,
        "event": m.kind,
        "action": m.action,
        "at": at,
        "actor": m.actor,
        "headline": m.headline,
        "who_must_act": m.must_act,
        "url": m.link,
        "change": m.change.as_ref().map(|c| json!({
            "id": c.number,
            "title": c.title,
            "state": c.state_code,
            "operation": c.operation,
            "targets": c.target_count,
            "blast_radius": c.targets,
            "fingerprint": c.fingerprint,
            "requesting_team": c.requesting_team,
            "implementing_team": c.implementing_team,
        })),
        "detail": m.detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved() -> Value {
        json!({
            "action": "approved", "kind": "approved", "actor": "eli@ops.example",
            "change_id": 12, "title": "Remove <b>legacy</b> *apps* [x](http://evil)",
            "operation": "uninstall_app", "operation_label": "Uninstall an app",
            "effect_text": "soft delete", "state": "approved",
            "requesting_team": "app-owners", "implementing_team": "platform-ops",
            "summary": "3 app installs on 2 sites of 1 org", "targets": 3,
            "fingerprint": "abcdef0123456789",
            "must_act": "platform-ops can execute it",
            "detail": {"fingerprint": "abcdef0123456789", "requester": ["ana@req.example"], "implementer": ["eli@ops.example"]},
        })
    }

    #[test]
    fn slack_links_the_change_and_escapes_its_title() {
        let m = message("approved", &approved(), "https://cs.example/");
        let b = body(HookFormat::Slack, &m, "d1", "t");
        let text = b["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            text.starts_with("*<https://cs.example/changes/CHG-12|CHG-12 · Remove &lt;b&gt;legacy"),
            "{text}"
        );
        assert!(text.contains("CHG-12 is approved"), "{text}");
        let fields = b["blocks"][1]["fields"].to_string();
        assert!(fields.contains("*State*\\napproved"), "{fields}");
        assert!(fields.contains("platform-ops can execute it"), "{fields}");
        assert_eq!(
            b["blocks"][2]["elements"][0]["text"],
            "Blast radius: 3 app installs on 2 sites of 1 org"
        );
        assert_eq!(
            b["blocks"][3]["elements"][0]["url"],
            "https://cs.example/changes/CHG-12"
        );
        assert!(!b["text"].as_str().unwrap().contains('<'));
    }

    #[test]
    fn teams_gets_an_adaptive_card_whose_title_cannot_link() {
        let m = message("approved", &approved(), "https://cs.example");
        let b = body(HookFormat::Teams, &m, "d1", "t");
        let card = &b["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(
            card["actions"][0]["url"],
            "https://cs.example/changes/CHG-12"
        );
        let title = card["body"][1]["text"].as_str().unwrap();
        assert!(title.contains("[x]\u{200B}(http://evil)"), "{title}");
        let facts = card["body"][2]["facts"].to_string();
        assert!(
            facts.contains("Blast radius") && facts.contains("Who must act"),
            "{facts}"
        );
    }

    #[test]
    fn json_carries_the_delivery_and_the_change() {
        let m = message("approved", &approved(), "https://cs.example");
        let b = body(HookFormat::Json, &m, "d1", "2026-12-03T10:00:00Z");
        assert_eq!(b["delivery_id"], "d1");
        assert_eq!(b["event"], "approved");
        assert_eq!(b["change"]["id"], "CHG-12");
        assert_eq!(b["change"]["state"], "approved");
        assert_eq!(b["change"]["targets"], 3);
        assert_eq!(b["who_must_act"], "platform-ops can execute it");
    }

    #[test]
    fn calendar_events_link_the_calendar() {
        let p = json!({"action": "calendar_confirmed", "actor": "rita@x", "detail": {
            "calendar_action": "declare_lockdown", "summary": "incident 42", "proposed_by": "root@x", "proposal": 1}});
        let m = message("lockdown", &p, "http://h");
        assert_eq!(m.link, "http://h/calendar");
        assert!(
            m.headline.starts_with("Lockdown declared: incident 42"),
            "{}",
            m.headline
        );
        assert!(m.change.is_none());
    }
}
