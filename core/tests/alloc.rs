//! The no-event path of `step` does not allocate (counted, not timed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use healthprobe_core::{HealthStates, Policy, ProbeOutcome, ProbeResult, Timestamp, step};

struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static FREES: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = f();
    (value, ALLOCATIONS.with(Cell::get) - before)
}

fn outcome(game: usize, healthy: bool) -> ProbeOutcome {
    ProbeOutcome {
        game_id: format!("game-{game}"),
        container_id: format!("container-{game}"),
        observed_at: Timestamp::from_second(1_795_842_000).unwrap(),
        result: if healthy {
            ProbeResult::Healthy
        } else {
            ProbeResult::Unhealthy {
                status: 503,
                error: "unexpected status 503".into(),
            }
        },
    }
}

#[test]
fn d7_no_event_path_of_step_does_not_allocate() {
    let mut state = HealthStates::new(Policy::new(1000, 3).unwrap());
    // Warm up: 100 games with one failure each, so their entries exist.
    for game in 0..100 {
        state = step(state, outcome(game, false)).0;
    }
    let healthy_unknown: Vec<_> = (100..200).map(|g| outcome(g, true)).collect();
    let failing_known: Vec<_> = (0..100).map(|g| outcome(g, false)).collect();
    let (after, allocations) = allocations_during(|| {
        let mut state = state;
        for o in healthy_unknown.into_iter().chain(failing_known) {
            let (next, events) = step(state, o);
            assert!(events.is_empty());
            state = next;
        }
        state
    });
    assert_eq!(allocations, 0, "no-event steps allocated");
    assert_eq!(
        after.game("game-7").map(|g| g.consecutive_failures()),
        Some(2)
    );

    // A success that resets a counter (R6) frees but does not allocate either.
    let resets: Vec<_> = (0..100).map(|g| outcome(g, true)).collect();
    let (after, allocations) = allocations_during(|| {
        let mut state = after;
        for o in resets {
            state = step(state, o).0;
        }
        state
    });
    assert_eq!(allocations, 0);
    assert!(after.is_empty());
}

#[test]
fn an_event_costs_its_three_strings_and_the_returned_vec() {
    let state = HealthStates::new(Policy::new(2, 1).unwrap());
    let state = step(state, outcome(1, false)).0;
    let failing = outcome(1, false);
    let ((_, events), allocations) = allocations_during(|| step(state, failing));
    assert_eq!(events.len(), 1);
    // game_id, container_id and the error copied into the event, its id, and the Vec.
    assert_eq!(allocations, 5);
}

#[test]
fn d7_no_event_path_of_apply_neither_allocates_nor_frees() {
    let mut state = HealthStates::new(Policy::new(1000, 3).unwrap());
    for game in 0..100 {
        state = step(state, outcome(game, false)).0;
    }
    let healthy_unknown: Vec<_> = (100..200).map(|g| outcome(g, true)).collect();
    let failing_known: Vec<_> = (0..100).map(|g| outcome(g, false)).collect();
    let frees_before = FREES.with(Cell::get);
    let (_, allocations) = allocations_during(|| {
        for o in healthy_unknown.iter().chain(&failing_known) {
            assert!(state.apply(o.as_ref()).is_none());
        }
    });
    assert_eq!(allocations, 0, "no-event apply allocated");
    assert_eq!(
        FREES.with(Cell::get) - frees_before,
        0,
        "no-event apply freed"
    );
    assert_eq!(
        state.game("game-7").map(|g| g.consecutive_failures()),
        Some(2)
    );
}

#[test]
fn apply_copies_strings_only_into_an_event() {
    let mut state = HealthStates::new(Policy::new(2, 1).unwrap());
    let failing = outcome(1, false);
    assert!(state.apply(failing.as_ref()).is_none());
    // The event copies game_id, container_id and the error, and has its id: four allocations.
    let (event, allocations) = allocations_during(|| state.apply(failing.as_ref()));
    assert_eq!(event.map(|e| e.event.game_id), Some("game-1".to_owned()));
    assert_eq!(allocations, 4);
}
