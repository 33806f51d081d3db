//! Every endpoint of the JSON API, in the order of `web::api_routes`, and the public ones
//! beside it: its schemas (from the handlers' types), the codes it answers with beyond the
//! common ones (`Endpoint::all_errors` adds those). A test fails when this list and the
//! route table differ.

use serde_json::{json, Value};

use super::{any_object, array, integer, nullable, object, string, Endpoint, Registry};
use crate::db;
use crate::error::ErrorCode as C;
use crate::service::changes::{CreateChange, EditChange, SignRequest};
use crate::service::execution::{ExecuteRequest, RollbackRequest, ScheduleRequest};
use crate::service::views::{ChangeSummaryView, ChangeView, EventView, PersonView, ScheduleView};
use crate::web::api;

/// What changes a change's state on the way (`act_on_change` handlers) may refuse.
const DECIDE: &[C] = &[
    C::IllegalTransition,
    C::Forbidden,
    C::NotInTeam,
    C::UnknownState,
    C::OperationRemoved,
];

/// The execution controls' refusals.
const CONTROL: &[C] = &[
    C::NotImplementer,
    C::ExecutionState,
    C::IllegalTransition,
    C::Lockdown,
    C::InvalidReason,
    C::BudgetExceeded,
];

/// The calendar proposals' refusals.
const PROPOSE: &[C] = &[
    C::Forbidden,
    C::InvalidFreeze,
    C::InvalidRecurrence,
    C::InvalidReason,
    C::LockdownState,
    C::FreezeLifted,
];

fn ep(method: &'static str, path: &'static str, tag: &'static str) -> Endpoint {
    Endpoint::new(method, path, tag)
}

/// `{"<key>": [<item>]}`.
fn list_of(key: &str, item: Value) -> Value {
    object(&[(key, array(item))])
}

/// A change with what its resolution did (`resolution_outcome`).
fn with_outcome(reg: &mut Registry) -> Value {
    json!({"allOf": [reg.r::<ChangeView>(), {"type": "object", "required": ["resolution_outcome"], "properties": {"resolution_outcome": {"type": "object"}}}]})
}

/// A page of something: `total`, `offset`, `next_offset` and the list under `key`.
fn page(key: &str, item: Value, extra: &[(&str, Value)]) -> Value {
    let mut props = vec![
        ("change", string()),
        ("total", integer()),
        ("offset", integer()),
        ("next_offset", nullable("integer")),
        (key, array(item)),
    ];
    props.extend(extra.iter().cloned());
    object(&props)
}

