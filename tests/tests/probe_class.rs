//! The probers' structured classes against the real probes of both
//! runtimes: each kind of engine (healthy, 503, refusing, hanging past a
//! short timeout, answering garbage, closing at once) lands in its class in
//! the tick's per-class counts (`healthprobe_probes_total{result}`).

use std::time::Duration;

use healthprobe_core::EventDetails;
use healthprobe_shell::probing::probe::ProbeClass;
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

        // Every unhealthy game published probe_failed.
        assert_eq!(events.len(), 5, "{events:#?}");
        assert!(
            events.iter().all(|event| matches!(event.details, EventDetails::ProbeFailed { .. })),
            "{events:#?}"
        );

        assert_eq!(report.probes, 6);
        for class in ProbeClass::ALL {
            let count = expected.iter().filter(|&&c| c == class).count();
            assert_eq!(report.probe_classes.get(class), count, "{class}: {report:?}");
        }
        assert_eq!(report.tracked_games, 5);
    }
}
