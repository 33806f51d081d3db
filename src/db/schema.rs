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
        error_count -> BigInt,
        lock_version -> BigInt,
        reject_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        resolved_at -> Timestamp,
        submitted_at -> Nullable<Timestamp>,
        approved_at -> Nullable<Timestamp>,
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

diesel::joinable!(team_members -> teams (team_id));
diesel::joinable!(team_members -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(change_targets -> changes (change_id));
diesel::joinable!(signoffs -> changes (change_id));
diesel::joinable!(signoffs -> users (user_id));
diesel::joinable!(comments -> changes (change_id));
diesel::joinable!(comments -> users (user_id));
diesel::joinable!(changes -> users (author_id));

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
);
