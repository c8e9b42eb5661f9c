//! `https://` engines (issue 12) on both runtimes, with certificates made at
//! test time: a trusted engine is healthy; each TLS fault — unknown
//! authority, expired, not yet valid, another host's certificate, a stalled
//! handshake, plain HTTP behind `https://`, a client certificate missing or
//! refused — is a failure with status 0, a readable `tls: …` error and
//! [`ProbeClass::Tls`], within the probe timeout; the head cap and "body
//! never read" hold over TLS; trust comes from the system store as Go reads
//! it (`SSL_CERT_FILE`) or `--ca-file`; a certificate replaced between probes
//! is verified afresh.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use healthprobe_core::ProbeResult;
use healthprobe_shell::probing::connections::{ConnectionPolicy, Connections};
use healthprobe_shell::probing::probe::{ProbeClass, Prober};
use healthprobe_shell::probing::probe_async::AsyncProber;
use healthprobe_shell::tls::{TlsClient, TlsOptions};
use healthprobe_tests::{
    Behaviour, EngineTls, HANG_GUARD, HUGE_BODY_BYTES, Runtime, ScratchDir, TestCa, TestEngine,
    Validity, both_runtimes,
};

/// Seven times the slowest successful handshake and probe seen on the
/// loaded two-core machine (286 ms in a debug build at a load of 10).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The CA the engines' good certificates come from, made once per test binary.
fn ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("healthprobe test CA"))
}

/// The CA whose client certificates the mTLS engine accepts.
fn client_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("healthprobe test client CA"))
}

/// A TLS client trusting [`ca`] through `--ca-file` (and `client` for mTLS).
fn trusting(client: Option<&TestCa>) -> (ScratchDir, TlsClient) {
    let dir = ScratchDir::new("tls-client").unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca().write_cert(&ca_file).unwrap();
    let mut options = TlsOptions {
        ca_file: Some(ca_file),
        ..TlsOptions::default()
    };
    if let Some(issuer) = client {
        let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
        issuer
            .client_cert("healthprobe")
            .write(&cert, &key)
            .unwrap();
        options.client_cert = Some(cert);
        options.client_key = Some(key);
    }
    let tls = TlsClient::new(&options).unwrap();
    (dir, tls)
}

fn engine_with(cert_names: &[&str], validity: Validity, behaviour: Behaviour) -> TestEngine {
    let config = ca().server_cert(cert_names, validity).server_config();
    TestEngine::start_tls(behaviour, EngineTls::Serve(config)).unwrap()
}

fn good_engine(behaviour: Behaviour) -> TestEngine {
    engine_with(&["127.0.0.1", "localhost"], Validity::Current, behaviour)
}

