//! Serve a fleet of test engines on 127.0.0.1 until standard input closes, for
//! comparing workers by hand on the same fleet (see benches/README.md).
//!
//! ```sh
//! cargo run --release -p healthprobe-tests --example serve_fleet -- RECORDS.json 1000 [HANGING]
//! cargo run --release -p healthprobe-tests --example serve_fleet -- RECORDS.json spec 'SPEC;SPEC;…'
//! cargo run --release -p healthprobe-tests --example serve_fleet -- --tls CA.pem RECORDS.json 1000
//! cargo run --release -p healthprobe-tests --example serve_fleet -- --keep-alive on RECORDS.json 1000
//! cargo run --release -p healthprobe-tests --example serve_fleet -- --event-loop [--tls CA.pem] RECORDS.json 1000
//! ```
//!
//! Writes the records file (DESIGN.md's format), prints `ready` on stdout, and
//! stops every engine when standard input reaches its end. With a count, the
//! first HANGING engines never answer and the rest answer 200. With `spec`,
//! each `;`-separated item is one engine: `200`, `503` (any status), `hang`,
//! `close`, `garbage`, or a script such as `500,500,200` (one step per
//! request, the last repeating).
//!
//! With `--tls CA.pem` every engine serves HTTPS with a certificate for
//! 127.0.0.1 from a CA made now, whose certificate is written to CA.pem
//! (give it to `healthprobe run --ca-file` or the reference's
//! `SSL_CERT_FILE`); the records' endpoints are `https://`. A spec may then
//! also name whole-engine TLS faults, each answering 200 behind the fault:
//! `tls-untrusted` (another CA), `tls-expired`, `tls-notyet`, `tls-wronghost`
//! (a certificate for 127.0.0.2), `tls-stall` (the handshake never
//! answered), `tls-plain` (plain HTTP behind `https://`), `tls-mtls` (a
//! client certificate required).
//!
//! With `--keep-alive MODE` (before `--tls`) the engines keep connections
//! open after a status answer for clients that reuse them
//! (`healthprobe run --connections keep`): `on` serves every later
//! request on them; `close-on-next` and `reset-on-next` close or reset a
//! kept connection when its next request arrives, unanswered and
//! uncounted (an engine whose idle timeout fired just then); `mixed` gives
//! engine `i` the mode `i % 4` of off, on, close-on-next, reset-on-next.
//!
//! With `--event-loop` (first, then optionally `--tls CA.pem`) the engines are
//! healthy event-loop engines (`EventFleet`: one small tokio runtime, keeping
//! connections alive unless asked to close), as the `tls` and `reuse`
//! benches probe them.

use std::io::{Read, Write};
use std::path::PathBuf;

use std::sync::Arc;

use healthprobe_tests::{
    Behaviour, EngineTls, EventFleet, Fleet, FleetTls, KeepAlive, TestCa, Validity,
};

/// The engines' keep-alive modes of `--keep-alive MODE`, engine `i` taking
/// `modes[i % modes.len()]`.
fn keep_alive_modes(mode: &str) -> Result<Vec<KeepAlive>, String> {
    Ok(match mode {
        "off" => vec![KeepAlive::Off],
        "on" => vec![KeepAlive::On],
        "close-on-next" => vec![KeepAlive::CloseOnNext],
        "reset-on-next" => vec![KeepAlive::ResetOnNext],
        "mixed" => vec![
            KeepAlive::Off,
            KeepAlive::On,
            KeepAlive::CloseOnNext,
            KeepAlive::ResetOnNext,
        ],
        other => return Err(format!("unknown --keep-alive mode {other:?}")),
    })
}

fn step(token: &str) -> Result<Behaviour, String> {
    match token.trim() {
        "hang" => Ok(Behaviour::Hang),
        "close" => Ok(Behaviour::Close),
        "garbage" => Ok(Behaviour::Garbage),
        status => status
            .parse()
            .map(Behaviour::Status)
            .map_err(|_| format!("unknown engine behaviour {status:?}")),
    }
}

fn engine(spec: &str) -> Result<Behaviour, String> {
    let steps = spec.split(',').map(step).collect::<Result<Vec<_>, _>>()?;
    Ok(match <[Behaviour; 1]>::try_from(steps) {
        Ok([single]) => single,
        Err(steps) => Behaviour::Script(steps),
    })
}

/// The TLS certificates of a `--tls` fleet.
struct TlsFleet {
    ca: TestCa,
    good: Arc<rustls::ServerConfig>,
}

impl TlsFleet {
    fn new() -> Self {
        let ca = TestCa::new("serve_fleet CA");
        let good = ca
            .server_cert(&["127.0.0.1", "localhost"], Validity::Current)
            .server_config();
        Self { ca, good }
    }

