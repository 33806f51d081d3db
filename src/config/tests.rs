//! The configuration's tests: defaults, overrides, start-up errors, secrets.

use super::*;

fn parse(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(&move |name| vars.get(name).cloned())
}

fn error(vars: &[(&str, &str)]) -> String {
    format!("{:#}", parse(vars).expect_err("a start-up error"))
}

#[test]
fn the_defaults_are_the_documented_values() {
    let c = Config::defaults();
    assert_eq!(
        c.database,
        DatabaseUrl::Sqlite(PathBuf::from("countersign.db"))
    );
    assert_eq!(c.bind, "127.0.0.1:8080");
    assert_eq!(c.schema_path, None);
    assert_eq!(c.pool_size, 8);
    assert_eq!(c.max_json_bytes, 32 * 1024 * 1024);
    assert_eq!(c.max_import_bytes, 4 * 1024 * 1024 * 1024);
    assert!(c.worker);
    assert_eq!(
        (c.exec_batch, c.lease_secs, c.exec_throttle_ms, c.poll_ms),
        (500, 30, 0, 1000)
    );
    assert_eq!((c.login_per_second, c.upload_idle_secs), (20.0, 30));
    let m = &c.mail;
    assert!(
        matches!(&m.transport, MailTransport::Dir(d) if d == &PathBuf::from("countersign-mail"))
    );
    assert!(m.mailer);
    assert_eq!(m.from, "countersign <countersign@localhost>");
    assert_eq!(m.public_url, "http://127.0.0.1:8080");
    assert_eq!(
        (m.max_attempts, m.retry_base_ms, m.timeout_secs, m.poll_ms),
        (8, 30_000, 30, 1000)
    );
    assert_eq!((m.digest_hours, m.lease_secs), (24.0, 60));
}

#[test]
fn the_environment_overrides_and_is_clamped_as_before() {
    let c = parse(&[
        ("DATABASE_URL", "postgres://u:p@db/cs"),
        ("COUNTERSIGN_BIND", "0.0.0.0:9000"),
        ("COUNTERSIGN_WORKER", " off "),
        ("COUNTERSIGN_EXEC_BATCH", "0"),
        ("COUNTERSIGN_POLL_MS", "1"),
        ("COUNTERSIGN_LOGIN_PER_SECOND", "0"),
        ("COUNTERSIGN_SCHEMA", "/etc/cs.toml"),
        ("COUNTERSIGN_MAX_JSON_BYTES", " 1024 "),
        ("COUNTERSIGN_SMTP_HOST", "mail.example"),
        ("COUNTERSIGN_SMTP_TLS", "tls"),
        ("COUNTERSIGN_MAIL_MAX_ATTEMPTS", "0"),
        ("COUNTERSIGN_MAILER", "no"),
        // Blank counts as unset.
        ("COUNTERSIGN_POOL_SIZE", "  "),
    ])
    .unwrap();
    assert_eq!(
        c.database,
        DatabaseUrl::Postgres("postgres://u:p@db/cs".into())
    );
    assert_eq!(c.mail.public_url, "http://0.0.0.0:9000");
    assert!(!c.worker && !c.mail.mailer);
    assert_eq!((c.exec_batch, c.poll_ms, c.pool_size), (1, 10, 8));
    assert_eq!((c.login_per_second, c.max_json_bytes), (0.1, 1024));
    assert_eq!(c.schema_path, Some(PathBuf::from("/etc/cs.toml")));
    assert_eq!(c.mail.max_attempts, 1);
    assert!(matches!(
        c.mail.transport,
        MailTransport::Smtp {
            port: 465,
            tls: SmtpTls::Tls,
            ..
        }
    ));
    let c = parse(&[
        ("COUNTERSIGN_SMTP_HOST", "h"),
        ("COUNTERSIGN_SMTP_PORT", "2525"),
    ])
    .unwrap();
    assert!(matches!(
        c.mail.transport,
        MailTransport::Smtp {
            port: 2525,
            tls: SmtpTls::StartTls,
            ..
        }
    ));
}

