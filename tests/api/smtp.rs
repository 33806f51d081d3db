//! A small SMTP server on loopback for the mail tests: it speaks enough of RFC 5321 for a
//! real client (lettre) and records every accepted message. It can be told to reject one
//! recipient (550) or to stall (accept the connection and say nothing).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Answer 550 to `RCPT TO` for this address.
    Reject(String),
    /// Accept connections and never answer.
    Stall,
}

#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

impl Received {
    /// A header's (unfolded) value.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The decoded body of the part with this content type (`text/plain`, `text/html`).
    pub fn part(&self, content_type: &str) -> Option<String> {
        let ct = self.header("Content-Type").unwrap_or_default();
        let boundary = ct
            .split("boundary=")
            .nth(1)
            .map(|b| b.trim_matches('"').to_string())?;
        for part in self.data.split(&format!("--{boundary}")) {
            let part = part.trim_start_matches("\r\n");
            let (head, body) = part.split_once("\r\n\r\n")?;
            let head_l = head.to_ascii_lowercase();
            if !head_l.contains(&format!("content-type: {content_type}")) {
                continue;
            }
            let body = body.trim_end_matches("\r\n").to_string();
            if head_l.contains("content-transfer-encoding: quoted-printable") {
                return Some(decode_qp(&body));
            }
            if head_l.contains("content-transfer-encoding: base64") {
                use base64::Engine;
                let clean: String = body.split_whitespace().collect();
                return base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned());
            }
            return Some(body);
        }
        None
    }
}

fn decode_qp(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            if let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2)) {
                if let Ok(v) = u8::from_str_radix(&format!("{}{}", *h as char, *l as char), 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone)]
pub struct SmtpServer {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub mode: Arc<Mutex<Mode>>,
    pub connections: Arc<Mutex<u32>>,
}

impl SmtpServer {
    /// Listen on `port` (0: any free port).
    pub async fn start(port: u16, mode: Mode) -> SmtpServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind smtp");
        let server = SmtpServer {
            port: listener.local_addr().unwrap().port(),
            received: Arc::new(Mutex::new(Vec::new())),
            mode: Arc::new(Mutex::new(mode)),
            connections: Arc::new(Mutex::new(0)),
        };
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                *s.connections.lock().unwrap() += 1;
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = s.session(sock).await;
                });
            }
        });
        server
    }

    pub fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    pub fn mails(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Mails addressed to `to`.
    pub fn to(&self, to: &str) -> Vec<Received> {
        self.mails()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t == to))
            .collect()
    }

    async fn session(&self, sock: tokio::net::TcpStream) -> std::io::Result<()> {
        let mode = self.mode.lock().unwrap().clone();
        let (r, mut w) = sock.into_split();
        if mode == Mode::Stall {
            // Hold the connection open, say nothing.
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            return Ok(());
        }
        let mut lines = BufReader::new(r).lines();
        w.write_all(b"220 countersign-test ESMTP\r\n").await?;
        let (mut from, mut to) = (String::new(), Vec::new());
        while let Some(line) = lines.next_line().await? {
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-countersign-test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
                b"250 OK\r\n"
            } else if upper.starts_with("RSET") {
                from.clear();
                to.clear();
                b"250 OK\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                from = addr(&line);
                b"250 OK\r\n"
            } else if upper.starts_with("RCPT TO:") {
                let a = addr(&line);
                if matches!(&mode, Mode::Reject(r) if *r == a) {
                    b"550 5.1.1 no such mailbox\r\n"
                } else {
                    to.push(a);
                    b"250 OK\r\n"
                }
            } else if upper == "DATA" {
                w.write_all(b"354 end with .\r\n").await?;
                let mut data = String::new();
                while let Some(l) = lines.next_line().await? {
                    if l == "." {
                        break;
                    }
                    let l = l.strip_prefix('.').map(str::to_string).unwrap_or(l);
                    data.push_str(&l);
                    data.push_str("\r\n");
                }
                self.received.lock().unwrap().push(Received {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 OK queued\r\n"
            } else if upper.starts_with("QUIT") {
                w.write_all(b"221 bye\r\n").await?;
                return Ok(());
            } else {
                b"502 not implemented\r\n"
            };
            w.write_all(reply).await?;
        }
        Ok(())
    }
}

fn addr(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}

/// A loopback port nothing listens on (yet), for a server a test starts later. A port the
/// kernel hands out for port 0 could be given again to any other server a parallel test
/// binds meanwhile (seen as a flaky `AddrInUse`), so this one comes from below the
/// ephemeral range (32768–60999 on Linux), spread by process id, another one per call.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let spread = std::process::id().wrapping_mul(7919);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + (spread.wrapping_add(n.wrapping_mul(37)) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
