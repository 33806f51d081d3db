//! Events read back as themselves, in the shapes the chain always held.

use super::*;
use serde_json::json;

fn expiry() -> SignoffExpiry {
    let at = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap();
    SignoffExpiry {
        signoff: 7,
        email: "ben@example.com".into(),
        side: Side::Requester,
        signed_at: at,
        expires_at: at + chrono::Duration::hours(72),
        lifetime: "72 hours".into(),
    }
}

fn every_event() -> Vec<Event> {
    vec![
        Event::Created(Created::Requested {
            title: "t".into(),
            operation: "uninstall_app".into(),
            requesting_team: "a".into(),
            implementing_team: "b".into(),
            params: json!({}),
            selector: SelectorShape {
                ids: 2,
                within: Some(WithinShape {
                    kind: "org".into(),
                    ids: 1,
                }),
                filter: json!({}),
            },
            fingerprint: "f".into(),
            target_count: 2,
            roots: 1,
            errors: 0,
            schema: "s".into(),
        }),
        Event::Created(Created::Rollback {
            rollback_of: "CHG-1".into(),
            operation: "o".into(),
            effect: Effect::Restore,
            fingerprint: "f".into(),
            target_count: 1,
            warnings: vec![],
        }),
        Event::Created(Created::Restore {
            restore: RestoreSpec {
                changes: vec![3],
                ..Default::default()
            },
            operation: "o".into(),
            effect: Effect::Restore,
            fingerprint: "f".into(),
            target_count: 1,
            warnings: vec!["w".into()],
        }),
        Event::SignoffsStale(Stale {
            count: 1,
            previous_fingerprint: Some("p".into()),
            fingerprint: Some("f".into()),
            reason: "r".into(),
            why: Staleness::Text {
                text_changed: true,
                fields: vec!["title".into()],
            },
        }),
        Event::SignoffsStale(Stale {
            count: 1,
            previous_fingerprint: Some("p".into()),
            fingerprint: Some("f".into()),
            reason: "r".into(),
            why: Staleness::Targets {
                added: 1,
                removed: 0,
                added_sample: vec!["x".into()],
                removed_sample: vec![],
                roots_added: vec!["o3".into()],
                roots_removed: vec![],
            },
        }),
        Event::Signed {
            side: Side::Implementer,
            fingerprint: "f".into(),
            comment: String::new(),
            confirm_count: None,
            difference: None,
        },
        Event::Signed {
            side: Side::Requester,
            fingerprint: "f2".into(),
            comment: "re-signed".into(),
            confirm_count: None,
            difference: Some(crate::domain::difference::DifferenceCounts {
                previous_fingerprint: "f".into(),
                added: 2,
                removed: 1,
                roots_added: 1,
                roots_removed: 0,
            }),
        },
        Event::SignedIn {},
        Event::SsoSignedIn {
            issuer: "https://id.example".into(),
            subject: "248289761001".into(),
            created: true,
            linked: false,
            joined: vec!["app-owners".into()],
            left: vec![],
            admin: Some(false),
        },
        Event::SsoRefused {
            email: Some("m@evil.example".into()),
            subject: "x".into(),
            reason: "not an allowed domain".into(),
        },
        Event::SignoffsExpired {
            signoffs: vec![expiry()],
            unapproved: true,
        },
        Event::SignoffExpiring(expiry()),
        Event::ExecutionHalted {
            wave: 1,
            done: 3,
            failed: 0,
            reason: "the budget `deletions` is spent".into(),
            budget: Some("deletions".into()),
        },
        Event::ExecutionHalted {
            wave: 2,
            done: 3,
            failed: 2,
            reason: "too many failures".into(),
            budget: None,
        },
        Event::Cancelled {
            from: ChangeState::Draft,
            reason: None,
        },
        Event::NotificationPreferencesSet([("signed".to_string(), "never".to_string())].into()),
        Event::TokenCreated {
            email: None,
            label: "ci".into(),
            expires_at: None,
        },
        Event::CalendarProposed {
            proposal: 1,
            calendar_action: crate::domain::calendar::ProposalAction::CreateFreeze,
            summary: "s".into(),
            reason: "r".into(),
        },
        Event::CalendarConfirmed {
            proposal: 1,
            calendar_action: crate::domain::calendar::ProposalAction::DeclareLockdown,
            proposed_by: "a@x".into(),
            summary: "s".into(),
            freeze: None,
            lockdown: Some(2),
        },
        Event::CalendarDeclined {
            proposal: 1,
            calendar_action: crate::domain::calendar::ProposalAction::LiftFreeze,
            withdrawn: true,
            reason: None,
        },
        Event::LockdownDeclared {
            lockdown: 1,
            reason: "incident".into(),
            proposed_by: "a@x".into(),
            confirmed_by: "b@x".into(),
        },
        Event::ExecutionPausedByLockdown {
            execution_id: 3,
            wave: 1,
            lockdown: 1,
            reason: "r".into(),
        },
        Event::ExecutionResumedAfterLockdown {
            execution_id: 3,
            lockdown: 1,
            state: ExecState::Running,
        },
        Event::FreezeExceptionGiven {
            freeze: 1,
            freeze_name: "n".into(),
            fingerprint: "f".into(),
            comment: "c".into(),
        },
        Event::CalendarFeedTokenCreated {},
    ]
}

