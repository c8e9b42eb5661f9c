//! A TCP relay on loopback that a test can cut, as a network partition
//! would: while cut, nothing is relayed either way and nothing is closed
//! (no RST, no FIN), so the client sees only silence until its timeouts;
//! once healed, what was held is delivered late, as after a partition.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

/// A relay from a port of its own to `target`.
#[derive(Debug)]
pub struct TcpRelay {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl TcpRelay {
    /// Relay 127.0.0.1:(a free port) to `target`.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("the relay's address");
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (cut_flag, stop_flag) = (Arc::clone(&cut), Arc::clone(&stop));
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let cut = Arc::clone(&cut_flag);
                thread::spawn(move || {
                    // A connection made while cut waits, as a SYN would.
                    while cut.load(Ordering::SeqCst) {
                        thread::sleep(Duration::from_millis(20));
                    }
                    let Ok(server) = TcpStream::connect(target) else {
                        return;
                    };
                    relay_both(client, server, cut);
                });
            }
        });
        Self { addr, cut, stop }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Relay nothing until [`TcpRelay::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Relay again, what was held first.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.heal();
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay_both(client: TcpStream, server: TcpStream, cut: Arc<AtomicBool>) {
    let (Ok(client_back), Ok(server_back)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let cut_back = Arc::clone(&cut);
    thread::spawn(move || relay(server_back, client_back, &cut_back));
    relay(client, server, &cut);
}

/// Copy `from` to `to`, holding each chunk while cut; close `to`'s write
/// side when `from` ends.
fn relay(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        while cut.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(20));
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