/// One probe of `url` on `runtime` by a new prober (its connections as by
/// default: kept for `https://`), with how long it took.
fn probe(runtime: Runtime, tls: &TlsClient, url: &str) -> ((ProbeResult, ProbeClass), Duration) {
    let policy = ConnectionPolicy::new(Connections::Auto, Duration::from_secs(1), 16);
    let started = Instant::now();
    let outcome = match runtime {
        Runtime::Threads => Prober::new(PROBE_TIMEOUT, tls.clone(), policy).probe(url),
        Runtime::Async => tokio_runtime()
            .block_on(AsyncProber::new(PROBE_TIMEOUT, tls.clone(), policy).probe(url)),
    };
    (outcome, started.elapsed())
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The probe failed with no status, a TLS class and this error text.
#[track_caller]
fn assert_tls_failure(outcome: &(ProbeResult, ProbeClass), took: Duration, expected: &str) {
    let (result, class) = outcome;
    assert_eq!(
        result,
        &ProbeResult::Unhealthy {
            status: 0,
            error: expected.to_owned()
        }
    );
    assert_eq!(*class, ProbeClass::Tls, "{result:?}");
    assert!(took < HANG_GUARD, "the probe took {took:?}");
}

both_runtimes! {
    /// A trusted certificate for the endpoint's IP: healthy, the engine
    /// saw `GET /healthz` with the endpoint's Host, over TLS.
    fn tls_a_trusted_engine_is_healthy_and_sees_the_request(runtime) {
        let engine = good_engine(Behaviour::Status(200));
        let (_dir, tls) = trusting(None);
        let (outcome, _) = probe(runtime, &tls, &engine.url());
        assert_eq!(outcome, (ProbeResult::Healthy, ProbeClass::Ok));
        let seen = engine.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", "/healthz"));
        assert_eq!(seen[0].host.as_deref(), Some(engine.addr().to_string().as_str()));
    }

    /// SNI and the DNS SAN: `https://localhost:port` is verified against
    /// the certificate's `localhost` name.
    fn tls_a_dns_name_is_verified_against_the_certificates_dns_names(runtime) {
        let engine = engine_with(&["localhost"], Validity::Current, Behaviour::Status(200));
        let (_dir, tls) = trusting(None);
        let url = format!("https://localhost:{}", engine.addr().port());
        let (outcome, _) = probe(runtime, &tls, &url);
        assert_eq!(outcome, (ProbeResult::Healthy, ProbeClass::Ok));
        // The same certificate does not cover the IP literal.
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_tls_failure(&outcome, took, "tls: certificate is valid for localhost, not 127.0.0.1");
    }

    /// An engine whose certificate is replaced between probes — by one from
    /// a CA not trusted, by an expired one, by one for another host — fails
    /// the next probe, and is healthy again once a good certificate is back.
    fn tls_a_certificate_replaced_between_probes_is_verified_afresh(runtime) {
        let engine = good_engine(Behaviour::Status(200));
        let good = EngineTls::Serve(
            ca().server_cert(&["127.0.0.1"], Validity::Current).server_config(),
        );
        engine.set_tls(good.clone());
        let (_dir, tls) = trusting(None);
        let healthy = (ProbeResult::Healthy, ProbeClass::Ok);
        assert_eq!(probe(runtime, &tls, &engine.url()).0, healthy);
        assert_eq!(probe(runtime, &tls, &engine.url()).0, healthy);
        let untrusted = TestCa::new("healthprobe untrusted CA");
        for (certificate, expected) in [
            (
                untrusted.server_cert(&["127.0.0.1"], Validity::Current),
                "tls: certificate signed by unknown authority".to_owned(),
            ),
            (
                ca().server_cert(&["127.0.0.1"], Validity::Expired),
                "tls: certificate has expired (valid until 2000-12-31T00:00:00Z)".to_owned(),
            ),
            (
                ca().server_cert(&["127.0.0.2"], Validity::Current),
                "tls: certificate is valid for 127.0.0.2, not 127.0.0.1".to_owned(),
            ),
        ] {
            engine.set_tls(EngineTls::Serve(certificate.server_config()));
            let (outcome, took) = probe(runtime, &tls, &engine.url());
            assert_tls_failure(&outcome, took, &expected);
            engine.set_tls(good.clone());
            assert_eq!(probe(runtime, &tls, &engine.url()).0, healthy);
        }
    }

    /// R1 over TLS: a status other than 200 is `unexpected status N`, not a TLS failure.
    fn tls_a_bad_status_over_tls_is_a_bad_status(runtime) {
        let engine = good_engine(Behaviour::Status(503));
        let (_dir, tls) = trusting(None);
        let (outcome, _) = probe(runtime, &tls, &engine.url());
        assert_eq!(
            outcome,
            (
                ProbeResult::Unhealthy { status: 503, error: "unexpected status 503".into() },
                ProbeClass::BadStatus
            )
        );
    }

    /// Without `--ca-file` (and with no test CA in the system store), the
    /// engine's private CA is unknown.
    fn tls_an_unknown_authority_fails_the_probe(runtime) {
        let engine = good_engine(Behaviour::Status(200));
        let (outcome, took) = probe(runtime, &TlsClient::system(), &engine.url());
        assert_tls_failure(&outcome, took, "tls: certificate signed by unknown authority");
        // A certificate from another CA, with ours trusted: unknown too.
        let other = TestCa::new("some other CA");
        let config = other.server_cert(&["127.0.0.1"], Validity::Current).server_config();
        let stranger = TestEngine::start_tls(Behaviour::Status(200), EngineTls::Serve(config)).unwrap();
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &stranger.url());
        assert_tls_failure(&outcome, took, "tls: certificate signed by unknown authority");
    }

    fn tls_an_expired_certificate_fails_the_probe(runtime) {
        let engine = engine_with(&["127.0.0.1"], Validity::Expired, Behaviour::Status(200));
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_tls_failure(
            &outcome,
            took,
            "tls: certificate has expired (valid until 2000-12-31T00:00:00Z)",
        );
    }

    fn tls_a_certificate_not_valid_yet_fails_the_probe(runtime) {
        let engine = engine_with(&["127.0.0.1"], Validity::NotYetValid, Behaviour::Status(200));
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_tls_failure(
            &outcome,
            took,
            "tls: certificate is not valid yet (valid from 2100-01-01T00:00:00Z)",
        );
    }

    /// IP-literal endpoints are verified against the certificate's IP SANs.
    fn tls_a_certificate_for_another_host_fails_the_probe(runtime) {
        let engine = engine_with(&["127.0.0.2", "other.test"], Validity::Current, Behaviour::Status(200));
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_tls_failure(
            &outcome,
            took,
            "tls: certificate is valid for 127.0.0.2, other.test, not 127.0.0.1",
        );
    }

    /// R10: an engine that accepts and never answers the ClientHello costs
    /// one probe timeout, and says it was the handshake.
    fn tls_a_stalled_handshake_is_a_handshake_timeout_within_the_probe_timeout(runtime) {
        let engine = TestEngine::start_tls(Behaviour::Status(200), EngineTls::StallHandshake).unwrap();
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_tls_failure(&outcome, took, "tls: handshake timeout");
        assert!(took >= PROBE_TIMEOUT, "gave up after {took:?}");
    }

    /// A hang after the handshake is an ordinary timeout.
    fn tls_a_hang_after_the_handshake_is_a_plain_timeout(runtime) {
        let engine = good_engine(Behaviour::Hang);
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_eq!(
            outcome,
            (
                ProbeResult::Unhealthy { status: 0, error: "timeout".into() },
                ProbeClass::Timeout
            )
        );
        assert!(took < HANG_GUARD, "the probe took {took:?}");
    }

    /// An `https://` endpoint on a plain HTTP engine, which answers the
    /// ClientHello with `400 Bad Request` as web servers do.
    fn tls_plain_http_behind_an_https_endpoint_is_not_tls(runtime) {
        let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
        let url = format!("https://{}", engine.addr());
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &url);
        assert_tls_failure(
            &outcome,
            took,
            "tls: the engine does not speak TLS (an http:// engine behind an https:// endpoint?)",
        );
        assert_eq!(engine.requests(), 0, "the ClientHello is no request");
    }

    /// mTLS: an engine that requires a client certificate refuses a probe
    /// without one, or with one it does not trust, and accepts ours.
    fn tls_an_engine_requiring_a_client_certificate(runtime) {
        let config = ca()
            .server_cert(&["127.0.0.1"], Validity::Current)
            .server_config_requiring_client_cert(client_ca());
        let engine = TestEngine::start_tls(Behaviour::Status(200), EngineTls::Serve(config)).unwrap();
        let (_dir, without) = trusting(None);
        let (outcome, took) = probe(runtime, &without, &engine.url());
        assert_tls_failure(
            &outcome,
            took,
            "tls: the engine requires a client certificate (--tls-client-cert)",
        );
        let stranger = TestCa::new("not the client CA");
        let (_dir2, refused) = trusting(Some(&stranger));
        let (outcome, took) = probe(runtime, &refused, &engine.url());
        assert_tls_failure(&outcome, took, "tls: the engine refused our client certificate (unknown ca)");
        let (_dir3, with) = trusting(Some(client_ca()));
        let (outcome, _) = probe(runtime, &with, &engine.url());
        assert_eq!(outcome, (ProbeResult::Healthy, ProbeClass::Ok));
        assert_eq!(engine.requests(), 1, "only the probe with a trusted certificate got through");
    }

    /// The 16 KiB head cap counts decrypted bytes.
    fn tls_the_head_cap_holds_over_tls(runtime) {
        let engine = good_engine(Behaviour::HugeHeader);
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_eq!(
            outcome,
            (
                ProbeResult::Unhealthy {
                    status: 0,
                    error: "response header larger than 16384 bytes".into()
                },
                ProbeClass::Other
            )
        );
        assert!(took < HANG_GUARD, "the probe took {took:?}");
    }

    /// A 200 with a 1 GiB body is healthy and the body is not read.
    fn tls_the_body_is_never_read_over_tls(runtime) {
        let engine = good_engine(Behaviour::HugeBody);
        let (_dir, tls) = trusting(None);
        let (outcome, took) = probe(runtime, &tls, &engine.url());
        assert_eq!(outcome, (ProbeResult::Healthy, ProbeClass::Ok));
        assert!(took < HANG_GUARD, "the probe took {took:?}");
        // The engine stops writing once the client is gone: what it wrote
        // is bounded by socket buffers, far below the body's size.
        healthprobe_tests::wait_until(Duration::from_secs(5), || engine.serving() == 0);
        let sent = engine.bytes_sent();
        assert!(sent < 16 << 20, "the engine wrote {sent} bytes of {HUGE_BODY_BYTES}");
    }

    /// The system store as Go reads it: `SSL_CERT_FILE` names the bundle.
    /// (In a child process: the variable is read once per process.)
    fn tls_ssl_cert_file_is_the_system_store(runtime) {
        let engine = good_engine(Behaviour::Status(200));
        let dir = ScratchDir::new("tls-ssl-cert-file").unwrap();
        let bundle = dir.path().join("bundle.pem");
        ca().write_cert(&bundle).unwrap();
        let runtime_flag = runtime.name();
        let records = dir.path().join("records.json");
        healthprobe_tests::write_records_file(
            &records,
            &[healthprobe_tests::RuntimeRecord::running("g1", "c1", engine.url())],
        )
        .unwrap();
        let run = |cert_file: Option<&std::path::Path>| {
            let mut command = std::process::Command::new(healthprobe_tests::healthprobe_binary());
            command.args(["run", "--ticks", "1", "--failures-threshold", "1", "--probe-timeout", "2s", "--runtime", runtime_flag, "--records"]).arg(&records);
            command.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
            if let Some(file) = cert_file {
                command.env("SSL_CERT_FILE", file);
            }
            let output = command.output().unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        assert_eq!(run(Some(&bundle)), "", "trusted through SSL_CERT_FILE: no event");
        let untrusted = run(None);
        assert!(
            untrusted.contains(r#""last_error":"tls: certificate signed by unknown authority""#),
            "{untrusted}"
        );
    }
}

/// `healthprobe run` over a TLS fleet with `--ca-file`, `--ticks 2`,
/// threshold 1: stdout's events.
fn run_cli(
    runtime: Runtime,
    fleet: &healthprobe_tests::Fleet,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let dir = ScratchDir::new("tls-cli").unwrap();
    let records = dir.path().join("records.json");
    fleet.write_records(&records).unwrap();
    let ca_file = dir.path().join("ca.pem");
    ca().write_cert(&ca_file).unwrap();
    let runtime_flag = runtime.name();
    let mut command = healthprobe_tests::HealthprobeProcess::command();
    command
        .args([
            "run",
            "--ticks",
            "1",
            "--failures-threshold",
            "1",
            "--probe-timeout",
            "2s",
        ])
        .args(["--runtime", runtime_flag, "--records"])
        .arg(&records)
        .arg("--ca-file")
        .arg(&ca_file)
        .args(extra)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    let finished = healthprobe_tests::HealthprobeProcess::spawn_command(command)
        .unwrap()
        .wait(Duration::from_secs(30))
        .unwrap();
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    finished
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

both_runtimes! {
    /// The binary over a fleet with each TLS fault: one `probe_failed` per
    /// faulty engine with status 0 and its `tls: …` reason, none for the
    /// trusted engines, in that game's order.
    fn tls_cli_run_reports_each_tls_fault_as_probe_failed(runtime) {
        use healthprobe_tests::{Fleet, FleetTls};
        let good = ca().server_cert(&["127.0.0.1"], Validity::Current).server_config();
        let serve = |config| FleetTls::Tls(EngineTls::Serve(config));
        let cert = |validity, name: &str| ca().server_cert(&[name], validity).server_config();
        let fleet = Fleet::start_tls([
            (Behaviour::Status(200), serve(good.clone())),
            (Behaviour::Status(200), serve(TestCa::new("other").server_cert(&["127.0.0.1"], Validity::Current).server_config())),
            (Behaviour::Status(200), serve(cert(Validity::Expired, "127.0.0.1"))),
            (Behaviour::Status(200), serve(cert(Validity::Current, "127.0.0.2"))),
            (Behaviour::Status(200), FleetTls::Tls(EngineTls::StallHandshake)),
            (Behaviour::Status(200), FleetTls::PlainBehindHttps),
            (Behaviour::Status(503), serve(good)),
        ])
        .unwrap();
        let events = run_cli(runtime, &fleet, &[]);
        let failures: Vec<(String, u64, String)> = events
            .iter()
            .map(|event| {
                assert_eq!(event["event_type"], "probe_failed", "{event}");
                (
                    event["game_id"].as_str().unwrap().to_owned(),
                    event["details"]["last_status"].as_u64().unwrap(),
                    event["details"]["last_error"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let mut sorted = failures.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                ("g1".into(), 0, "tls: certificate signed by unknown authority".into()),
                ("g2".into(), 0, "tls: certificate has expired (valid until 2000-12-31T00:00:00Z)".into()),
                ("g3".into(), 0, "tls: certificate is valid for 127.0.0.2, not 127.0.0.1".into()),
                ("g4".into(), 0, "tls: handshake timeout".into()),
                (
                    "g5".into(),
                    0,
                    "tls: the engine does not speak TLS (an http:// engine behind an https:// endpoint?)".into()
                ),
                ("g6".into(), 503, "unexpected status 503".into()),
            ]
        );
    }
}

/// Bad TLS settings stop the run at start with exit 2, naming the flag and the file.
#[test]
fn tls_cli_bad_tls_files_exit_2_naming_the_flag_and_the_file() {
    let engine = good_engine(Behaviour::Status(200));
    let dir = ScratchDir::new("tls-cli-bad").unwrap();
    let records = dir.path().join("records.json");
    healthprobe_tests::write_records_file(
        &records,
        &[healthprobe_tests::RuntimeRecord::running(
            "g1",
            "c1",
            engine.url(),
        )],
    )
    .unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let key = dir.path().join("client.key");
    let cert = dir.path().join("client.pem");
    // A key that is not the certificate's.
    let issued = client_ca().client_cert("a");
    std::fs::write(&cert, &issued.cert_pem).unwrap();
    std::fs::write(&key, &client_ca().client_cert("b").key_pem).unwrap();
    let records = records.to_str().unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let cases: [(&[&str], &str); 5] = [
        (&["--ca-file", missing], "cannot read --ca-file"),
        (&["--ca-file", not_pem], "holds no PEM certificate"),
        (&["--tls-client-cert", cert], "--tls-client-key"),
        (
            &["--tls-client-cert", cert, "--tls-client-key", not_pem],
            "no PEM private key",
        ),
        (
            &["--tls-client-cert", cert, "--tls-client-key", key],
            "cannot be used with the certificate",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["run", "--ticks", "1", "--records", records];
        args.extend_from_slice(flags);
        let finished = healthprobe_tests::HealthprobeProcess::spawn(&args)
            .unwrap()
            .wait(Duration::from_secs(30))
            .unwrap();
        assert_eq!(
            finished.status.code(),
            Some(2),
            "{flags:?}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains(expected),
            "{flags:?}: {}",
            finished.stderr
        );
        assert!(finished.stdout.is_empty(), "{flags:?}: {}", finished.stdout);
        assert_eq!(engine.requests(), 0, "{flags:?}: nothing is probed");
    }
}
