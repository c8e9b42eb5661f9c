//! Healthy engines on an event loop, as real servers are built: many
//! engines served by a small tokio runtime rather than a thread each.
//!
//! [`Fleet`](crate::Fleet)'s engines are blocking threads (one accept
//! thread per engine, and one more per kept connection), which lets a test
//! script each engine's every answer. A thread woken for every request
//! costs the machine more than the request itself, though — on two cores,
//! more than a whole keep-alive request loop — a cost a game server's
//! HTTP endpoint (an event loop) does not have. Benches that compare
//! clients therefore probe these engines: every request gets `200 OK`
//! with the body `ok\n`, and the connection stays open for the next
//! request unless the client asked to close (`Connection: close`), in
//! which case the engine answers `Connection: close` and closes. Over TLS
//! ([`EventFleet::start`] with a server configuration) the same, after a
//! handshake; a closing answer ends with `close_notify`.
//!
//! [`serve_engine`] is one such engine on a listener of the caller's, for
//! fleets bound elsewhere (`examples/mass_fleet.rs`: 100,000 engines below
//! the ephemeral port range).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use healthprobe_shell::driver::ports::RuntimeRecord;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Fleet;
use crate::engine::{asks_close, find};
use crate::records::write_records_file;

/// The longest request head an engine reads; a longer one closes the connection.
const MAX_HEAD: usize = 16 * 1024;

/// Scheduler threads of an [`EventFleet`]'s runtime: the engines may use
/// both cores of the machines this runs on, as the thread engines can.
const WORKER_THREADS: usize = 2;

/// N healthy engines on 127.0.0.1 served by one tokio runtime of its own;
/// engine `i` belongs to game [`Fleet::game_id`]`(i)` in container
/// [`Fleet::container_id`]`(i)`. Stops (every listener and connection
/// closed) on drop.
#[derive(Debug)]
pub struct EventFleet {
    runtime: Option<tokio::runtime::Runtime>,
    /// Each engine's endpoint, without the trailing slash.
    urls: Vec<String>,
}

impl EventFleet {
    /// `count` engines on ports of 127.0.0.1 the system picks, over TLS
    /// with `tls` when given (`https://` endpoints), else plain HTTP.
    pub fn start(count: usize, tls: Option<Arc<ServerConfig>>) -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("event-engines")
            .enable_io()
            .build()?;
        let acceptor = tls.map(TlsAcceptor::from);
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let urls = runtime.block_on(async {
            let mut urls = Vec::with_capacity(count);
            for _ in 0..count {
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
                urls.push(format!("{scheme}://{}", listener.local_addr()?));
                tokio::spawn(serve_engine(listener, acceptor.clone()));
            }
            Ok::<_, io::Error>(urls)
        })?;
        Ok(Self {
            runtime: Some(runtime),
            urls,
        })
    }

    /// How many engines.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether the fleet has no engine.
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// The records of every engine, in order, as [`Fleet::records`] words
    /// them (endpoints with a trailing slash).
    pub fn records(&self) -> Vec<RuntimeRecord> {
        self.urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                RuntimeRecord::running(
                    Fleet::game_id(index),
                    Fleet::container_id(index),
                    format!("{url}/"),
                )
            })
            .collect()
    }

    /// Write [`EventFleet::records`] to `path` as a records file (atomically).
    pub fn write_records(&self, path: &Path) -> io::Result<()> {
        write_records_file(path, &self.records())
    }
}

impl Drop for EventFleet {
    fn drop(&mut self) {
        // Shutting the runtime down drops every task: listeners and
        // connections close before this returns.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(std::time::Duration::from_secs(10));
        }
    }
}

/// One healthy engine on `listener` (over TLS with `tls`): each connection
/// a task of its own, answered by [`answer`], until the runtime stops.
pub async fn serve_engine(listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let Ok((stream, _)): io::Result<(tokio::net::TcpStream, SocketAddr)> =
            listener.accept().await
        else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        match tls.clone() {
            None => {
                tokio::spawn(answer(stream));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        answer(stream).await;
                    }
                });
            }
        }
    }
}

/// Answer every request on `stream` with `200 OK` and the body `ok\n`
/// until the client closes, or asks to (answered `Connection: close`).
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buffer = vec![0_u8; MAX_HEAD];
    let mut filled = 0;
    loop {
        let Some(end) = head_end(&buffer[..filled]) else {
            if filled == buffer.len() {
                return;
            }
            match stream.read(&mut buffer[filled..]).await {
                Ok(0) | Err(_) => return,
                Ok(read) => filled += read,
            }
            continue;
        };
        let close = asks_close(&buffer[..end]);
        let response: &[u8] = if close {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
        };
        if stream.write_all(response).await.is_err() {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
        buffer.copy_within(end..filled, 0);
        filled -= end;
    }
}

/// Where the request head in `bytes` ends (after its blank line), if it does.
fn head_end(bytes: &[u8]) -> Option<usize> {
    find(bytes, b"\r\n\r\n").map(|at| at + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_close_is_asked_by_the_connection_header_only() {
        assert!(asks_close(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(asks_close(
            b"GET / HTTP/1.1\r\nconnection: keep-alive, Close\r\n"
        ));
        assert!(!asks_close(
            b"GET / HTTP/1.1\r\nX-Note: connection: close\r\n"
        ));
        assert!(!asks_close(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn a_head_ends_after_its_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}
