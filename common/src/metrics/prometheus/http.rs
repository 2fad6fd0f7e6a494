//! The `/metrics` endpoint: a small HTTP/1.1 responder on a tokio
//! listener, one route, `Connection: close`. Hand-rolled rather than a
//! web framework because it answers one GET: the request head is read
//! into a bounded buffer, with a deadline, and anything else is 404 or 405.
//!
//! The listener is bound by [`MetricsServer::bind`] before the run starts,
//! so an address in use is bad input, not a run without metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::Exposition;

/// The longest request head read; a scrape's is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// A client that has not sent its request head within this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may take to write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A bound listener serving `/metrics` until dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` (an error names it) and serves `metrics` on it.
    pub async fn bind(addr: &str, metrics: Arc<dyn Exposition>) -> Result<MetricsServer, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("--metrics-listen {addr}: cannot listen: {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("--metrics-listen {addr}: {e}"))?;
        let task = tokio::spawn(serve(listener, metrics));
        Ok(MetricsServer { addr: local, task })
    }

    /// The address bound (the port chosen, when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, metrics: Arc<dyn Exposition>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!("metrics listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &*metrics).await {
                tracing::debug!("metrics connection: {e}");
            }
            drop(permit);
        });
    }
}

/// Reads one request head and answers it.
async fn answer(mut stream: TcpStream, metrics: &dyn Exposition) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(r) => r?,
        Err(_) => return Ok(()),
    };
    let response = match head {
        Some(head) => respond(&head, metrics),
        None => reply(
            "431 Request Header Fields Too Large",
            "text/plain",
            "request too large\n",
        ),
    };
    tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&response).await?;
        stream.shutdown().await
    })
    .await
    .unwrap_or(Ok(()))
}

/// The request head up to its blank line; `None` when it is longer than
/// [`MAX_REQUEST_BYTES`]. A connection closed early gives what came.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(buf));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(buf));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

/// The response to a request head: `GET /metrics` (any query) is the
/// registry, `HEAD` the same without a body, another path 404, another
/// method 405.
pub fn respond(head: &[u8], metrics: &dyn Exposition) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return reply("404 Not Found", "text/plain", "not found: try /metrics\n");
    }
    match method {
        "GET" => reply("200 OK", CONTENT_TYPE, &metrics.render()),
        "HEAD" => {
            let mut r = reply("200 OK", CONTENT_TYPE, &metrics.render());
            // The head only: cut at the blank line, keeping its length.
            if let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") {
                r.truncate(end + 4);
            }
            r
        }
        _ => reply("405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn reply(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body.as_bytes());
    r
}
