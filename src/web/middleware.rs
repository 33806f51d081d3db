//! One log line per request with its id, status and duration; the id is returned in
//! `x-request-id`. Unexpected errors are logged here with their cause chain.
//!
//! Every request runs in a `request` span (`request_id`, `method`, `path`), so every log
//! line written while serving it, including those of its blocking database work (which
//! [`super::blocking`] runs in the same span), carries the request's id.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use tracing::Instrument;

use crate::error::RequestId;

pub async fn request_log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path()
    );
    let res = next.call(req).instrument(span.clone()).await;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let _in_request = span.enter();
    match res {
        Ok(mut res) => {
            let status = res.status().as_u16();
            if let Some(state) = res.request().app_data::<super::State>() {
                let route = res.request().match_pattern();
                state.metrics.observe(
                    route.as_deref().unwrap_or("(unmatched)"),
                    res.request().method().as_str(),
                    status,
                    start,
                );
            }
            if let Some(err) = res.response().error() {
                if status >= 500 {
                    tracing::error!(status, error = %format!("{err:?}"), "request failed");
                }
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                res.headers_mut()
                    .insert(HeaderName::from_static("x-request-id"), v);
            }
            tracing::info!(status, duration_ms = format!("{ms:.1}"), "request");
            Ok(res)
        }
        Err(e) => {
            tracing::error!(error = %e, duration_ms = format!("{ms:.1}"), "request failed");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use actix_web::{middleware::from_fn, test, web, App, HttpResponse};

    /// Log output written to memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A line logged by blocking database work on another thread carries the id of the
    /// request it serves (the process-wide subscriber: the blocking pool's threads log
    /// through it).
    #[actix_rt::test]
    async fn blocking_work_logs_with_the_request_id() {
        let out = Captured::default();
        let writer = out.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("the only global subscriber of the unit tests");
        let app = test::init_service(App::new().wrap(from_fn(super::request_log)).route(
            "/work",
            web::get().to(|| async {
                super::super::blocking(|| {
                    tracing::info!(on = ?std::thread::current().id(), "inside blocking work");
                    Ok(())
                })
                .await
                .map(|()| HttpResponse::Ok().finish())
            }),
        ))
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/work").to_request()).await;
        let id = res
            .headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let line = |what: &str| {
            text.lines()
                .find(|l| l.contains(what))
                .unwrap_or_else(|| panic!("no `{what}` line in {text}"))
                .to_string()
        };
        let inside = line("inside blocking work");
        assert!(inside.contains(&format!("request_id={id}")), "{inside}");
        assert!(inside.contains("path=/work"), "{inside}");
        let done = line("status=200");
        assert!(done.contains(&format!("request_id={id}")), "{done}");
    }
}
