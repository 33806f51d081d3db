//! One error type for services, mapped once to HTTP: a stable machine-readable `code`
//! ([`ErrorCode`]), a human message, optional details. Unexpected errors are logged with
//! their cause chain and shown as a generic 500 with the request id.
//!
//! This file is the only place that knows HTTP statuses for errors: every [`ErrorCode`]
//! has exactly one, declared beside it in `error_codes!` below. Services, the domain and
//! the runner name a code; the web layer writes `code.status()`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::domain::access::{Denied, Reason};
use crate::domain::calendar::BlockKind;
use crate::domain::change::IllegalTransition;
use crate::domain::notice::NoticeRefusal;
use crate::domain::schema::RequestRefusal;
use crate::domain::signoff::Refusal;
use crate::domain::text::{TextField, TextProblem};

/// `ErrorCode` with `ALL`, `as_str`, `status`, `meaning`, `parse`, serde and `Display`, from
/// one line per code: the variant, its stable snake_case text, its HTTP status and what it
/// means (the README's "Error codes" table is this list; a test compares them).
macro_rules! error_codes {
    ($($variant:ident = $text:literal, $status:ident, $meaning:literal;)+) => {
        /// The stable, machine-readable `code` of an error answer (`{"error": {"code": …}}`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $(#[doc = $meaning] $variant,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order (the README table's order).
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            /// The code as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)+
                }
            }

            /// The one HTTP status this code is answered with.
            pub fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// What the code means (the README table's third column).
            pub fn meaning(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $meaning,)+
                }
            }

            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s {
                    $($text => Some(ErrorCode::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    InvalidForm = "invalid_form", BAD_REQUEST, "A browser form could not be read, or a field is longer than any valid value (pages).";
    InvalidJson = "invalid_json", BAD_REQUEST, "The body is not JSON of the endpoint's request type; a misspelt or unknown field is named.";
    InvalidLifetime = "invalid_lifetime", BAD_REQUEST, "The token form's lifetime is none of those offered (pages).";
    InvalidPath = "invalid_path", BAD_REQUEST, "A part of the URL path does not parse.";
    InvalidQuery = "invalid_query", BAD_REQUEST, "A query parameter does not parse, or is not one the endpoint takes.";
    UnreadableBody = "unreadable_body", BAD_REQUEST, "The request body could not be read (say, the connection broke during an upload); nothing was written.";
    SsoInvalid = "sso_invalid", BAD_REQUEST, "A single sign-on answer cannot finish a sign-in: its state names no sign-in under way in this browser (changed, replayed, too old), the provider answered with an error, or the ID token failed its checks (signature, issuer, audience, nonce, expiry) (pages).";
    InvalidCredentials = "invalid_credentials", UNAUTHORIZED, "The email and password do not match (the sign-in page).";
    TokenExpired = "token_expired", UNAUTHORIZED, "The API token has expired.";
    Unauthenticated = "unauthenticated", UNAUTHORIZED, "No valid API token: the `Authorization` header is missing or malformed, or the token is unknown or revoked, or its owner is deactivated.";
    AccountDeactivated = "account_deactivated", FORBIDDEN, "The email and password match, but an admin deactivated the account (the sign-in page); an admin reactivates it.";
    ContactsHidden = "contacts_hidden", FORBIDDEN, "Contacts are shown to admins and to the teams of changes that affect the customer.";
    Csrf = "csrf", FORBIDDEN, "A form's security token is missing or wrong (pages).";
    Forbidden = "forbidden", FORBIDDEN, "The caller may not do this (the message names who may).";
    NotAllowed = "not_allowed", FORBIDDEN, "The caller may not edit this change (the edit page).";
    NotAllowedToDiscard = "not_allowed_to_discard", FORBIDDEN, "Only a notice's drafter, or a member of the team that could approve it, discards it.";
    NotAuthor = "not_author", FORBIDDEN, "Only the author of a change edits it.";
    NotImplementer = "not_implementer", FORBIDDEN, "Only members of the implementing team execute or resume a change (they or an admin abort it).";
    NotInTeam = "not_in_team", FORBIDDEN, "The caller is not a member of the team this needs (a side's team, the requesting team, a team of the change).";
    NotRequesterTeam = "not_requester_team", FORBIDDEN, "The operation may not be requested by this team (the schema's `requested_by`).";
    OwnNotice = "own_notice", FORBIDDEN, "A customer notice is approved by someone other than its drafter.";
    OwnProposal = "own_proposal", FORBIDDEN, "A calendar proposal (freeze or lockdown) is confirmed by an admin other than the one who proposed it.";
    PasswordLoginOff = "password_login_off", FORBIDDEN, "Password sign-in is turned off (`COUNTERSIGN_PASSWORD_LOGIN=false`): sign in with single sign-on (pages).";
    SameTeam = "same_team", FORBIDDEN, "The requesting team is the implementing team; or a notice's approver is not in the team other than its drafter's.";
    SeparationOfDuties = "separation_of_duties", FORBIDDEN, "One person never counts on two sides of a change (nor drafts a notice while in both teams); its author never signs the implementer or third side; nobody in the change's two teams signs its third side.";
    SsoRefused = "sso_refused", FORBIDDEN, "The provider vouched for a person countersign's rules refuse: no email address, an unverified one, or a domain not in `COUNTERSIGN_OIDC_ALLOWED_DOMAINS`; nothing was created (pages).";
    NotFound = "not_found", NOT_FOUND, "No such change, entity, import, execution, notice, mail, session, team, hook, page or endpoint.";
    UploadStalled = "upload_stalled", REQUEST_TIMEOUT, "No data arrived for `COUNTERSIGN_UPLOAD_IDLE_SECS` during an upload; nothing was written.";
    AlreadyRolledBack = "already_rolled_back", CONFLICT, "The change already has an open rollback.";
    AlreadySigned = "already_signed", CONFLICT, "The caller already signed this side for the current fingerprint.";
    BudgetExceeded = "budget_exceeded", CONFLICT, "At execute (or resume), the change needs more of its operation's budget than is left in the last 24 hours (`details.budget`: used, left, when it frees).";
    CannotDeactivate = "cannot_deactivate", CONFLICT, "An admin deactivates neither their own account nor the last active admin.";
    ChangeNotApproved = "change_not_approved", CONFLICT, "Customer notices are for approved (or later) changes only.";
    ConflictingExecution = "conflicting_execution", CONFLICT, "At execute, another change's execution in progress (running, baking, paused or halted) shares targets with this one (`details.changes`: each with the targets shared); a scheduled start with `wait_for_conflicts` waits instead.";
    DrafterInBothTeams = "drafter_in_both_teams", CONFLICT, "The notice's drafter is in both teams, so nobody can be the other team's approver.";
    ExecutionState = "execution_state", CONFLICT, "The execution is not in a state that allows this: pause needs it running or baking, continue paused, skip-wave paused or halted, skip-drifted halted with drifted targets, retry-failed halted or ended with failed targets; a start is scheduled once; the message says which state it is in.";
    FingerprintMismatch = "fingerprint_mismatch", CONFLICT, "The fingerprint sent to execute is not the one that was signed.";
    FixedTargets = "fixed_targets", CONFLICT, "A rollback or bulk restore has fixed targets: the edit form does not apply (pages).";
    FreezeExceptionRequired = "freeze_exception_required", CONFLICT, "A soft freeze holds for the change's operation: execution needs one more implementer sign-off marked as a freeze exception (`details.freeze`).";
    FreezeLifted = "freeze_lifted", CONFLICT, "The freeze is lifted: it is not edited, lifted or excepted any more.";
    Frozen = "frozen", CONFLICT, "A hard freeze holds for the change's operation now: execution is refused (the message names the freeze and when it ends).";
    IllegalTransition = "illegal_transition", CONFLICT, "The action is not possible in the change's current state (`details.state`).";
    Lockdown = "lockdown", CONFLICT, "A lockdown is in force: no execution starts, resumes or continues until two admins lift it.";
    LockdownState = "lockdown_state", CONFLICT, "A lockdown is proposed or declared while one is in force, or its lift while none is.";
    NotApproved = "not_approved", CONFLICT, "At execute, a fresh resolution or the teams no longer hold: the change went back (the message says to which state, and why).";
    NoThirdSide = "no_third_side", CONFLICT, "A sign-off as `reviewer`, but the change's policy as resolved now names no third side (its tier has no `also`).";
    NotDead = "not_dead", CONFLICT, "Only dead mails are retried.";
    NoticeNotDraft = "notice_not_draft", CONFLICT, "The customer notice is no longer a draft.";
    OperationRemoved = "operation_removed", CONFLICT, "The change's operation is no longer in the schema, so it cannot be resolved, signed, run or rolled back.";
    OutsideWindow = "outside_window", CONFLICT, "Now is outside the change's execution window.";
    PasswordChangedMeanwhile = "password_changed_meanwhile", CONFLICT, "The password was changed in another session meanwhile; nothing was saved.";
    ProposalNotPending = "proposal_not_pending", CONFLICT, "The calendar proposal was confirmed, declined or withdrawn already.";
    SchemaChanged = "schema_changed", CONFLICT, "The schema changed since the change was resolved: re-resolve it and review the new fingerprint.";
    SignoffsExpired = "signoffs_expired", CONFLICT, "At execute, a counted sign-off is older than its operation's `signoffs_expire_after`: the change went back to awaiting sign-off (`details.expired`: who, side, signed at, expired at).";
    SignoffsNoLongerCount = "signoffs_no_longer_count", CONFLICT, "A signer left their team: the change went back to awaiting sign-off.";
    StaleDifference = "stale_difference", CONFLICT, "A sign-off given from the difference view (`replaces`) was shown a difference against another list than the change's current one: review it again (`details.previous_fingerprint`).";
    StaleFingerprint = "stale_fingerprint", CONFLICT, "The fingerprint signed is not the current one (`details.current_fingerprint`).";
    StaleText = "stale_text", CONFLICT, "The title or rationale changed since the signer read it (`details.current_text_hash`).";
    UnknownState = "unknown_state", CONFLICT, "The change's stored state is not one countersign knows.";
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE, "The body or form is larger than the configured limit (`COUNTERSIGN_MAX_JSON_BYTES`, `COUNTERSIGN_MAX_IMPORT_BYTES`).";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "The body is not sent as `application/json`.";
    AmbiguousOperation = "ambiguous_operation", UNPROCESSABLE_ENTITY, "Several restore operations fit the kinds to restore: name one in `operation`.";
    AmbiguousPoint = "ambiguous_point", UNPROCESSABLE_ENTITY, "A restore gives both `before_change` and `at`.";
    ConfirmCountMismatch = "confirm_count_mismatch", UNPROCESSABLE_ENTITY, "The typed target count is not the change's.";
    ConfirmCountRequired = "confirm_count_required", UNPROCESSABLE_ENTITY, "This sign-off needs the target count typed (`confirm_count`).";
    EmptyComment = "empty_comment", UNPROCESSABLE_ENTITY, "The comment is empty.";
    EmptyRestore = "empty_restore", UNPROCESSABLE_ENTITY, "A restore names neither `entities` nor `changes`.";
    ExpectationMismatch = "expectation_mismatch", UNPROCESSABLE_ENTITY, "The resolution does not have the expected numbers of targets and roots (`expect`).";
    FormProblems = "form_problems", UNPROCESSABLE_ENTITY, "A form is shown again with what is wrong in it (pages).";
    FuturePoint = "future_point", UNPROCESSABLE_ENTITY, "A restore's `at` is in the future.";
    InvalidBody = "invalid_body", UNPROCESSABLE_ENTITY, "A customer notice's body is empty or longer than 20000 characters.";
    InvalidComment = "invalid_comment", UNPROCESSABLE_ENTITY, "The comment is too long.";
    InvalidFormat = "invalid_format", UNPROCESSABLE_ENTITY, "`format` is neither `json` nor `csv`.";
    InvalidFreeze = "invalid_freeze", UNPROCESSABLE_ENTITY, "A freeze's fields are wrong: no name, an end before its start, an unknown operation (`details.field`).";
    InvalidHook = "invalid_hook", UNPROCESSABLE_ENTITY, "A hook's fields are wrong: no name, an address that is not http(s), an unknown format or event, a secret on a Slack or Teams hook, more than 20 hooks for a team (`details.problems`).";
    InvalidLines = "invalid_lines", UNPROCESSABLE_ENTITY, "An import has bad lines, listed in `details`; nothing was written.";
    InvalidParams = "invalid_params", UNPROCESSABLE_ENTITY, "The operation's parameters are missing, unknown or of the wrong type.";
    InvalidPerson = "invalid_person", UNPROCESSABLE_ENTITY, "An address that is not an email address, a name that is not one line of 1 to 120 characters, or an address that has an account already (admin pages).";
    InvalidPart = "invalid_part", UNPROCESSABLE_ENTITY, "`part` is neither `ids` nor `within`.";
    InvalidPreferences = "invalid_preferences", UNPROCESSABLE_ENTITY, "Notification preferences name unknown events or channels (`details.problems`).";
    InvalidRange = "invalid_range", UNPROCESSABLE_ENTITY, "The calendar's `from`/`to` are not RFC 3339 times or dates, `to` is not after `from`, or the range is longer than 400 days.";
    InvalidRationale = "invalid_rationale", UNPROCESSABLE_ENTITY, "The rationale is too long or has control characters.";
    InvalidReason = "invalid_reason", UNPROCESSABLE_ENTITY, "The reason is too long.";
    InvalidRecurrence = "invalid_recurrence", UNPROCESSABLE_ENTITY, "A recurring freeze's rule does not parse (the message names the part: `FREQ`, `BYDAY`, `START`, `DURATION`).";
    InvalidRestore = "invalid_restore", UNPROCESSABLE_ENTITY, "Unknown, purged or wrong-kind IDs in a restore, each with its line.";
    InvalidRole = "invalid_role", UNPROCESSABLE_ENTITY, "A customer notice names an unknown contact role.";
    InvalidSelector = "invalid_selector", UNPROCESSABLE_ENTITY, "The targets exceed a bound (ID count or length, `where` size); `details` names the field and line.";
    InvalidSide = "invalid_side", UNPROCESSABLE_ENTITY, "The sign-off form names no side (pages).";
    InvalidStart = "invalid_start", UNPROCESSABLE_ENTITY, "A scheduled start's `at` does not parse, is in the past or outside the change's window, or the change has no window opening to start at.";
    InvalidState = "invalid_state", UNPROCESSABLE_ENTITY, "A `state` filter names an unknown state.";
    InvalidStatus = "invalid_status", UNPROCESSABLE_ENTITY, "A `status` filter names an unknown item status.";
    InvalidSubject = "invalid_subject", UNPROCESSABLE_ENTITY, "A customer notice's subject is not one line of 1 to 200 characters.";
    InvalidTeamName = "invalid_team_name", UNPROCESSABLE_ENTITY, "A new team's name is not lowercase letters, digits, `-`, `_`, `.` (at most 64), or is taken (admin pages).";
    InvalidTitle = "invalid_title", UNPROCESSABLE_ENTITY, "The title is empty, too long or not one line.";
    InvalidWindow = "invalid_window", UNPROCESSABLE_ENTITY, "The execution window ends before it starts.";
    NoPoint = "no_point", UNPROCESSABLE_ENTITY, "A restore names no point: `before_change` or `at`.";
    NoRecipients = "no_recipients", UNPROCESSABLE_ENTITY, "None of the affected customers has a contact in the chosen roles.";
    NoRestoreOperation = "no_restore_operation", UNPROCESSABLE_ENTITY, "No restore operation in the schema covers the kinds to restore.";
    NoTargets = "no_targets", UNPROCESSABLE_ENTITY, "The change resolves to no targets.";
    NotARestore = "not_a_restore", UNPROCESSABLE_ENTITY, "The operation named for a restore is not a restore operation.";
    NotASoftFreeze = "not_a_soft_freeze", UNPROCESSABLE_ENTITY, "A freeze exception names a freeze that is not a soft freeze covering the change's operation.";
    NotExecuted = "not_executed", UNPROCESSABLE_ENTITY, "The change referred to (rolled back, restored, or restored before) never ran.";
    NotReversible = "not_reversible", UNPROCESSABLE_ENTITY, "The change has no inverse (or is a rollback itself) and cannot be rolled back.";
    NothingToRollBack = "nothing_to_roll_back", UNPROCESSABLE_ENTITY, "The execution changed no target that is still as it left it.";
    ReasonRequired = "reason_required", UNPROCESSABLE_ENTITY, "A rejection needs a reason.";
    ResolutionErrors = "resolution_errors", UNPROCESSABLE_ENTITY, "The targets have resolution errors (`details.errors`); fix them before submitting.";
    RestoreFixed = "restore_fixed", UNPROCESSABLE_ENTITY, "A bulk restore's targets and parameters are fixed.";
    RollbackFixed = "rollback_fixed", UNPROCESSABLE_ENTITY, "A rollback's targets and parameters are fixed.";
    UnknownKind = "unknown_kind", UNPROCESSABLE_ENTITY, "A `kind` filter names a kind the schema does not have.";
    UnknownOperation = "unknown_operation", UNPROCESSABLE_ENTITY, "The request names an operation the schema does not have.";
    UnknownTeam = "unknown_team", UNPROCESSABLE_ENTITY, "No team of that name.";
    UnknownUser = "unknown_user", UNPROCESSABLE_ENTITY, "No person with that email address.";
    Busy = "busy", TOO_MANY_REQUESTS, "The server is at its ceiling of sign-in attempts or password checks; try again in a few seconds (pages).";
    NoticeRateLimited = "notice_rate_limited", TOO_MANY_REQUESTS, "A customer notice for this change was sent less than 10 minutes ago (`details.next_possible_at`).";
    TooManyAttempts = "too_many_attempts", TOO_MANY_REQUESTS, "Too many failed sign-ins for this address or from this client; the message says how long to wait (pages).";
    Internal = "internal", INTERNAL_SERVER_ERROR, "An unexpected error; it is logged with the request id (`x-request-id`).";
    SsoUnavailable = "sso_unavailable", BAD_GATEWAY, "The single sign-on provider cannot be reached, or its discovery document or token answer is not usable; the message says which (pages).";
    DatabaseUnavailable = "database_unavailable", SERVICE_UNAVAILABLE, "`/readyz`: the database does not answer.";
    Unavailable = "unavailable", SERVICE_UNAVAILABLE, "The database is busy or unreachable; try again.";
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ErrorCode::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an error code")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A refusal the caller can act on: answered with `code.status()`.
    #[error("{message}")]
    Client {
        code: ErrorCode,
        message: String,
        details: Value,
    },
    #[error("database error: {0}")]
    Db(#[from] diesel::result::Error),
    #[error("database pool error: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError::Client {
            code,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// `not_found` with the message "<what> `<id>` does not exist".
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} `{id}` does not exist"))
    }

    pub fn with_details(mut self, d: Value) -> Self {
        if let AppError::Client { details, .. } = &mut self {
            *details = d;
        }
        self
    }

    /// The code the answer carries: the client error's, `unavailable` for a pool that gave
    /// no connection, `internal` for anything else.
    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Client { code, .. } => *code,
            AppError::Pool(_) => ErrorCode::Unavailable,
            AppError::Db(_) | AppError::Unexpected(_) => ErrorCode::Internal,
        }
    }

    /// The HTTP status of the answer: its code's.
    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    pub fn details(&self) -> &Value {
        match self {
            AppError::Client { details, .. } => details,
            _ => &Value::Null,
        }
    }

    pub fn is_client(&self) -> bool {
        matches!(self, AppError::Client { .. })
    }
}

