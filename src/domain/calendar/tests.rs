//! The calendar's rules without a database: rules parse (each bad part named), recurring
//! windows hold exactly when they should, one-off ones too, and the two-person rule.

use chrono::{NaiveDate, NaiveDateTime};

use super::*;

fn t(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
}

fn weekly_friday() -> Freeze {
    Freeze {
        id: 1,
        name: "weekend".into(),
        severity: Severity::Hard,
        starts_at: t("2026-12-01 00:00"),
        ends_at: None,
        recurrence: Some(
            Recurrence::parse("FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=64h").unwrap(),
        ),
        operations: vec![],
        reason: String::new(),
    }
}

#[test]
fn a_rule_parses_and_normalises() {
    let r = Recurrence::parse("freq=weekly; byday=fr ; start=16:00; duration=2d16h").unwrap();
    assert_eq!(r.text(), "FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=2d16h");
    assert_eq!(r.rrule(), "FREQ=WEEKLY;BYDAY=FR");
    assert_eq!(r.duration, chrono::Duration::hours(64));
    let d = Recurrence::parse("FREQ=DAILY;START=22:00;DURATION=8h").unwrap();
    assert_eq!(d.days.len(), 7);
    assert_eq!(d.rrule(), "FREQ=DAILY");
    assert_eq!(d.text(), "FREQ=DAILY;START=22:00;DURATION=8h");
    let wk = Recurrence::parse("FREQ=DAILY;BYDAY=SA,MO;START=00:00;DURATION=90m").unwrap();
    assert_eq!(wk.rrule(), "FREQ=DAILY;BYDAY=MO,SA");
    assert_eq!(
        wk.text(),
        "FREQ=DAILY;BYDAY=MO,SA;START=00:00;DURATION=1h30m"
    );
}

#[test]
fn every_bad_part_is_named() {
    let cases = [
        ("", "the rule is empty"),
        (
            "FREQ=MONTHLY;START=10:00;DURATION=1h",
            "`FREQ=MONTHLY`: `MONTHLY` is not a frequency",
        ),
        (
            "FREQ=WEEKLY;BYDAY=XX;START=10:00;DURATION=1h",
            "`BYDAY=XX`: `XX` is not a day",
        ),
        (
            "FREQ=WEEKLY;BYDAY=FR,FR;START=10:00;DURATION=1h",
            "`FR` is listed twice",
        ),
        (
            "FREQ=WEEKLY;BYDAY=FR;START=25:00;DURATION=1h",
            "`START=25:00`: `25:00` is not a time of day",
        ),
        (
            "FREQ=WEEKLY;BYDAY=FR;START=10:00;DURATION=soon",
            "`soon` is not a duration",
        ),
        ("FREQ=WEEKLY;BYDAY=FR;START=10:00;DURATION=8d", "at most 7d"),
        ("FREQ=DAILY;START=10:00;DURATION=25h", "at most 1d"),
        (
            "FREQ=WEEKLY;START=10:00;DURATION=1h",
            "a WEEKLY rule needs BYDAY",
        ),
        ("FREQ=WEEKLY;BYDAY=FR;DURATION=1h", "needs START"),
        ("FREQ=WEEKLY;BYDAY=FR;START=10:00", "needs DURATION"),
        ("BYDAY=FR;START=10:00;DURATION=1h", "needs FREQ"),
        ("FREQ=WEEKLY;FREQ=DAILY", "`FREQ` is given twice"),
        ("FREQ=WEEKLY;COUNT=3", "`COUNT` is not a part of a rule"),
        ("FREQ", "each part is KEY=VALUE"),
        (
            "FREQ=WEEKLY;BYDAY=FR;START=10:00;DURATION=0m",
            "at least a minute",
        ),
    ];
    for (rule, says) in cases {
        let e = Recurrence::parse(rule).expect_err(rule).to_string();
        assert!(e.contains(says), "{rule}: {e}");
    }
    let long = format!("FREQ=WEEKLY;{}", "x".repeat(300));
    assert!(Recurrence::parse(&long)
        .unwrap_err()
        .to_string()
        .contains("longer than"));
}