pub fn endpoints(reg: &mut Registry) -> Vec<Endpoint> {
    let change = reg.r::<ChangeView>();
    let execution = any_object("The execution: state, counts per wave and status, the current wave, gates, failures (README \"Execution\").");
    let person = reg.r::<PersonView>();
    vec![
        // ---- the API itself, the caller, the schema ------------------------------------
        ep("get", "/openapi.json", "meta")
            .summary("This document (OpenAPI 3.1)")
            .public()
            .ok(200, any_object("An OpenAPI 3.1 document.")),
        ep("get", "/schema", "meta")
            .summary("The running schema: kinds, operations, its version hash")
            .ok(200, any_object("The schema (README \"The schema file\").")),
        ep("get", "/me", "meta")
            .summary("The caller: email, name, teams, admin")
            .ok(
                200,
                object(&[
                    ("email", string()),
                    ("name", string()),
                    ("teams", array(string())),
                    ("is_admin", json!({"type": "boolean"})),
                ]),
            ),
        // ---- inventory -------------------------------------------------------------------
        ep("post", "/inventory", "inventory")
            .summary("Import entities (NDJSON), all or nothing unless `partial=true`")
            .query::<api::ImportQuery>()
            .ndjson("One entity per line: `{\"kind\", \"id\", \"parent\"?, \"name\"?, \"attributes\"?, \"state\"?}` (README \"Inventory import\").")
            .errors(&[C::Forbidden])
            .ok(200, any_object("The import report: lines, created, updated, unchanged, rejected, the import's id.")),
        ep("get", "/inventory", "inventory")
            .summary("List entities (keyset pages by `after`)")
            .query::<db::inventory::ListFilter>()
            .ok(200, object(&[("entities", array(json!({"type": "object"}))), ("next_after", nullable("string"))])),
        ep("get", "/inventory/{id}", "inventory")
            .summary("One entity: ancestry, children, versions, the changes that named it")
            .ok(200, any_object("The entity's detail.")),
        ep("get", "/imports/{id}", "inventory")
            .summary("An inventory import and one page of its diff")
            .query::<crate::service::inventory::DiffPage>()
            .errors(&[C::Forbidden])
            .ok(200, any_object("The import and a page of what it changed.")),
        // ---- changes ---------------------------------------------------------------------
        ep("post", "/changes", "changes")
            .summary("Create a change (a draft, or submitted with `\"submit\": true`)")
            .body::<CreateChange>(reg)
            .errors(&[C::UnknownOperation, C::UnknownTeam, C::NotInTeam, C::SameTeam, C::NotRequesterTeam, C::InvalidTitle, C::InvalidRationale, C::InvalidParams, C::InvalidSelector, C::InvalidWindow, C::ExpectationMismatch, C::ResolutionErrors, C::NoTargets])
            .ok(201, change.clone()),
        ep("get", "/changes", "changes")
            .summary("List changes, newest first")
            .query::<db::changes::ListFilter>()
            .errors(&[C::InvalidState])
            .ok(200, list_of("changes", reg.r::<ChangeSummaryView>())),
        ep("get", "/changes/{id}", "changes")
            .summary("A change as the caller sees it, with `allowed_actions`")
            .ok(200, change.clone()),
        ep("patch", "/changes/{id}", "changes")
            .summary("Edit a change (the author); it is resolved again")
            .body::<EditChange>(reg)
            .errors(&[C::NotAuthor, C::IllegalTransition, C::InvalidTitle, C::InvalidRationale, C::InvalidParams, C::InvalidSelector, C::RollbackFixed, C::RestoreFixed, C::OperationRemoved])
            .ok(200, with_outcome(reg)),
        ep("get", "/changes/{id}/targets", "changes")
            .summary("The stored target list, paged (or all of it as CSV)")
            .query::<api::TargetsQuery>()
            .errors(&[C::InvalidStatus])
            .ok(200, page("targets", json!({"type": "object"}), &[("fingerprint", nullable("string")), ("schema_hash", string()), ("operation", string()), ("limit", integer())]))
            .csv(),
        ep("get", "/changes/{id}/evidence", "changes")
            .summary("The evidence bundle for auditors (tar.gz), checked offline by `countersign audit verify --bundle`")
            .describe("Admins and members of a team with a side on the change. One snapshot: the change, its selector, targets, sign-offs, execution and items, mails, customer notices, events and the audit chain segment around them, with a manifest of SHA-256s (README \"Evidence for auditors\").")
            .errors(&[C::Forbidden])
            .text("application/gzip"),
        ep("get", "/changes/{id}/difference", "changes")
            .summary("What changed since the signers last saw the list (404 when nothing did)")
            .query::<api::DifferenceQuery>()
            .ok(200, any_object("The difference: counts, roots added and removed, a page of targets added then removed.")),
        ep("get", "/changes/{id}/selector", "changes")
            .summary("One list of the stored selector, paged (`part=ids` or `within`)")
            .query::<api::SelectorQuery>()
            .errors(&[C::InvalidPart])
            .ok(200, object(&[
                ("change", string()), ("part", string()), ("kind", nullable("string")), ("where", json!({})),
                ("total", integer()), ("offset", integer()), ("limit", integer()), ("ids", array(string())), ("next_offset", nullable("integer")),
            ])),
        ep("post", "/changes/{id}/resolve", "changes")
            .summary("Resolve the selector again (a changed list makes sign-offs stale)")
            .errors(DECIDE)
            .ok(200, with_outcome(reg)),
        ep("post", "/changes/{id}/submit", "changes")
            .summary("Submit a draft for sign-off")
            .errors(DECIDE)
            .errors(&[C::NotAuthor, C::ResolutionErrors, C::NoTargets, C::ExpectationMismatch, C::SameTeam, C::NotRequesterTeam])
            .ok(200, change.clone()),
        ep("post", "/changes/{id}/signoffs", "changes")
            .summary("Sign one side for the current fingerprint")
            .body::<SignRequest>(reg)
            .errors(DECIDE)
            .errors(&[C::StaleFingerprint, C::StaleText, C::StaleDifference, C::AlreadySigned, C::SeparationOfDuties, C::NoThirdSide, C::ConfirmCountRequired, C::ConfirmCountMismatch, C::SchemaChanged, C::InvalidComment])
            .ok(201, change.clone()),
        ep("post", "/changes/{id}/reject", "changes")
            .summary("Reject a change (a reason is required)")
            .body::<api::ReasonBody>(reg)
            .errors(DECIDE)
            .errors(&[C::ReasonRequired, C::InvalidReason])
            .ok(200, change.clone()),
        ep("post", "/changes/{id}/cancel", "changes")
            .summary("Cancel an open change")
            .optional_body::<api::ReasonBody>(reg)
            .errors(DECIDE)
            .errors(&[C::InvalidReason])
            .ok(200, change.clone()),
        ep("post", "/changes/{id}/comments", "changes")
            .summary("Comment on a change")
            .body::<api::CommentBody>(reg)
            .errors(&[C::EmptyComment, C::InvalidComment, C::Forbidden])
            .ok(201, object(&[("id", integer()), ("change", string())])),
        ep("get", "/changes/{id}/comments", "changes")
            .summary("A change's comments")
            .ok(200, list_of("comments", object(&[("id", integer()), ("by", person.clone()), ("body", string()), ("at", string())]))),
        ep("get", "/changes/{id}/events", "changes")
            .summary("A change's audit events")
            .ok(200, list_of("events", reg.r::<EventView>())),
        // ---- execution ------------------------------------------------------------------
        ep("post", "/changes/{id}/execute", "execution")
            .summary("Execute an approved change with the signed fingerprint")
            .body::<ExecuteRequest>(reg)
            .errors(DECIDE)
            .errors(&[C::NotImplementer, C::FingerprintMismatch, C::NotApproved, C::OutsideWindow, C::ConflictingExecution, C::BudgetExceeded, C::Frozen, C::FreezeExceptionRequired, C::Lockdown, C::SignoffsExpired, C::SignoffsNoLongerCount, C::SchemaChanged, C::ExecutionState])
            .ok(202, execution.clone()),
        ep("get", "/changes/{id}/execution", "execution")
            .summary("The execution's progress")
            .ok(200, execution.clone()),
        ep("get", "/changes/{id}/execution/items", "execution")
            .summary("The execution's items (one per target), paged")
            .query::<api::ItemsQuery>()
            .errors(&[C::InvalidStatus])
            .ok(200, page("items", json!({"type": "object"}), &[])),
        ep("post", "/changes/{id}/resume", "execution")
            .summary("Resume a halted execution")
            .errors(CONTROL)
            .ok(200, execution.clone()),
        ep("post", "/changes/{id}/continue", "execution")
            .summary("Continue past a manual gate")
            .errors(CONTROL)
            .ok(200, execution.clone()),
        ep("post", "/changes/{id}/pause", "execution")
            .summary("Pause at the next batch")
            .optional_body::<api::ReasonBody>(reg)
            .errors(CONTROL)
            .ok(200, execution.clone()),
        ep("post", "/changes/{id}/skip-wave", "execution")
            .summary("Skip the current wave's pending targets")
            .optional_body::<api::ReasonBody>(reg)
            .errors(CONTROL)
            .ok(200, execution.clone()),
        ep("post", "/changes/{id}/skip-drifted", "execution")
            .summary("Skip the targets the drift check held back")
            .optional_body::<api::ReasonBody>(reg)
            .errors(CONTROL)
            .ok(200, execution.clone()),
        ep("post", "/changes/{id}/retry-failed", "execution")
            .summary("Run the failed targets again")
            .optional_body::<api::ReasonBody>(reg)
            .errors(CONTROL)
            .ok(200, execution.clone()),
        ep("post", "/changes/{id}/schedule", "execution")
            .summary("Schedule the start of an approved change")
            .body::<ScheduleRequest>(reg)
            .errors(DECIDE)
            .errors(&[C::NotImplementer, C::FingerprintMismatch, C::InvalidStart, C::ExecutionState, C::OutsideWindow])
            .ok(201, reg.r::<ScheduleView>()),
        ep("get", "/changes/{id}/schedule", "execution")
            .summary("The scheduled start (404 when there is none)")
            .ok(200, reg.r::<ScheduleView>()),
        ep("delete", "/changes/{id}/schedule", "execution")
            .summary("Call a scheduled start off")
            .optional_body::<api::ReasonBody>(reg)
            .errors(DECIDE)
            .errors(&[C::NotImplementer, C::ExecutionState, C::InvalidReason])
            .ok(200, object(&[("change", string()), ("scheduled", json!({"type": "boolean"}))])),
        ep("post", "/changes/{id}/abort", "execution")
            .summary("Abort the execution for good")
            .optional_body::<api::ReasonBody>(reg)
            .errors(CONTROL)
            .ok(200, execution.clone()),
        ep("post", "/changes/{id}/rollback", "execution")
            .summary("Create the rollback change of an executed change")
            .optional_body::<RollbackRequest>(reg)
            .errors(DECIDE)
            .errors(&[C::NotReversible, C::AlreadyRolledBack, C::NothingToRollBack, C::NotExecuted, C::SameTeam, C::NotRequesterTeam, C::InvalidTitle, C::InvalidRationale])
            .ok(201, change.clone()),
        ep("post", "/restores", "execution")
            .summary("Create a bulk restore change")
            .body::<crate::service::restore::RestoreRequest>(reg)
            .errors(&[C::EmptyRestore, C::NoPoint, C::AmbiguousPoint, C::FuturePoint, C::InvalidRestore, C::NoRestoreOperation, C::AmbiguousOperation, C::NotARestore, C::NotExecuted, C::UnknownOperation, C::UnknownTeam, C::NotInTeam, C::SameTeam, C::NotRequesterTeam, C::InvalidTitle, C::InvalidRationale, C::NoTargets])
            .ok(201, change.clone()),
        // ---- contacts and notices ----------------------------------------------------------
        ep("get", "/changes/{id}/contacts", "contacts")
            .summary("The customers a change affects, with their contacts (or CSV)")
            .query::<api::FormatQuery>()
            .errors(&[C::ContactsHidden])
            .ok(200, object(&[("change", string()), ("roots", integer()), ("roots_with_contacts", integer()), ("affected", array(json!({"type": "object"})))]))
            .csv(),
        ep("post", "/changes/{id}/notices", "contacts")
            .summary("Preview (`\"preview\": true`, 200) or draft (201) a customer notice")
            .body::<crate::service::contacts::NoticeRequest>(reg)
            .errors(&[C::ChangeNotApproved, C::NotInTeam, C::SeparationOfDuties, C::InvalidSubject, C::InvalidBody, C::InvalidRole, C::NoRecipients])
            .ok(201, any_object("The notice (or its preview): subject, body, recipients, state.")),
        ep("get", "/changes/{id}/notices", "contacts")
            .summary("A change's customer notices")
            .errors(&[C::NotInTeam])
            .ok(200, list_of("notices", json!({"type": "object"}))),
        ep("post", "/changes/{id}/notices/{nid}/approve", "contacts")
            .summary("Approve a notice: it is sent")
            .errors(&[C::NotInTeam, C::OwnNotice, C::SameTeam, C::DrafterInBothTeams, C::NoticeNotDraft, C::NoticeRateLimited, C::ChangeNotApproved, C::SeparationOfDuties])
            .ok(200, any_object("The notice.")),
        ep("post", "/changes/{id}/notices/{nid}/discard", "contacts")
            .summary("Discard a draft notice")
            .errors(&[C::NotAllowedToDiscard, C::NoticeNotDraft])
            .ok(200, any_object("The notice.")),
        ep("post", "/contacts", "contacts")
            .summary("Import customer contacts (NDJSON)")
            .query::<api::ImportQuery>()
            .ndjson("One contact per line (README \"Customer contacts\").")
            .errors(&[C::Forbidden])
            .ok(200, any_object("The import report.")),
        ep("get", "/inventory/{id}/contacts", "contacts")
            .summary("An entity's contacts")
            .errors(&[C::ContactsHidden])
            .ok(200, list_of("contacts", json!({"type": "object"}))),
        // ---- notifications -----------------------------------------------------------------
        ep("get", "/me/notifications", "notifications")
            .summary("The caller's notification preferences")
            .ok(200, object(&[("preferences", array(json!({"type": "object"}))), ("modes", array(string()))])),
        ep("put", "/me/notifications", "notifications")
            .summary("Set notification preferences (`{\"<event>\": \"<mode>\"}`)")
            .body_schema(json!({"type": "object", "additionalProperties": {"type": "string"}}))
            .errors(&[C::InvalidPreferences])
            .ok(200, object(&[("preferences", array(json!({"type": "object"}))), ("modes", array(string()))])),
        ep("get", "/outbox", "notifications")
            .summary("The mail outbox (admins)")
            .query::<api::OutboxQuery>()
            .errors(&[C::Forbidden, C::NotFound, C::InvalidState])
            .ok(200, list_of("mails", json!({"type": "object"}))),
        ep("post", "/outbox/{id}/retry", "notifications")
            .summary("Retry a dead mail (admins)")
            .errors(&[C::Forbidden, C::NotDead])
            .ok(200, any_object("The mail.")),
        // ---- the queue, the audit trail ----------------------------------------------------
        ep("get", "/queue", "changes")
            .summary("What waits for the caller's sign-off or action")
            .ok(200, list_of("changes", json!({"type": "object"}))),
        ep("get", "/audit/verify", "meta")
            .summary("Verify the audit chain (admins)")
            .errors(&[C::Forbidden])
            .ok(200, object(&[("intact", json!({"type": "boolean"}))])),
        // ---- the calendar ------------------------------------------------------------------
        ep("get", "/calendar", "calendar")
            .summary("Freezes, change windows and the lockdown over a range")
            .query::<api::RangeQuery>()
            .errors(&[C::InvalidRange])
            .ok(200, any_object("The calendar over the range.")),
        ep("get", "/calendar/state", "calendar")
            .summary("Freezes in force, the lockdown, pending and recent proposals")
            .ok(200, any_object("The calendar's state.")),
        ep("post", "/calendar/freezes", "calendar")
            .summary("Propose a freeze (a second admin confirms it)")
            .body::<crate::domain::calendar::FreezeSpec>(reg)
            .errors(PROPOSE)
            .errors(&[C::UnknownOperation])
            .ok(201, any_object("The pending proposal.")),
        ep("get", "/calendar/freezes/{id}", "calendar")
            .summary("One freeze")
            .ok(200, any_object("The freeze.")),
        ep("patch", "/calendar/freezes/{id}", "calendar")
            .summary("Propose new fields for a freeze (all of them)")
            .body::<crate::domain::calendar::FreezeSpec>(reg)
            .errors(PROPOSE)
            .ok(201, any_object("The pending proposal.")),
        ep("post", "/calendar/freezes/{id}/lift", "calendar")
            .summary("Propose lifting a freeze")
            .optional_body::<api::ReasonBody>(reg)
            .errors(PROPOSE)
            .ok(201, any_object("The pending proposal.")),
        ep("post", "/calendar/lockdown", "calendar")
            .summary("Propose a lockdown (a reason is required)")
            .body::<api::ReasonBody>(reg)
            .errors(PROPOSE)
            .errors(&[C::ReasonRequired])
            .ok(201, any_object("The pending proposal.")),
        ep("post", "/calendar/lockdown/lift", "calendar")
            .summary("Propose lifting the lockdown (a reason is required)")
            .body::<api::ReasonBody>(reg)
            .errors(PROPOSE)
            .errors(&[C::ReasonRequired])
            .ok(201, any_object("The pending proposal.")),
        ep("post", "/calendar/proposals/{id}/confirm", "calendar")
            .summary("Confirm another admin's proposal: it takes effect now")
            .errors(&[C::Forbidden, C::OwnProposal, C::ProposalNotPending, C::LockdownState, C::FreezeLifted])
            .ok(200, any_object("The decided proposal.")),
        ep("post", "/calendar/proposals/{id}/decline", "calendar")
            .summary("Withdraw one's own proposal or decline another admin's")
            .optional_body::<api::ReasonBody>(reg)
            .errors(&[C::Forbidden, C::ProposalNotPending, C::InvalidReason])
            .ok(200, any_object("The decided proposal.")),
        ep("post", "/changes/{id}/freeze-exceptions", "calendar")
            .summary("Give a soft freeze's exception to a change")
            .body::<crate::service::calendar::ExceptionRequest>(reg)
            .errors(&[C::NotASoftFreeze, C::NotInTeam, C::SeparationOfDuties, C::StaleFingerprint, C::FreezeLifted, C::IllegalTransition, C::InvalidComment])
            .ok(201, list_of("exceptions", json!({"type": "object"}))),
        ep("get", "/changes/{id}/freeze-exceptions", "calendar")
            .summary("A change's freeze exceptions")
            .ok(200, list_of("exceptions", json!({"type": "object"}))),
        ep("post", "/me/calendar-token", "calendar")
            .summary("A new calendar feed token (shown once; the old one stops working)")
            .ok(201, object(&[("token", string()), ("url", string())])),
        // ---- a team's chat and event hooks ---------------------------------------------
        ep("get", "/teams/{team}/hooks", "hooks")
            .summary("A team's hooks (addresses masked), the formats and the events")
            .errors(&[C::NotInTeam, C::NotFound])
            .ok(200, any_object("`team`, `hooks` (each with its last delivery), `formats`, `events`.")),
        ep("post", "/teams/{team}/hooks", "hooks")
            .summary("Subscribe a Slack, Teams or signed JSON hook to events")
            .body::<crate::service::hooks::NewHookInput>(reg)
            .errors(&[C::NotInTeam, C::NotFound, C::InvalidHook])
            .ok(201, object(&[("hook", any_object("The hook.")), ("secret", nullable("string"))])),
        ep("delete", "/teams/{team}/hooks/{id}", "hooks")
            .summary("Delete a hook; its undelivered messages are given up")
            .errors(&[C::NotInTeam, C::NotFound])
            .ok(200, object(&[("deleted", integer())])),
        ep("post", "/teams/{team}/hooks/{id}/test", "hooks")
            .summary("Queue a test message to a hook")
            .errors(&[C::NotInTeam, C::NotFound])
            .ok(202, any_object("The queued delivery.")),
        ep("get", "/teams/{team}/hooks/{id}/deliveries", "hooks")
            .summary("A hook's deliveries, newest first")
            .query::<api::DeliveriesQuery>()
            .errors(&[C::NotInTeam, C::NotFound])
            .ok(200, object(&[("hook", any_object("The hook.")), ("deliveries", array(json!({"type": "object"})))])),
        // ---- outside /api/v1 -----------------------------------------------------------------
        ep("get", "/healthz", "health")
            .absolute()
            .public()
            .summary("Liveness: the process answers")
            .ok(200, object(&[("status", json!({"const": "ok"}))])),
        ep("get", "/readyz", "health")
            .absolute()
            .public()
            .summary("Readiness: the database answers (503 `database_unavailable` otherwise)")
            .errors(&[C::DatabaseUnavailable])
            .ok(200, object(&[("status", string()), ("database", string())])),
        ep("get", "/metrics", "health")
            .absolute()
            .public()
            .describe("Prometheus text. With `COUNTERSIGN_METRICS_TOKEN` set it needs `Authorization: Bearer <that token>` (401 otherwise).")
            .summary("Metrics in Prometheus text (docs/metrics.md)")
            .text("text/plain"),
        ep("get", "/api/docs", "meta")
            .absolute()
            .public()
            .summary("This reference as a page (HTML, rendered from this document)")
            .text("text/html"),
        ep("get", "/calendar.ics", "health")
            .absolute()
            .public()
            .describe("Read with `?token=` (a feed token from `POST /api/v1/me/calendar-token`), since calendar clients cannot send headers; 401 `unauthenticated` without a valid one.")
            .summary("The change calendar as iCalendar")
            .errors(&[C::Unauthenticated, C::InvalidQuery])
            .text("text/calendar"),
    ]
}