impl From<IllegalTransition> for AppError {
    fn from(e: IllegalTransition) -> Self {
        AppError::new(ErrorCode::IllegalTransition, e.to_string()).with_details(json!({
            "state": e.state.as_str(),
            "action": e.action.as_str(),
        }))
    }
}

// The domain's refusals name their rule; here each rule gets its stable code.

impl From<&Reason> for ErrorCode {
    fn from(r: &Reason) -> Self {
        match r {
            Reason::Forbidden => ErrorCode::Forbidden,
            Reason::NotAuthor => ErrorCode::NotAuthor,
            Reason::NotInTeam => ErrorCode::NotInTeam,
            Reason::NotImplementer => ErrorCode::NotImplementer,
            Reason::SeparationOfDuties => ErrorCode::SeparationOfDuties,
            Reason::IllegalTransition => ErrorCode::IllegalTransition,
            Reason::UnknownState => ErrorCode::UnknownState,
            Reason::AlreadySigned => ErrorCode::AlreadySigned,
            Reason::NoThirdSide => ErrorCode::NoThirdSide,
            Reason::OutsideWindow => ErrorCode::OutsideWindow,
            Reason::ExecutionState => ErrorCode::ExecutionState,
            Reason::SignoffsNoLongerCount => ErrorCode::SignoffsNoLongerCount,
            Reason::OperationRemoved => ErrorCode::OperationRemoved,
            Reason::NotReversible => ErrorCode::NotReversible,
            Reason::AlreadyRolledBack => ErrorCode::AlreadyRolledBack,
            Reason::NothingToRollBack => ErrorCode::NothingToRollBack,
            Reason::Blocked(BlockKind::Lockdown) => ErrorCode::Lockdown,
            Reason::Blocked(BlockKind::HardFreeze) => ErrorCode::Frozen,
            Reason::Blocked(BlockKind::SoftFreeze) => ErrorCode::FreezeExceptionRequired,
            Reason::Notice(n) => n.into(),
        }
    }
}

