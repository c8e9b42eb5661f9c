//! A thin tokio shell around the pure tick machine, `healthprobe_core::tick::TickMachine`.
//!
//! The machine decides everything (what to list, what to probe, when to
//! publish, when the next tick starts); the shell only performs each action
//! it yields and feeds back what happened, with the time as an argument.
//! It probes four engines it starts itself on 127.0.0.1 (healthy, failing,
//! flapping, refusing connections) for four ticks with `failures_threshold`
//! 2, and prints the events as JSON lines. Run it with
//! `cargo run -p healthprobe-examples --bin tokio-shell`.

use std::io;
use std::time::Duration;

use healthprobe_core::tick::{Action, MachineConfig, ProbeClass, Published, TickMachine};
use healthprobe_core::{Policy, ProbeResult, RuntimeRecord, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};

#[tokio::main(flavor = "current_thread")]
async fn main() -> io::Result<()> {
    let refusing = TcpListener::bind("127.0.0.1:0").await?.local_addr()?; // closed again at once
    let records = vec![
        RuntimeRecord::running("game-healthy", "ctr-1", engine(|_| 200).await?),
        RuntimeRecord::running("game-failing", "ctr-2", engine(|_| 503).await?),
        RuntimeRecord::running(
            "game-flapping",
            "ctr-3",
            engine(|n| if n < 2 { 503 } else { 200 }).await?,
        ),
        RuntimeRecord::running("game-refusing", "ctr-4", format!("http://{refusing}/")),
    ];
    let mut config = MachineConfig::new(Duration::from_secs(1));
    config.tick_limit = Some(4); // with a limit, ticks run back to back (as `healthprobe run --ticks`)
    let policy = Policy::new(2, 1).expect("valid thresholds");
    let mut machine = TickMachine::new(config, policy);

    // The shell: nothing below decides anything.
    let start = Instant::now();
    let mut probes = JoinSet::new();
    machine.start_tick(start.elapsed());
    loop {
        let Some(action) = machine.poll_action() else {
            // Nothing to do until a probe finishes; when none is left, the batch is done.
            match probes.join_next().await {
                Some(probed) => {
                    let (job, result, class) = probed.expect("a probe task panicked");
                    machine.handle_outcome(start.elapsed(), job, Timestamp::now(), result, class);
                }
                None => machine.handle_probes_done(start.elapsed()),
            }
            continue;
        };
        let now = start.elapsed();
        match action {
            Action::List => machine.handle_listing(now, Ok(records.clone())),
            Action::Probe(batch) => {
                for (job, record) in batch.jobs().iter().enumerate() {
                    probes.spawn(probe(job, record.engine_endpoint.clone()));
                }
            }
            Action::Publish(outgoing) => {
                // The envelope, as JSON lines carry it (`outgoing.id` is its stable id).
                let line = serde_json::to_string(&outgoing.event).expect("an event serializes");
                println!("{line}");
                machine.handle_published(now, Published::Accepted);
            }
            Action::SyncPublisher => machine.handle_synced(now, Ok(())), // stdout: nothing to sync
            Action::TickDone(report) => eprintln!(
                "tick: {} probes, {} failed",
                report.probes, report.failed_probes
            ),
            Action::Wait { until } => {
                sleep_until(start + until).await;
                machine.start_tick(start.elapsed());
            }
            Action::Stop(reason) => {
                eprintln!("stopped: {reason:?}");
                return Ok(());
            }
            // This machine has no journal and no state store, and stdout is never refused.
            other @ (Action::LoadState
            | Action::TruncateJournal(_)
            | Action::Journal(_)
            | Action::FlushJournal
            | Action::Persist { .. }
            | Action::Lease
            | Action::Load(_)
            | Action::Write(_)
            | Action::Release(_)
            | Action::Interrupt) => {
                unreachable!("not configured: {other:?}")
            }
        }
    }
}

/// One `GET /healthz`, bounded by 1 s as a whole: status 200 is healthy, anything else is not.
async fn probe(job: usize, endpoint: String) -> (usize, ProbeResult, ProbeClass) {
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let get = async {
        let mut stream = TcpStream::connect(&host).await?;
        let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut status_line = [0; 12]; // "HTTP/1.1 200"
        stream.read_exact(&mut status_line).await?;
        Ok::<_, io::Error>(
            String::from_utf8_lossy(&status_line[9..])
                .parse()
                .unwrap_or(0),
        )
    };
    let failed = |status, error: String| ProbeResult::Unhealthy { status, error };
    let (result, class) = match timeout(Duration::from_secs(1), get).await {
        Ok(Ok(200)) => (ProbeResult::Healthy, ProbeClass::Ok),
        Ok(Ok(status)) => (
            failed(status, format!("unexpected status {status}")),
            ProbeClass::BadStatus,
        ),
        Ok(Err(err)) if err.kind() == io::ErrorKind::ConnectionRefused => (
            failed(0, "connection refused".into()),
            ProbeClass::ConnectError,
        ),
        Ok(Err(err)) => (failed(0, err.to_string()), ProbeClass::Other),
        Err(_) => (failed(0, "timeout".into()), ProbeClass::Timeout),
    };
    (job, result, class)
}

/// An engine on 127.0.0.1 that answers its `n`th request (from 0) with `status(n)`.
async fn engine(status: fn(usize) -> u16) -> io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.read(&mut [0; 1024]).await; // the request
            let response = format!(
                "HTTP/1.1 {} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                status(n)
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    Ok(format!("http://{address}/"))
}
