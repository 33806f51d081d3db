//! Uploads are spooled before any database work: the body goes to an unnamed temporary
//! file (bounded in size, with a timeout between chunks), and only once it has arrived is
//! a pooled connection (and, on SQLite, the write lock) taken to import it. A slow or
//! stalled client therefore holds nothing but its own socket and file.

use std::io::{BufReader, Seek, Write};
use std::time::Duration;

use actix_web::web;
use futures_util::StreamExt;

use crate::domain::lines::Lines;
use crate::error::{AppError, ErrorCode};

/// A received body on disk.
pub struct Spooled {
    file: std::fs::File,
    pub bytes: u64,
}

impl Spooled {
    /// Its lines, each bounded (see [`crate::domain::lines`]).
    pub fn lines(mut self) -> std::io::Result<Lines<BufReader<std::fs::File>>> {
        self.file.rewind()?;
        Ok(Lines::new(BufReader::with_capacity(1 << 20, self.file)))
    }
}

fn io_error(e: std::io::Error) -> AppError {
    AppError::Unexpected(anyhow::anyhow!("cannot spool the upload: {e}"))
}

/// Receive `payload` into a temporary file: at most `limit` bytes (413 beyond, named by
/// `setting`), each chunk within `idle` of the previous one (408 otherwise).
pub async fn spool(
    payload: &mut web::Payload,
    limit: usize,
    setting: &str,
    idle: Duration,
) -> Result<Spooled, AppError> {
    let file = tempfile::tempfile().map_err(io_error)?;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let mut bytes = 0u64;
    loop {
        let chunk = match actix_web::rt::time::timeout(idle, payload.next()).await {
            Err(_) => {
                return Err(AppError::new(ErrorCode::UploadStalled,
                    format!(
                        "no data arrived for {} seconds after {bytes} bytes; nothing was written (COUNTERSIGN_UPLOAD_IDLE_SECS)",
                        idle.as_secs()
                    ),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(AppError::new(ErrorCode::UnreadableBody,
                    format!("the upload could not be read after {bytes} bytes: {e}"),
                ))
            }
            Ok(Some(Ok(c))) => c,
        };
        bytes += chunk.len() as u64;
        if bytes > limit as u64 {
            return Err(AppError::new(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than {limit} bytes ({setting}); nothing was written"),
            ));
        }
        out.write_all(&chunk).map_err(io_error)?;
    }
    let file = out.into_inner().map_err(|e| io_error(e.into_error()))?;
    Ok(Spooled { file, bytes })
}