impl From<&RequestRefusal> for ErrorCode {
    fn from(r: &RequestRefusal) -> Self {
        match r {
            RequestRefusal::SameTeam { .. } => ErrorCode::SameTeam,
            RequestRefusal::NotRequesterTeam { .. } | RequestRefusal::ReviewingTeam { .. } => {
                ErrorCode::NotRequesterTeam
            }
        }
    }
}

impl From<&Refusal> for ErrorCode {
    fn from(r: &Refusal) -> Self {
        match r {
            Refusal::StaleFingerprint { .. } => ErrorCode::StaleFingerprint,
            Refusal::StaleText { .. } => ErrorCode::StaleText,
            Refusal::ConfirmCountMissing { .. } => ErrorCode::ConfirmCountRequired,
            Refusal::ConfirmCountWrong { .. } => ErrorCode::ConfirmCountMismatch,
        }
    }
}

impl From<&NoticeRefusal> for ErrorCode {
    fn from(r: &NoticeRefusal) -> Self {
        match r {
            NoticeRefusal::NotInTeams { .. } => ErrorCode::NotInTeam,
            NoticeRefusal::InBothTeams { .. } => ErrorCode::SeparationOfDuties,
            NoticeRefusal::ChangeNotApproved { .. } => ErrorCode::ChangeNotApproved,
            NoticeRefusal::NotDraft { .. } => ErrorCode::NoticeNotDraft,
            NoticeRefusal::OwnNotice { .. } => ErrorCode::OwnNotice,
            NoticeRefusal::SameTeam { .. } => ErrorCode::SameTeam,
            NoticeRefusal::DrafterInBothTeams { .. } => ErrorCode::DrafterInBothTeams,
            NoticeRefusal::RateLimited { .. } => ErrorCode::NoticeRateLimited,
            NoticeRefusal::CannotDiscard { .. } => ErrorCode::NotAllowedToDiscard,
        }
    }
}

