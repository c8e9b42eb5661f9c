//! The probers' structured classes against the real probes of both runtimes, and
//! `classify` (the text classifier for journals) agreeing with them: each kind of engine
//! (healthy, 503, refusing, hanging past a short timeout, answering
//! garbage, closing at once) lands in its class, per game and in the tick's
//! per-class counts.

use std::time::Duration;

use healthprobe_core::{EventDetails, ProbeResult};
use healthprobe_shell::probing::probe::{ProbeClass, classify};
use healthprobe_tests::{
    Behaviour, Fleet, RefusedPort, RuntimeRecord, TestWorker, both_runtimes, test_config,
};

both_runtimes! {
    fn each_kind_of_engine_lands_in_its_class(runtime) {
        let fleet = Fleet::start([
            Behaviour::Status(200),
            Behaviour::Status(503),
            Behaviour::Hang,
            Behaviour::Garbage,
            Behaviour::Close,
        ])
        .expect("start engines");
        let mut records = fleet.records();
        let refused = RefusedPort::new();
        records.push(RuntimeRecord::running("g5", "c5", refused.url()));
        let expected = [
            ProbeClass::Ok,
            ProbeClass::BadStatus,
            ProbeClass::Timeout,
            ProbeClass::Other,
            ProbeClass::Other,
            ProbeClass::ConnectError,
        ];
        let mut config = test_config(1, 1);
        config.probe_timeout = Duration::from_secs(1);
        let mut worker = TestWorker::with_runtime(runtime, config, records);
        let (report, events) = worker.tick();

        // Every unhealthy game published probe_failed with its last result:
        // classify that result as the worker saw it.
        let mut classes = vec![ProbeClass::Ok];
        for event in &events {
            let EventDetails::ProbeFailed { last_status, last_error, .. } = &event.details else {
                panic!("not probe_failed: {event:?}");
            };
            let result = ProbeResult::Unhealthy {
                status: *last_status,
                error: last_error.clone(),
            };
            classes.push(classify(&result));
        }
        assert_eq!(classes, expected, "{events:#?}");

        assert_eq!(report.probes, 6);
        for class in ProbeClass::ALL {
            let count = expected.iter().filter(|&&c| c == class).count();
            assert_eq!(report.probe_classes.get(class), count, "{class}: {report:?}");
        }
        assert_eq!(report.tracked_games, 5);
    }
}