#[test]
fn every_event_reads_back_as_itself() {
    for e in every_event() {
        let back = Event::from_stored(e.action(), &e.detail());
        assert_eq!(back.as_ref(), Some(&e), "{} {}", e.action(), e.detail());
    }
}

#[test]
fn details_keep_the_stored_shapes() {
    // Events written before the enum existed read back as the same variants.
    let signed =
        json!({"side": "requester", "fingerprint": "f", "comment": "ok", "confirm_count": null});
    assert!(matches!(
        Event::from_stored("signed", &signed),
        Some(Event::Signed {
            side: Side::Requester,
            ..
        })
    ));
    assert_eq!(Event::SignedIn {}.detail(), json!({}));
    let stale = json!({"count": 2, "previous_fingerprint": "p", "fingerprint": "f", "added": 1, "removed": 2, "added_sample": [], "removed_sample": ["a"], "reason": "edited"});
    assert!(matches!(
        Event::from_stored("signoffs_stale", &stale),
        Some(Event::SignoffsStale(Stale {
            why: Staleness::Targets { removed: 2, .. },
            ..
        }))
    ));
    assert_eq!(
        Event::from_stored("signoffs_stale", &stale)
            .unwrap()
            .detail(),
        stale
    );
    assert_eq!(Event::from_stored("no_such_action", &json!({})), None);
    assert_eq!(
        Event::from_stored("signed", &json!({"side": "sideways"})),
        None
    );
}

#[test]
fn notification_kinds_are_the_preference_keys() {
    for k in NotificationKind::VALUES {
        assert_eq!(NotificationKind::parse(k.as_str()), Some(*k));
        assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
    }
    assert!(!NotificationKind::NeedsSignoff.can_mute());
}

#[test]
fn lockdowns_reach_hooks_once_by_their_confirmation() {
    use crate::domain::calendar::ProposalAction;
    use crate::domain::hook::HookKind;
    let e = Event::LockdownDeclared {
        lockdown: 1,
        reason: "r".into(),
        proposed_by: "a".into(),
        confirmed_by: "b".into(),
    };
    assert_eq!(e.hook_kind(), None);
    let c = Event::CalendarConfirmed {
        proposal: 1,
        calendar_action: ProposalAction::DeclareLockdown,
        proposed_by: "a".into(),
        summary: "s".into(),
        freeze: None,
        lockdown: Some(1),
    };
    assert_eq!(c.hook_kind(), Some(HookKind::Lockdown));
    assert!(HookKind::Lockdown.is_calendar());
    assert!(!HookKind::Approved.is_calendar());
}