impl From<TextField> for ErrorCode {
    fn from(f: TextField) -> Self {
        match f {
            TextField::Title => ErrorCode::InvalidTitle,
            TextField::Rationale => ErrorCode::InvalidRationale,
        }
    }
}

impl From<Denied> for AppError {
    fn from(d: Denied) -> Self {
        let mut details = json!({"action": d.action.as_str()});
        if let Some(st) = d.state {
            details["state"] = json!(st.as_str());
        }
        AppError::new((&d.reason).into(), d.message).with_details(details)
    }
}

impl From<RequestRefusal> for AppError {
    fn from(r: RequestRefusal) -> Self {
        AppError::new((&r).into(), r.to_string())
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        let details = match &r {
            Refusal::StaleFingerprint { current, given } => {
                json!({"current_fingerprint": current, "given_fingerprint": given})
            }
            Refusal::StaleText { current, given } => {
                json!({"current_text_hash": current, "given_text_hash": given})
            }
            Refusal::ConfirmCountMissing { expected } => json!({"expected": expected}),
            Refusal::ConfirmCountWrong { given, expected } => {
                json!({"expected": expected, "given": given})
            }
        };
        AppError::new((&r).into(), r.to_string()).with_details(details)
    }
}

impl From<NoticeRefusal> for AppError {
    fn from(r: NoticeRefusal) -> Self {
        let details = match &r {
            NoticeRefusal::RateLimited {
                last_sent_at,
                next_at,
            } => json!({"last_sent_at": last_sent_at, "next_possible_at": next_at}),
            NoticeRefusal::ChangeNotApproved { state } => json!({"state": state.as_str()}),
            NoticeRefusal::NotDraft { state } => json!({"notice_state": state.as_str()}),
            _ => Value::Null,
        };
        AppError::new((&r).into(), r.to_string()).with_details(details)
    }
}

