//! One error type for services, mapped once to HTTP: a stable machine-readable `code`,
//! a human message, optional details. Unexpected errors are logged with their cause
//! chain and shown as a generic 500 with the request id.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::domain::access::Denied;
use crate::domain::change::IllegalTransition;
use crate::domain::notice::{NoticeRefusal, RefusalKind};
use crate::domain::schema::RequestRefusal;
use crate::domain::signoff::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: String,
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
    pub fn client(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        AppError::Client {
            status,
            code: code.to_string(),
            message: message.into(),
            details: Value::Null,
        }
    }
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn not_found(what: &str, id: impl std::fmt::Display) -> Self {
        Self::client(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} `{id}` does not exist"),
        )
    }
    pub fn not_found_msg(message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::CONFLICT, code, message)
    }
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::FORBIDDEN, code, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::client(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn with_details(mut self, d: Value) -> Self {
        if let AppError::Client { details, .. } = &mut self {
            *details = d;
        }
        self
    }

    pub fn code(&self) -> &str {
        match self {
            AppError::Client { code, .. } => code,
            _ => "internal",
        }
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
        AppError::conflict("illegal_transition", e.to_string()).with_details(json!({
            "state": e.state.as_str(),
            "action": e.action.as_str(),
        }))
    }
}

impl From<Denied> for AppError {
    fn from(d: Denied) -> Self {
        let status = if d.forbidden {
            StatusCode::FORBIDDEN
        } else if matches!(d.code, "not_reversible" | "nothing_to_roll_back") {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::CONFLICT
        };
        let mut details = json!({"action": d.action.as_str()});
        if let Some(st) = d.state {
            details["state"] = json!(st.as_str());
        }
        AppError::client(status, d.code, d.message.clone()).with_details(details)
    }
}

impl From<RequestRefusal> for AppError {
    fn from(r: RequestRefusal) -> Self {
        AppError::forbidden(r.code(), r.to_string())
    }
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        let status = match &r {
            Refusal::StaleFingerprint { .. } | Refusal::StaleText { .. } => StatusCode::CONFLICT,
            Refusal::ConfirmCountMissing { .. } | Refusal::ConfirmCountWrong { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
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
        AppError::client(status, r.code(), r.to_string()).with_details(details)
    }
}

impl From<NoticeRefusal> for AppError {
    fn from(r: NoticeRefusal) -> Self {
        let status = match r.kind() {
            RefusalKind::Forbidden => StatusCode::FORBIDDEN,
            RefusalKind::Conflict => StatusCode::CONFLICT,
            RefusalKind::TooSoon => StatusCode::TOO_MANY_REQUESTS,
        };
        let details = match &r {
            NoticeRefusal::RateLimited {
                last_sent_at,
                next_at,
            } => json!({"last_sent_at": last_sent_at, "next_possible_at": next_at}),
            NoticeRefusal::ChangeNotApproved { state } => json!({"state": state.as_str()}),
            NoticeRefusal::NotDraft { state } => json!({"notice_state": state.as_str()}),
            _ => Value::Null,
        };
        AppError::client(status, r.code(), r.to_string()).with_details(details)
    }
}

/// Request id stored in request extensions by the logging middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::Client { status, .. } => *status,
            AppError::Pool(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = match self {
            AppError::Client {
                code,
                message,
                details,
                ..
            } => {
                let mut e = json!({"code": code, "message": message});
                if !details.is_null() {
                    e["details"] = details.clone();
                }
                json!({ "error": e })
            }
            AppError::Pool(_) => {
                json!({"error": {"code": "unavailable", "message": "the database is busy or unreachable; try again"}})
            }
            _ => {
                json!({"error": {"code": "internal", "message": "an unexpected error occurred; it has been logged (see the x-request-id header)"}})
            }
        };
        HttpResponse::build(self.status_code()).json(body)
    }
}
