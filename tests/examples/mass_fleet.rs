//! Serve a fleet too big for one thread per engine — 100,000 healthy
//! engines — from one process on a tokio runtime, until standard input
//! closes, for measuring a worker's tick over it (see benches/README.md).
//!
//! ```sh
//! cargo run --release -p healthprobe-tests --example mass_fleet -- RECORDS.json 16000 [FIRST_HOST]
//! ```
//!
//! Each engine is a listener on one of the addresses 127.0.0.FIRST_HOST,
//! the next one, …, 20,000 engines per address, on ports from 10,000 up:
//! below the ephemeral range (32,768 and up here), which the clients'
//! connections take their ports from — 100,000 listeners inside that range
//! make every `connect` search long for a free port, a cost no real
//! fleet (engines on other hosts) puts on a prober. Each engine takes a file
//! descriptor, and each open connection another: where the hard limit of
//! open files is 20,000 (`ulimit -Hn`), a fleet of 100,000 is six of these
//! processes of about 16,700 engines, each with its own FIRST_HOST, their
//! records files joined. Every engine is `healthprobe_tests::serve_engine`:
//! every request gets `200 OK` with a body `ok\n`, and the connection stays
//! open for the next request unless the client sent `Connection: close`. Writes the records file (DESIGN.md's
//! format) and prints `ready N engines` on stdout.

use std::io::{Read, Write};
use std::net::Ipv4Addr;

use healthprobe_tests::serve_engine;
use tokio::net::TcpListener;

const ENGINES_PER_ADDRESS: usize = 20_000;
/// The first port tried on each address; ports in use are skipped.
const FIRST_PORT: u16 = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records = args.next().unwrap_or_else(|| "records.json".into());
    let count: usize = args.next().map_or(Ok(16_000), |n| n.parse())?;
    let first_host: usize = args.next().map_or(Ok(1), |n| n.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_io()
        .build()?;
    let addrs = runtime.block_on(async {
        let mut addrs = Vec::with_capacity(count);
        let mut port = FIRST_PORT;
        for index in 0..count {
            let host = u8::try_from(first_host + index / ENGINES_PER_ADDRESS)
                .expect("addresses up to 127.0.0.255");
            if index % ENGINES_PER_ADDRESS == 0 {
                port = FIRST_PORT;
            }
            let listener = loop {
                let ip = Ipv4Addr::new(127, 0, 0, host);
                match TcpListener::bind((ip, port)).await {
                    Ok(listener) => break listener,
                    Err(err) if err.kind() == std::io::ErrorKind::AddrInUse && port < 32_000 => {
                        port += 1;
                    }
                    Err(err) => return Err(err),
                }
            };
            port += 1;
            addrs.push(listener.local_addr()?);
            tokio::spawn(serve_engine(listener, None));
        }
        Ok::<_, std::io::Error>(addrs)
    })?;
    let mut json = String::from("[");
    let prefix = first_host * 1_000_000;
    for (index, addr) in addrs.iter().enumerate() {
        let index = prefix + index;
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&format!(
            r#"{{"game_id":"g{index}","current_container_id":"c{index}","engine_endpoint":"http://{addr}","status":"running"}}"#
        ));
    }
    json.push(']');
    std::fs::write(&records, json)?;
    println!("ready {} engines, records in {records}", addrs.len());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}
