//! One log line per request with its id, status and duration; the id is returned in
//! `x-request-id`. Unexpected errors are logged here with their cause chain.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;

use crate::error::RequestId;

pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let path = req.path().to_string();
    let res = next.call(req).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    match res {
        Ok(mut res) => {
            let status = res.status().as_u16();
            if let Some(err) = res.response().error() {
                if status >= 500 {
                    tracing::error!(request_id = %id, %method, %path, status, error = %format!("{err:?}"), "request failed");
                }
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut()
                    .insert(HeaderName::from_static("x-request-id"), v);
            }
            tracing::info!(request_id = %id, %method, %path, status, duration_ms = format!("{ms:.1}"), "request");
            Ok(res)
        }
        Err(e) => {
            tracing::error!(request_id = %id, %method, %path, error = %e, duration_ms = format!("{ms:.1}"), "request failed");
            Err(e)
        }
    }
}