#[test]
fn durations_parse_largest_unit_first() {
    assert_eq!(parse_duration("2d16h"), Some(chrono::Duration::hours(64)));
    assert_eq!(parse_duration("90m"), Some(chrono::Duration::minutes(90)));
    assert_eq!(parse_duration("1h30m"), Some(chrono::Duration::minutes(90)));
    assert_eq!(parse_duration("30m1h"), None);
    assert_eq!(parse_duration("1h1h"), None);
    assert_eq!(parse_duration("h"), None);
    assert_eq!(parse_duration("12"), None);
    assert_eq!(format_duration(chrono::Duration::hours(64)), "2d16h");
}

#[test]
fn a_weekly_window_holds_from_friday_afternoon_to_monday_morning() {
    let f = weekly_friday();
    // 2026-12-04 is a Friday.
    assert_eq!(
        NaiveDate::from_ymd_opt(2026, 12, 4)
            .unwrap()
            .format("%a")
            .to_string(),
        "Fri"
    );
    assert!(f.holding_at(t("2026-12-04 15:59")).is_none());
    assert_eq!(
        f.holding_at(t("2026-12-04 16:00")),
        Some((t("2026-12-04 16:00"), t("2026-12-07 08:00")))
    );
    assert!(f.holding_at(t("2026-12-05 12:00")).is_some());
    assert!(f.holding_at(t("2026-12-07 07:59")).is_some());
    assert!(f.holding_at(t("2026-12-07 08:00")).is_none());
    assert!(f.holding_at(t("2026-12-09 12:00")).is_none());
    // Every week.
    assert!(f.holding_at(t("2027-03-13 00:00")).is_some());
    // Not before the rule's first moment.
    assert!(f.holding_at(t("2026-11-28 12:00")).is_none());
    // Until: no occurrence starts at or after it; one that started before runs its course.
    let mut until = f.clone();
    until.ends_at = Some(t("2026-12-11 12:00"));
    assert!(until.holding_at(t("2026-12-05 12:00")).is_some());
    assert!(until.holding_at(t("2026-12-12 12:00")).is_none());
    assert_eq!(
        f.occurrences(t("2026-12-01 00:00"), t("2026-12-31 00:00"))
            .len(),
        4
    );
    assert_eq!(
        f.recurrence.as_ref().unwrap().first_start(f.starts_at),
        t("2026-12-04 16:00")
    );
}

#[test]
fn a_daily_window_crosses_midnight() {
    let mut f = weekly_friday();
    f.recurrence =
        Some(Recurrence::parse("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR;START=22:00;DURATION=8h").unwrap());
    assert!(f.holding_at(t("2026-12-08 23:00")).is_some()); // Tuesday night
    assert!(f.holding_at(t("2026-12-09 05:59")).is_some()); // into Wednesday
    assert!(f.holding_at(t("2026-12-09 06:00")).is_none());
    assert!(f.holding_at(t("2026-12-06 01:00")).is_none()); // Sunday: Saturday has none
    assert!(f.holding_at(t("2026-12-05 05:00")).is_some()); // Saturday morning: Friday's
}

#[test]
fn a_one_off_window_and_its_operations() {
    let mut f = weekly_friday();
    f.recurrence = None;
    f.starts_at = t("2026-12-20 00:00");
    f.ends_at = Some(t("2027-01-04 00:00"));
    f.operations = vec!["uninstall_app".into()];
    assert!(f.holding_at(t("2026-12-19 23:59")).is_none());
    assert!(f.holding_at(t("2026-12-25 12:00")).is_some());
    assert!(f.holding_at(t("2027-01-04 00:00")).is_none());
    let all = [f.clone()];
    assert_eq!(
        holding(&all, "uninstall_app", t("2026-12-25 12:00")).len(),
        1
    );
    assert!(holding(&all, "decommission_site", t("2026-12-25 12:00")).is_empty());
    assert_eq!(
        overlapping(
            &all,
            "uninstall_app",
            t("2026-12-01 00:00"),
            t("2026-12-21 00:00")
        )
        .len(),
        1
    );
    assert!(overlapping(
        &all,
        "uninstall_app",
        t("2026-12-01 00:00"),
        t("2026-12-20 00:00")
    )
    .is_empty());
}