impl From<TextProblem> for AppError {
    fn from(p: TextProblem) -> Self {
        AppError::new(p.field.into(), p.message)
    }
}

/// Request id stored in request extensions by the logging middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let body = match self {
            AppError::Client {
                message, details, ..
            } => {
                let mut e = json!({"code": code, "message": message});
                if !details.is_null() {
                    e["details"] = details.clone();
                }
                json!({ "error": e })
            }
            AppError::Pool(_) => {
                json!({"error": {"code": code, "message": "the database is busy or unreachable; try again"}})
            }
            _ => {
                json!({"error": {"code": code, "message": "an unexpected error occurred; it has been logged (see the x-request-id header)"}})
            }
        };
        HttpResponse::build(code.status()).json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_one_spelling() {
        let mut seen = std::collections::BTreeSet::new();
        for &c in ErrorCode::ALL {
            let text = c.as_str();
            assert!(seen.insert(text), "`{text}` is declared twice");
            assert!(
                !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "`{text}` is not snake_case"
            );
            assert_eq!(ErrorCode::parse(text), Some(c));
            assert_eq!(c.to_string(), text);
            assert_eq!(serde_json::to_value(c).unwrap(), json!(text));
            assert_eq!(serde_json::from_value::<ErrorCode>(json!(text)).unwrap(), c);
            let s = c.status();
            assert!(s.is_client_error() || s.is_server_error(), "{text}: {s}");
        }
        assert!(ErrorCode::parse("no_such_code").is_none());
        assert!(serde_json::from_value::<ErrorCode>(json!("no_such_code")).is_err());
    }

    #[test]
    fn server_side_failures_have_their_codes() {
        let e = AppError::from(anyhow::anyhow!("boom"));
        assert_eq!((e.code(), e.status().as_u16()), (ErrorCode::Internal, 500));
        let e = AppError::from(diesel::result::Error::NotFound);
        assert_eq!((e.code(), e.status().as_u16()), (ErrorCode::Internal, 500));
        let e = AppError::new(ErrorCode::InvalidSelector, "too many");
        assert_eq!(e.status().as_u16(), 422);
        assert_eq!(e.code(), ErrorCode::InvalidSelector);
    }
}

