//! `Authorization: Bearer <token>` → [`CurrentUser`]. 401 without a valid token
//! (`token_expired` for one past its `expires_at`); each use is recorded, at most once a minute.

use std::future::Future;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpRequest};
use serde_json::json;

use super::{with_conn, AppState};
use crate::db::users;
use crate::error::{AppError, ErrorCode};
use crate::service::CurrentUser;

pub struct Authed(pub CurrentUser);

impl FromRequest for Authed {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                AppError::Unexpected(anyhow::anyhow!("application state missing"))
            })?;
            let header = header.ok_or_else(|| AppError::new(ErrorCode::Unauthenticated, "send `Authorization: Bearer <token>` (create one with `countersign token create EMAIL`)"))?;
            let token = header
                .strip_prefix("Bearer ")
                .or_else(|| header.strip_prefix("bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    AppError::new(
                        ErrorCode::Unauthenticated,
                        "the Authorization header must be `Bearer <token>`",
                    )
                })?
                .to_string();
            let user = with_conn(&state, move |conn| {
                let Some(t) = users::token_use(conn, &token)? else {
                    return Err(AppError::new(ErrorCode::Unauthenticated,
                        "the API token is not valid (unknown or revoked, or its owner is deactivated)",
                    ));
                };
                if let Some(at) = t.expires_at.filter(|_| t.expired(crate::db::now())) {
                    return Err(AppError::new(ErrorCode::TokenExpired,
                        format!(
                            "the API token expired at {} UTC; create a new one under Settings or with `countersign token create`",
                            at.format("%Y-%m-%d %H:%M")
                        ),
                    )
                    .with_details(json!({"expired_at": at.and_utc().to_rfc3339()})));
                }
                // Bookkeeping only: a failure to record the use never refuses the request.
                if let Err(e) = users::touch_token(conn, &t) {
                    tracing::warn!(error = %e, token = t.id, "could not record the token's use");
                }
                Ok(CurrentUser::load(conn, t.user)?)
            })
            .await?;
            Ok(Authed(user))
        })
    }
}
