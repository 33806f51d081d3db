// One diesel schema for both backends. Written by hand (not `print-schema`) so the
// column types are the ones both SQLite and PostgreSQL round-trip identically:
// ids are BigInt, times are UTC Timestamps truncated to microseconds, JSON is Text.

diesel::table! {
    teams (id) {
        id -> BigInt,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        name -> Text,
        password_hash -> Nullable<Text>,
        is_admin -> Bool,
        created_at -> Timestamp,
        must_change_password -> Bool,
        deactivated_at -> Nullable<Timestamp>,
        deactivated_by -> Nullable<BigInt>,
    }
}

diesel::table! {
    team_members (team_id, user_id) {
        team_id -> BigInt,
        user_id -> BigInt,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        token_hash -> Text,
        label -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    schema_versions (hash) {
        hash -> Text,
        source -> Text,
        loaded_at -> Timestamp,
    }
}

diesel::table! {
    entities (id) {
        id -> Text,
        kind -> Text,
        parent_id -> Nullable<Text>,
        name -> Text,
        attrs -> Text,
        state -> Text,
        version -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        deleted_at -> Nullable<Timestamp>,
        deleted_by -> Nullable<BigInt>,
        purge_after -> Nullable<Timestamp>,
    }
}

diesel::table! {
    changes (id) {
        id -> BigInt,
        title -> Text,
        rationale -> Text,
        requesting_team -> Text,
        implementing_team -> Text,
        operation -> Text,
        params -> Text,
        selector -> Text,
        expect -> Nullable<Text>,
        state -> Text,
        author_id -> BigInt,
        schema_hash -> Text,
        fingerprint -> Nullable<Text>,
        summary -> Text,
        errors -> Text,
        target_count -> BigInt,
        root_count -> BigInt,
        selects_everything -> Bool,
        error_count -> BigInt,
        lock_version -> BigInt,
        reject_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        resolved_at -> Timestamp,
        submitted_at -> Nullable<Timestamp>,
        approved_at -> Nullable<Timestamp>,
        not_before -> Nullable<Timestamp>,
        not_after -> Nullable<Timestamp>,
        rollback_of -> Nullable<BigInt>,
        rolled_back_by -> Nullable<BigInt>,
    }
}

diesel::table! {
    change_targets (change_id, position) {
        change_id -> BigInt,
        position -> BigInt,
        kind -> Text,
        entity_id -> Text,
        scope_path -> Text,
        name -> Text,
    }
}

diesel::table! {
    signoffs (id) {
        id -> BigInt,
        change_id -> BigInt,
        side -> Text,
        user_id -> BigInt,
        fingerprint -> Text,
        comment -> Text,
        stale -> Bool,
        created_at -> Timestamp,
        reminded_at -> Nullable<Timestamp>,
        expiry_recorded_at -> Nullable<Timestamp>,
        replaces_fingerprint -> Nullable<Text>,
        difference -> Nullable<Text>,
    }
}

diesel::table! {
    comments (id) {
        id -> BigInt,
        change_id -> BigInt,
        user_id -> BigInt,
        body -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        change_id -> Nullable<BigInt>,
        detail -> Text,
        prev_hash -> Text,
        hash -> Text,
    }
}

diesel::table! {
    audit_head (id) {
        id -> BigInt,
        last_id -> BigInt,
        last_hash -> Text,
    }
}

diesel::table! {
    entity_versions (entity_id, version) {
        entity_id -> Text,
        version -> BigInt,
        change_id -> Nullable<BigInt>,
        at -> Timestamp,
        before_state -> Text,
        before_name -> Text,
        before_attrs -> Text,
        after_state -> Text,
        after_name -> Text,
        after_attrs -> Text,
        import_id -> Nullable<BigInt>,
        before_parent -> Nullable<Text>,
        after_parent -> Nullable<Text>,
    }
}

diesel::table! {
    imports (id) {
        id -> BigInt,
        importer -> Text,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        lines -> BigInt,
        inserted -> BigInt,
        updated -> BigInt,
        unchanged -> BigInt,
        rejected -> BigInt,
        partial -> Bool,
        changed -> BigInt,
        changed_digest -> Text,
        audit_event_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    executions (id) {
        id -> BigInt,
        change_id -> BigInt,
        fingerprint -> Text,
        effect -> Text,
        state -> Text,
        waves -> Text,
        current_wave -> BigInt,
        total -> BigInt,
        done -> BigInt,
        failed -> BigInt,
        skipped -> BigInt,
        halt_reason -> Nullable<Text>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        started_by -> BigInt,
        started_at -> Timestamp,
        updated_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        bake_until -> Nullable<Timestamp>,
        pause_reason -> Nullable<Text>,
        drift_checked_wave -> BigInt,
        rerun_through_wave -> BigInt,
    }
}

diesel::table! {
    execution_items (execution_id, position) {
        execution_id -> BigInt,
        position -> BigInt,
        wave -> BigInt,
        kind -> Text,
        entity_id -> Text,
        status -> Text,
        attempts -> BigInt,
        error -> Nullable<Text>,
        next_attempt_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        retries -> BigInt,
    }
}

diesel::table! {
    outbox (id) {
        id -> BigInt,
        event_key -> Text,
        event_kind -> Text,
        change_id -> Nullable<BigInt>,
        user_id -> Nullable<BigInt>,
        recipient -> Text,
        payload -> Text,
        message_id -> Text,
        state -> Text,
        attempts -> BigInt,
        next_attempt_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        digest_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
        channel -> Text,
        hook_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    hooks (id) {
        id -> BigInt,
        team_id -> BigInt,
        name -> Text,
        format -> Text,
        url -> Text,
        secret -> Nullable<Text>,
        events -> Text,
        created_by -> BigInt,
        created_at -> Timestamp,
        deleted_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    notification_prefs (user_id, event_kind) {
        user_id -> BigInt,
        event_kind -> Text,
        mode -> Text,
    }
}

diesel::table! {
    contacts (id) {
        id -> BigInt,
        entity_id -> Text,
        name -> Text,
        email -> Text,
        role -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    customer_notices (id) {
        id -> BigInt,
        change_id -> BigInt,
        subject -> Text,
        body -> Text,
        roles -> Text,
        recipients -> Text,
        recipient_count -> BigInt,
        drafted_by -> BigInt,
        created_at -> Timestamp,
        state -> Text,
        drafter_team -> Nullable<Text>,
        body_sha256 -> Nullable<Text>,
        approved_by -> Nullable<BigInt>,
        sent_at -> Nullable<Timestamp>,
        discarded_by -> Nullable<BigInt>,
        discarded_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    web_sessions (token_hash) {
        token_hash -> Text,
        user_id -> BigInt,
        csrf_token -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        public_id -> Text,
        last_seen_at -> Nullable<Timestamp>,
        user_agent -> Nullable<Text>,
        ip_prefix -> Nullable<Text>,
    }
}

diesel::table! {
    target_differences (change_id) {
        change_id -> BigInt,
        base_fingerprint -> Text,
        fingerprint -> Text,
    }
}

diesel::table! {
    target_difference_items (change_id, direction, entity_id) {
        change_id -> BigInt,
        direction -> Text,
        entity_id -> Text,
        kind -> Text,
        scope_path -> Text,
        name -> Text,
    }
}

diesel::table! {
    budget_groups (name) {
        name -> Text,
        lock_version -> BigInt,
    }
}

diesel::table! {
    budget_uses (budget_group, change_id, entity_id) {
        budget_group -> Text,
        change_id -> BigInt,
        entity_id -> Text,
        root_id -> Text,
        used_at -> Timestamp,
    }
}

diesel::joinable!(team_members -> teams (team_id));
diesel::joinable!(team_members -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(change_targets -> changes (change_id));
diesel::joinable!(signoffs -> changes (change_id));
diesel::joinable!(signoffs -> users (user_id));
diesel::joinable!(comments -> changes (change_id));
diesel::joinable!(comments -> users (user_id));
diesel::joinable!(changes -> users (author_id));
diesel::joinable!(executions -> changes (change_id));
diesel::table! {
    scheduled_starts (change_id) {
        change_id -> BigInt,
        start_at -> Timestamp,
        fingerprint -> Text,
        scheduled_by -> BigInt,
        wait_for_conflicts -> Bool,
        waiting_on -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(execution_items -> executions (execution_id));
diesel::joinable!(contacts -> entities (entity_id));
diesel::joinable!(web_sessions -> users (user_id));
diesel::joinable!(hooks -> teams (team_id));
diesel::joinable!(outbox -> hooks (hook_id));
diesel::joinable!(entity_versions -> imports (import_id));

diesel::allow_tables_to_appear_in_same_query!(
    teams,
    users,
    team_members,
    api_tokens,
    schema_versions,
    entities,
    changes,
    change_targets,
    signoffs,
    comments,
    audit_events,
    audit_head,
    entity_versions,
    executions,
    execution_items,
    outbox,
    notification_prefs,
    contacts,
    customer_notices,
    web_sessions,
    imports,
    budget_groups,
    budget_uses,
    target_differences,
    target_difference_items,
    scheduled_starts,
    hooks,
    sso_identities,
    sso_logins,
);

diesel::table! {
    sso_identities (issuer, subject) {
        issuer -> Text,
        subject -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        last_login_at -> Timestamp,
    }
}

diesel::table! {
    sso_logins (state_hash) {
        state_hash -> Text,
        browser_hash -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        next_path -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::joinable!(sso_identities -> users (user_id));