/// The declaration list against the tree and the README: every code is used, and the
/// README's "Error codes" table is the list (code, status, meaning, in order).
#[cfg(test)]
mod listed {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::ErrorCode;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }

    /// This file without the declaration list and without its tests: what produces codes
    /// here (the domain refusals' codes, `internal`, `unavailable`, `not_found`).
    fn error_rs_code(text: &str) -> String {
        let decl = text
            .find("\nerror_codes! {\n")
            .expect("the declaration list");
        let after = decl + text[decl..].find("\n}\n").expect("its end") + 3;
        let tests = text.find("\n#[cfg(test)]").expect("the tests");
        format!("{}{}", &text[..decl], &text[after..tests])
    }

    /// Every `ErrorCode::Variant` the code names, outside the declaration list and tests.
    fn used() -> BTreeSet<String> {
        let mut files = Vec::new();
        sources(&root().join("src"), &mut files);
        let re = regex::Regex::new(r"ErrorCode::([A-Z][A-Za-z0-9]*)").unwrap();
        files
            .iter()
            .map(|(path, text)| {
                if path.ends_with("src/error.rs") {
                    error_rs_code(text)
                } else {
                    text.clone()
                }
            })
            .flat_map(|text| {
                re.captures_iter(&text)
                    .map(|c| c[1].to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn every_code_is_used() {
        let used = used();
        let unused: Vec<String> = ErrorCode::ALL
            .iter()
            .map(|c| format!("{c:?}"))
            .filter(|v| !used.contains(v))
            .collect();
        assert!(
            unused.is_empty(),
            "ErrorCode variants nothing produces (remove them, or use them): {unused:?}"
        );
        // And nothing names a variant that does not exist.
        let known: BTreeSet<String> = ErrorCode::ALL.iter().map(|c| format!("{c:?}")).collect();
        let unknown: Vec<&String> = used
            .iter()
            .filter(|v| *v != "ALL" && !known.contains(*v))
            .collect();
        assert!(unknown.is_empty(), "not ErrorCode variants: {unknown:?}");
    }

    /// The table as the README should have it.
    fn expected_table() -> String {
        let mut t = String::from("| code | status | meaning |\n|---|---|---|\n");
        for c in ErrorCode::ALL {
            t += &format!("| `{c}` | {} | {} |\n", c.status().as_u16(), c.meaning());
        }
        t
    }

    #[test]
    fn the_readme_lists_every_code_with_its_status() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        let section = readme
            .split("\n### Error codes\n")
            .nth(1)
            .expect("README has a section `### Error codes`");
        let rows: Vec<Vec<&str>> = section
            .lines()
            .skip_while(|l| !l.starts_with("| code"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
            .collect();
        let again = format!("the table as it should be:\n\n{}", expected_table());
        let mut listed = Vec::new();
        for cells in &rows {
            assert_eq!(
                cells.len(),
                3,
                "{cells:?}: want | code | status | meaning |"
            );
            let text = cells[0].trim_matches('`');
            let code = ErrorCode::parse(text).unwrap_or_else(|| {
                panic!("the README lists `{text}`, which is no ErrorCode; {again}")
            });
            assert_eq!(
                cells[1],
                code.status().as_u16().to_string(),
                "README: the status of `{code}`; {again}"
            );
            assert_eq!(cells[2], code.meaning(), "README: `{code}`; {again}");
            listed.push(code);
        }
        let missing: Vec<&str> = ErrorCode::ALL
            .iter()
            .filter(|c| !listed.contains(c))
            .map(|c| c.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "missing from the README: {missing:?}; {again}"
        );
        assert_eq!(
            listed,
            ErrorCode::ALL,
            "README: order or duplicates; {again}"
        );
    }

    /// Prose that names a status beside a code ("409 `stale_fingerprint`") says its status.
    #[test]
    fn statuses_named_in_the_docs_are_the_codes() {
        let re = regex::Regex::new(r"\b([1-5][0-9][0-9]),? `([a-z_]+)`").unwrap();
        for doc in ["README.md", "docs/ARCHITECTURE.md"] {
            let text = std::fs::read_to_string(root().join(doc)).unwrap();
            for m in re.captures_iter(&text) {
                if let Some(code) = ErrorCode::parse(&m[2]) {
                    assert_eq!(
                        m[1].parse::<u16>().unwrap(),
                        code.status().as_u16(),
                        "{doc}: `{}`",
                        &m[0]
                    );
                }
            }
        }
    }
}