#[test]
fn hard_freezes_come_first() {
    let mut soft = weekly_friday();
    soft.severity = Severity::Soft;
    let mut hard = weekly_friday();
    hard.id = 2;
    let all = [soft, hard];
    let h = holding(&all, "x", t("2026-12-05 00:00"));
    assert_eq!(h[0].0.id, 2);
}

#[test]
fn specs_are_checked() {
    let spec = |rec: Option<&str>, end: Option<&str>| FreezeSpec {
        name: "Year end".into(),
        severity: Severity::Hard,
        starts_at: t("2026-12-20 00:00"),
        ends_at: end.map(t),
        recurrence: rec.map(str::to_string),
        operations: vec![],
        reason: String::new(),
    };
    assert!(spec(None, Some("2027-01-04 00:00"))
        .check(|_| true)
        .unwrap()
        .is_none());
    assert_eq!(
        spec(None, None).check(|_| true).unwrap_err().field,
        "ends_at"
    );
    assert_eq!(
        spec(None, Some("2026-12-19 00:00"))
            .check(|_| true)
            .unwrap_err()
            .field,
        "ends_at"
    );
    assert_eq!(
        spec(None, Some("2028-12-19 00:00"))
            .check(|_| true)
            .unwrap_err()
            .field,
        "ends_at"
    );
    let bad = spec(Some("FREQ=HOURLY"), None).check(|_| true).unwrap_err();
    assert!(bad.recurrence && bad.message.contains("HOURLY"), "{bad:?}");
    let mut s = spec(Some("freq=weekly;byday=fr;start=16:00;duration=64h"), None);
    assert!(s.check(|_| true).unwrap().is_some());
    assert_eq!(
        s.recurrence.as_deref(),
        Some("FREQ=WEEKLY;BYDAY=FR;START=16:00;DURATION=2d16h")
    );
    let mut s = spec(None, Some("2027-01-04 00:00"));
    s.operations = vec!["nope".into()];
    assert_eq!(s.check(|o| o != "nope").unwrap_err().field, "operations");
    let mut s = spec(None, Some("2027-01-04 00:00"));
    s.starts_at = t("1999-12-31 00:00");
    assert_eq!(s.check(|_| true).unwrap_err().field, "starts_at");
    let mut s = spec(None, Some("2027-01-04 00:00"));
    s.name = " ".into();
    assert_eq!(s.check(|_| true).unwrap_err().field, "name");
}

#[test]
fn the_proposer_never_confirms() {
    use ProposalState as P;
    assert_eq!(
        may_confirm((1, true), (1, true), P::Pending),
        Err(ConfirmRefusal::OwnProposal)
    );
    assert_eq!(
        may_confirm((2, false), (1, true), P::Pending),
        Err(ConfirmRefusal::NotAdmin)
    );
    assert_eq!(
        may_confirm((2, true), (1, true), P::Confirmed),
        Err(ConfirmRefusal::NotPending(P::Confirmed))
    );
    assert_eq!(may_confirm((2, true), (1, true), P::Pending), Ok(()));
    assert_eq!(
        may_confirm((2, true), (1, false), P::Pending),
        Err(ConfirmRefusal::ProposerNotAdmin)
    );
}

#[test]
fn an_exception_is_one_more_implementer() {
    let ok = ExceptionFacts {
        in_implementing_team: true,
        approved: true,
        ..Default::default()
    };
    assert!(may_grant_exception(&ok).is_ok());
    for f in [
        ExceptionFacts {
            in_implementing_team: false,
            ..ok.clone()
        },
        ExceptionFacts {
            is_author: true,
            ..ok.clone()
        },
        ExceptionFacts {
            signed_other_side: true,
            ..ok.clone()
        },
        ExceptionFacts {
            counted_implementer: true,
            ..ok.clone()
        },
        ExceptionFacts {
            approved: false,
            ..ok.clone()
        },
    ] {
        assert!(may_grant_exception(&f).is_err(), "{f:?}");
    }
}