#[test]
fn start_up_errors_name_the_variable_the_value_and_what_is_expected() {
    assert_eq!(
        error(&[("COUNTERSIGN_POOL_SIZE", "eight")]),
        r#"COUNTERSIGN_POOL_SIZE="eight" is not a valid number"#
    );
    assert_eq!(
        error(&[("COUNTERSIGN_POOL_SIZE", "0")]),
        "COUNTERSIGN_POOL_SIZE must be at least 1"
    );
    assert_eq!(
        error(&[("COUNTERSIGN_DIGEST_HOURS", "a day")]),
        r#"COUNTERSIGN_DIGEST_HOURS="a day" is not a valid number"#
    );
    assert_eq!(
        error(&[
            ("COUNTERSIGN_SMTP_HOST", "h"),
            ("COUNTERSIGN_SMTP_TLS", "ssl")
        ]),
        r#"COUNTERSIGN_SMTP_TLS="ssl": use starttls (default), tls or none"#
    );
    assert_eq!(
        error(&[
            ("COUNTERSIGN_SMTP_HOST", "h"),
            ("COUNTERSIGN_SMTP_PORT", "99999")
        ]),
        r#"COUNTERSIGN_SMTP_PORT="99999" is not a valid number"#
    );
    assert_eq!(
        error(&[("COUNTERSIGN_MAIL_FROM", "nobody")]),
        r#"COUNTERSIGN_MAIL_FROM="nobody" is not a mail address"#
    );
    assert!(error(&[("DATABASE_URL", "mysql://x")]).contains("unknown scheme \"mysql\""));
}

#[test]
fn every_declared_setting_is_read_and_every_default_is_valid() {
    // Read with and without SMTP (the transport reads one set of variables or the other).
    let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
    for smtp in [false, true] {
        Config::from_lookup(&|name| {
            asked.borrow_mut().insert(name.to_string());
            (smtp && name == SMTP_HOST.var).then(|| "mail.example".to_string())
        })
        .unwrap();
    }
    let asked = asked.into_inner();
    for s in SETTINGS {
        let read_here = !matches!(s.field, "telemetry" | "tests") && s.ty != Type::NamedSecret;
        assert_eq!(
            asked.contains(s.var),
            read_here,
            "{}: declared for {:?} but {} by Config",
            s.var,
            s.field,
            if read_here { "not read" } else { "read" }
        );
        if let (Type::OneOf(words), Some(v)) = (s.ty, s.default.value()) {
            assert!(
                words.contains(&v),
                "{}: default {v:?} not in {words:?}",
                s.var
            );
        }
    }
}

#[test]
fn secrets_never_print() {
    let mut c = parse(&[
        ("DATABASE_URL", "postgres://cs:pw-in-the-url@db.example/cs"),
        ("COUNTERSIGN_SMTP_HOST", "mail.example"),
        ("COUNTERSIGN_SMTP_USERNAME", "mailer"),
        ("COUNTERSIGN_SMTP_PASSWORD", "smtp-password-value"),
    ])
    .unwrap();
    c.secrets
        .insert("CS_HOOK".into(), Secret::new("webhook-secret-value"));
    for shown in [format!("{c:?}"), format!("{c:#?}"), format!("{:?}", c.mail)] {
        for secret in [
            "pw-in-the-url",
            "smtp-password-value",
            "webhook-secret-value",
        ] {
            assert!(!shown.contains(secret), "{secret} printed: {shown}");
        }
        assert!(shown.contains("***"), "{shown}");
    }
    let s = c.secret("CS_HOOK").unwrap();
    assert_eq!(
        (s.to_string(), format!("{s:?}")),
        ("***".into(), "***".into())
    );
    assert_eq!(s.expose(), "webhook-secret-value");
    match &c.mail.transport {
        MailTransport::Smtp { password, .. } => assert_eq!(
            password.as_ref().map(Secret::expose),
            Some("smtp-password-value")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_looks_secret_is_declared_secret() {
    for s in SETTINGS {
        let looks_secret = ["PASSWORD", "SECRET", "TOKEN", "KEY"]
            .iter()
            .any(|w| s.var.to_ascii_uppercase().contains(w))
            // A switch about passwords (COUNTERSIGN_PASSWORD_LOGIN) holds none.
            && s.ty != Type::Flag;
        assert_eq!(looks_secret, s.secret(), "{}", s.var);
    }
}