    /// The engine for one spec item: a TLS fault, or a behaviour over good TLS.
    fn engine(&self, spec: &str) -> Result<(Behaviour, FleetTls), String> {
        let healthy = Behaviour::Status(200);
        let serve = |config| FleetTls::Tls(EngineTls::Serve(config));
        Ok(match spec.trim() {
            "tls-untrusted" => {
                let other = TestCa::new("untrusted CA");
                let config = other
                    .server_cert(&["127.0.0.1"], Validity::Current)
                    .server_config();
                (healthy, serve(config))
            }
            "tls-expired" => (healthy, serve(self.cert(Validity::Expired, "127.0.0.1"))),
            "tls-notyet" => (
                healthy,
                serve(self.cert(Validity::NotYetValid, "127.0.0.1")),
            ),
            "tls-wronghost" => (healthy, serve(self.cert(Validity::Current, "127.0.0.2"))),
            "tls-stall" => (healthy, FleetTls::Tls(EngineTls::StallHandshake)),
            "tls-plain" => (healthy, FleetTls::PlainBehindHttps),
            "tls-mtls" => {
                let client_ca = TestCa::new("client CA");
                let config = self
                    .ca
                    .server_cert(&["127.0.0.1"], Validity::Current)
                    .server_config_requiring_client_cert(&client_ca);
                (healthy, serve(config))
            }
            other => (engine(other)?, serve(Arc::clone(&self.good))),
        })
    }

    fn cert(&self, validity: Validity, name: &str) -> Arc<rustls::ServerConfig> {
        self.ca.server_cert(&[name], validity).server_config()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--event-loop") {
        args.next();
        return serve_event_loop(args);
    }
    let keep_alive = if args.peek().map(String::as_str) == Some("--keep-alive") {
        args.next();
        keep_alive_modes(&args.next().ok_or("--keep-alive needs a mode")?)?
    } else {
        vec![KeepAlive::Off]
    };
    let tls_ca = if args.peek().map(String::as_str) == Some("--tls") {
        args.next();
        Some(PathBuf::from(
            args.next()
                .ok_or("--tls needs a file for the CA certificate")?,
        ))
    } else {
        None
    };
    let records = PathBuf::from(args.next().unwrap_or_else(|| "records.json".into()));
    let count_or_spec = args.next().unwrap_or_else(|| "1000".into());
    let specs: Option<String> = if count_or_spec == "spec" {
        Some(
            args.next()
                .ok_or("spec needs a list, like '200;503;hang'")?,
        )
    } else {
        None
    };
    let tls = tls_ca.as_ref().map(|_| TlsFleet::new());
    let behaviours: Vec<Behaviour> = if let Some(specs) = &specs {
        if tls.is_some() {
            Vec::new()
        } else {
            specs.split(';').map(engine).collect::<Result<_, _>>()?
        }
    } else {
        let count: usize = count_or_spec.parse()?;
        let hanging: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(0);
        (0..count)
            .map(|i| {
                if i < hanging {
                    Behaviour::Hang
                } else {
                    Behaviour::Status(200)
                }
            })
            .collect()
    };
    let fleet = match (&tls, &tls_ca) {
        (Some(tls), Some(ca_path)) => {
            tls.ca.write_cert(ca_path)?;
            let engines: Vec<(Behaviour, FleetTls)> = match &specs {
                Some(specs) => specs
                    .split(';')
                    .map(|spec| tls.engine(spec))
                    .collect::<Result<_, _>>()?,
                None => behaviours
                    .into_iter()
                    .map(|behaviour| {
                        (
                            behaviour,
                            FleetTls::Tls(EngineTls::Serve(Arc::clone(&tls.good))),
                        )
                    })
                    .collect(),
            };
            Fleet::start_tls(engines)?
        }
        _ => Fleet::start(behaviours)?,
    };
    for (index, engine) in fleet.engines().iter().enumerate() {
        engine.set_keep_alive(keep_alive[index % keep_alive.len()]);
    }
    fleet.write_records(&records)?;
    serve_until_stdin_closes(fleet.len(), &records)?;
    drop(fleet);
    Ok(())
}

/// `--event-loop [--tls CA.pem] RECORDS.json COUNT`: healthy event-loop engines.
fn serve_event_loop(
    mut args: impl Iterator<Item = String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut next = args.next();
    let tls = if next.as_deref() == Some("--tls") {
        let ca_path = PathBuf::from(
            args.next()
                .ok_or("--tls needs a file for the CA certificate")?,
        );
        let tls = TlsFleet::new();
        tls.ca.write_cert(&ca_path)?;
        next = args.next();
        Some(tls.good)
    } else {
        None
    };
    let records = PathBuf::from(next.unwrap_or_else(|| "records.json".into()));
    let count: usize = args.next().map_or(Ok(1000), |count| count.parse())?;
    let fleet = EventFleet::start(count, tls)?;
    fleet.write_records(&records)?;
    serve_until_stdin_closes(count, &records)?;
    drop(fleet);
    Ok(())
}

/// Say the fleet of `count` engines is ready (its records in `records`),
/// then wait for standard input to reach its end.
fn serve_until_stdin_closes(count: usize, records: &std::path::Path) -> std::io::Result<()> {
    println!("ready {count} engines, records in {}", records.display());
    std::io::stdout().flush()?;
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    Ok(())
}
