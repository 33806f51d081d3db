//! Evidence bundles over HTTP: built on the blocking pool from one snapshot into an unnamed
//! temporary file (`service::evidence::bundle`), then streamed in chunks, each read on the
//! blocking pool, so neither the bundle nor its targets are ever held in memory whole.

use std::io::Read;

use actix_web::HttpResponse;
use futures_util::stream;

use crate::error::AppResult;
use crate::service::{evidence, CurrentUser};
use crate::web::{blocking, run_as, State};

/// Bytes read from the bundle per chunk of the answer.
const CHUNK: usize = 64 * 1024;

/// The evidence bundle of change `id` for `user`, as an attachment.
pub async fn evidence(state: &State, user: CurrentUser, id: i64) -> AppResult<HttpResponse> {
    let b = run_as(state, user, move |conn, schema, user| {
        evidence::bundle(conn, schema, user, id)
    })
    .await?;
    let chunks = stream::unfold(Some(b.file), |file| async move {
        let mut file = file?;
        let read = blocking(move || {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).map_err(|e| {
                crate::error::AppError::Unexpected(anyhow::anyhow!("reading the bundle: {e}"))
            })?;
            buf.truncate(n);
            Ok((buf, file))
        })
        .await;
        match read {
            Ok((buf, _)) if buf.is_empty() => None,
            Ok((buf, file)) => Some((Ok(actix_web::web::Bytes::from(buf)), Some(file))),
            Err(e) => Some((Err(actix_web::Error::from(e)), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/gzip")
        .insert_header((
            "Content-Disposition",
            format!("attachment; filename=\"{}\"", b.file_name),
        ))
        .insert_header(("Content-Length", b.bytes.to_string()))
        .streaming(chunks))
}
