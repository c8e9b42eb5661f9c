//! The expectation and the checks.
//!
//! The expectation is computed from the world's log alone by a plain model:
//! the naive transcription of the Go worker's hysteresis
//! (`core/tests/support/go_model.rs`), D3's first record of each listing,
//! and each engine's script at the instant its probe started. None of the
//! core's `step`, `apply`, `prune`, `replay` or `probe_jobs`, nor the tick
//! machine, computes any of it.
//!
//! What the model folds is the **lineage** that survives: with a state
//! file, the listings and probe results each committed snapshot holds (the
//! folds of the life that wrote it, before the write, on top of what that
//! life restored), ending with the whole last life; without one, each life
//! on its own, from nothing. Each input is folded under the policy its
//! life was configured with (the configured policy replaces a restored
//! snapshot's; the counters carry over).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use healthprobe_core::{HealthEvent, HealthStates, Input, ProbeOutcome, RuntimeRecord};

use crate::go_model::{NaiveModel, observed};
use crate::scenario::{INTERVAL, game_index, wall};
use crate::world::{Commit, End, PublishFate, What, World, describe, key};

/// What a scenario that passed did, for the totals.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Events the model expects.
    pub events: usize,
    /// Copies of an event beyond its first (each one allowed).
    pub repeats: Vec<String>,
    /// Events of a life without a state file that ended before delivering them.
    pub lost_without_state: usize,
}

/// The model folded over a lineage: its state, the events it emitted, and
/// the journal lines of each input (one per input, in order).
struct Fold {
    model: NaiveModel,
    /// Each with the id the model gives it.
    events: Vec<(String, HealthEvent)>,
    inputs: Vec<Input>,
}

/// The folds a snapshot (or a life's whole run, `Commit { inputs: all }`)
/// holds, as log indices, oldest first.
fn lineage(world: &World, commit: Option<Commit>) -> Vec<usize> {
    let mut parts = Vec::new();
    let mut at = commit;
    while let Some(commit) = at {
        let life = &world.lives[commit.life];
        parts.push(&life.inputs[..commit.inputs]);
        at = life.base;
    }
    parts.into_iter().rev().flatten().copied().collect()
}

/// Fold `lineage` with the plain model.
fn fold(world: &World, lineage: &[usize]) -> Fold {
    let mut fold = Fold {
        model: NaiveModel::new(world.scenario.policy),
        events: Vec::new(),
        inputs: Vec::new(),
    };
    let mut listing: &[RuntimeRecord] = &[];
    for &index in lineage {
        let entry = &world.log[index];
        fold.model.set_policy(world.lives[entry.life].policy);
        match &entry.what {
            What::Listed { records } => {
                let running: Vec<String> = records.iter().map(|r| r.game_id.clone()).collect();
                fold.model.prune_states(&running);
                fold.inputs.push(Input::Prune { running });
                listing = records;
            }
            What::ProbeFolded {
                game_id, started, ..
            } => {
                // D3: the game's first record in its tick's listing. A probe
                // of a game not listed is reported by `check_ticks`.
                let container_id = listing
                    .iter()
                    .find(|record| &record.game_id == game_id)
                    .map(|record| record.current_container_id.clone())
                    .unwrap_or_default();
                let game = game_index(game_id).expect("a simulated game");
                let outcome = ProbeOutcome {
                    game_id: game_id.clone(),
                    container_id,
                    observed_at: wall(entry.at),
                    result: world.scenario.answer(game, *started).result,
                };
                fold.events.extend(fold.model.probe_with_id(&outcome));
                fold.inputs.push(Input::Outcome(outcome));
            }
            other => unreachable!("not a fold input: {other:?}"),
        }
    }
    fold
}

/// The counters a restart restored equal the model's fold of the snapshot it restored.
pub fn check_restored(world: &World, restored: &HealthStates) -> Result<(), String> {
    let expected = fold(world, &lineage(world, world.commit)).model.held();
    let got = observed(restored);
    if got != expected {
        return Err(format!(
            "D5: the restart restored other counters than the model's fold of its snapshot's lineage\n restored {got:?}\n expected {expected:?}"
        ));
    }
    Ok(())
}

/// Every check of a finished scenario; `final_states` is the last life's state.
pub fn check(world: &World, final_states: &HealthStates) -> Result<Verdict, String> {
    if let Some(first) = world.violations.first() {
        let more = world.violations.len() - 1;
        return Err(if more > 0 {
            format!("{first} (and {more} more)")
        } else {
            first.clone()
        });
    }
    check_ticks(world)?;
    let mut verdict = Verdict {
        repeats: world
            .repeats
            .iter()
            .map(|&id| describe(&world.publishes[id].event))
            .collect(),
        ..Verdict::default()
    };
    let last = world.lives.len() - 1;
    let whole_last = Commit {
        life: last,
        inputs: world.lives[last].inputs.len(),
    };
    let final_model = if world.scenario.durable {
        let lineage = lineage(world, Some(whole_last));
        let fold = fold(world, &lineage);
        verdict.events = fold.events.len();
        check_deliveries(world, &fold.events, None, &mut verdict)?;
        check_journal(world, &fold.inputs, |life| {
            lineage_len(world, world.lives[life].base)
        })?;
        fold.model
    } else {
        let mut final_model = None;
        for (life, run) in world.lives.iter().enumerate() {
            let fold = fold(world, &run.inputs);
            verdict.events += fold.events.len();
            check_deliveries(
                world,
                &fold.events,
                Some((life, life != last)),
                &mut verdict,
            )?;
            check_life_journal(world, life, &fold.inputs)?;
            final_model = Some(fold.model);
        }
        final_model.expect("at least one life")
    };
    let got = observed(final_states);
    let expected = final_model.held();
    if got != expected {
        return Err(format!(
            "the final counters differ from the model's\n got      {got:?}\n expected {expected:?}"
        ));
    }
    Ok(verdict)
}

fn lineage_len(world: &World, commit: Option<Commit>) -> usize {
    let mut len = 0;
    let mut at = commit;
    while let Some(commit) = at {
        len += commit.inputs;
        at = world.lives[commit.life].base;
    }
    len
}

/// Per game, the delivered stream, repeats removed, equals the model's
/// events in order, and every publish of an event (repeats included)
/// carries the model's id for it. `life`: without a state file, only the
/// events of that life's publish calls, and `Some((_, true))` for a life
/// that may have ended before delivering all (a prefix then suffices).
fn check_deliveries(
    world: &World,
    expected: &[(String, HealthEvent)],
    life: Option<(usize, bool)>,
    verdict: &mut Verdict,
) -> Result<(), String> {
    let ids: HashMap<_, &str> = expected
        .iter()
        .map(|(id, event)| (key(event), id.as_str()))
        .collect();
    for call in &world.publishes {
        let want = ids.get(&key(&call.event));
        if life.is_some_and(|(life, _)| call.life != life) || want.is_none_or(|id| *id == call.id) {
            continue;
        }
        return Err(format!(
            "{} was published with id {}, the model's is {}",
            describe(&call.event),
            call.id,
            want.copied().unwrap_or_default()
        ));
    }
    let mut expected_by_game: HashMap<&str, Vec<&HealthEvent>> = HashMap::new();
    for (_, event) in expected {
        expected_by_game
            .entry(event.game_id.as_str())
            .or_default()
            .push(event);
    }
    let mut games: BTreeSet<&str> = expected_by_game.keys().copied().collect();
    games.extend(world.first_delivered.keys().map(String::as_str));
    for game in games {
        let want = expected_by_game
            .get(game)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut got: Vec<&HealthEvent> = Vec::new();
        for &id in world
            .first_delivered
            .get(game)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let call = &world.publishes[id];
            if life.is_some_and(|(life, _)| call.life != life) {
                continue;
            }
            if want.iter().any(|event| key(event) == key(&call.event)) {
                got.push(&call.event);
            } else {
                return Err(format!(
                    "{game}: {} was delivered, but the model's lineage never emits it\n delivered {}\n expected  {}",
                    describe(&call.event),
                    describe_all(
                        world.first_delivered[game]
                            .iter()
                            .map(|&id| &world.publishes[id].event)
                    ),
                    describe_all(want.iter().copied())
                ));
            }
        }
        let may_stop_short = life.is_some_and(|(_, short)| short);
        let matches = if may_stop_short {
            want.starts_with(&got)
        } else {
            got == want
        };
        if !matches {
            return Err(format!(
                "{game}: the delivered events (repeats removed) differ from the model's{}\n delivered {}\n expected  {}",
                if may_stop_short {
                    " (a prefix of them, this life having no state file)"
                } else {
                    ""
                },
                describe_all(got.iter().copied()),
                describe_all(want.iter().copied())
            ));
        }
        verdict.lost_without_state += want.len() - got.len();
    }
    Ok(())
}

fn describe_all<'a>(events: impl Iterator<Item = &'a HealthEvent>) -> String {
    let parts: Vec<String> = events.map(describe).collect();
    format!("[{}]", parts.join(", "))
}

/// From the log: every tick probed each distinct listed game at most once,
/// with its first record's container (D3), and nothing unlisted; a tick
/// neither crashed nor shut down before its batch ended probed every one;
/// every probe started in a life that did not crash was folded; after a
/// shutdown, no probe started and no new tick began; a life's first tick
/// started at once, and each next one an interval after the last one
/// started, or at once when that one overran (R13: no catch-up burst).
fn check_ticks(world: &World) -> Result<(), String> {
    #[derive(Debug, Default)]
    struct Tick<'a> {
        at: Duration,
        records: &'a [RuntimeRecord],
        started: Vec<&'a str>,
        folded: Vec<&'a str>,
        batch_ended: bool,
        interrupted: bool,
        crashed: bool,
    }
    fn close(tick: Option<Tick<'_>>, life: usize) -> Result<(), String> {
        let Some(tick) = tick else { return Ok(()) };
        let listed: BTreeSet<&str> = tick.records.iter().map(|r| r.game_id.as_str()).collect();
        let started: BTreeSet<&str> = tick.started.iter().copied().collect();
        let mut folded = tick.folded.clone();
        let mut started_sorted = tick.started.clone();
        folded.sort_unstable();
        started_sorted.sort_unstable();
        if !tick.crashed && folded != started_sorted {
            return Err(format!(
                "life {life}, tick at {:?}: probes started {started_sorted:?} but folded {folded:?}: a probe in flight must finish and be folded",
                tick.at
            ));
        }
        if !tick.interrupted && started != listed {
            return Err(format!(
                "life {life}, tick at {:?}: listed {listed:?} but probed {started:?}: each listed game is probed once (D3)",
                tick.at
            ));
        }
        Ok(())
    }
    let mut tick: Option<Tick<'_>> = None;
    let mut shutdown = false;
    let mut no_new_tick = false;
    let mut life = 0;
    // When the next tick must start (port calls take no virtual time, so a
    // tick starts when it lists), and when the current one started.
    let mut next_start: Option<Duration> = None;
    let mut started_at = Duration::ZERO;
    for entry in &world.log {
        let new_tick = |no_new_tick: bool| {
            if no_new_tick {
                Err(format!(
                    "life {}, {:?}: a new tick began after the shutdown was triggered",
                    entry.life, entry.at
                ))
            } else {
                Ok(())
            }
        };
        let paced = |next_start: Option<Duration>| match next_start {
            Some(due) if due != entry.at => Err(format!(
                "R13: life {}: a tick started at {:?}, but it was due at {due:?}",
                entry.life, entry.at
            )),
            _ => Ok(()),
        };
        match &entry.what {
            What::LifeStarted { .. } => {
                close(tick.take(), life)?;
                life = entry.life;
                shutdown = false;
                no_new_tick = false;
                next_start = Some(entry.at);
            }
            What::Listed { records } => {
                close(tick.take(), life)?;
                new_tick(no_new_tick)?;
                paced(next_start.take())?;
                started_at = entry.at;
                tick = Some(Tick {
                    at: entry.at,
                    records,
                    interrupted: shutdown,
                    ..Tick::default()
                });
            }
            What::ListFailed => {
                close(tick.take(), life)?;
                new_tick(no_new_tick)?;
                paced(next_start.take())?;
                started_at = entry.at;
            }
            What::BatchStarted { .. } if tick.is_none() => {
                return Err(format!(
                    "life {life}, {:?}: probes without a listing",
                    entry.at
                ));
            }
            What::ProbeStarted {
                game_id,
                container_id,
            } => {
                if shutdown {
                    return Err(format!(
                        "life {life}, {:?}: {game_id} probe started after the shutdown was triggered",
                        entry.at
                    ));
                }
                let Some(tick) = tick.as_mut() else {
                    return Err(format!("life {life}: {game_id} probed without a listing"));
                };
                let Some(first) = tick.records.iter().find(|r| &r.game_id == game_id) else {
                    return Err(format!(
                        "life {life}, {:?}: {game_id} probed, but this tick's listing does not hold it",
                        entry.at
                    ));
                };
                if &first.current_container_id != container_id {
                    return Err(format!(
                        "D3: life {life}, {:?}: {game_id} probed as container {container_id}, but its first listed record has {}",
                        entry.at, first.current_container_id
                    ));
                }
                if tick.started.contains(&game_id.as_str()) {
                    return Err(format!(
                        "D3: life {life}, {:?}: {game_id} probed twice in one tick",
                        entry.at
                    ));
                }
                tick.started.push(game_id);
            }
            What::ProbeFolded { game_id, .. } => {
                if let Some(tick) = tick.as_mut() {
                    tick.folded.push(game_id);
                }
            }
            What::BatchEnded => {
                if let Some(tick) = tick.as_mut() {
                    tick.batch_ended = true;
                }
            }
            // A closed output stops the run after this tick: the worker
            // triggers the shutdown itself.
            What::ShutdownTriggered { .. }
            | What::Publish {
                fate: PublishFate::Closed,
                ..
            } => {
                shutdown = true;
                match tick.as_mut() {
                    Some(tick) if !tick.batch_ended => tick.interrupted = true,
                    _ => {}
                }
                // Between ticks (asleep, or at the end of one): none may start.
                if let What::ShutdownTriggered {
                    during: "sleep" | "the end of the run",
                } = &entry.what
                {
                    no_new_tick = true;
                }
            }
            What::TickDone => {
                no_new_tick |= shutdown;
                next_start = Some((started_at + INTERVAL).max(entry.at));
            }
            What::Crashed { .. } => {
                next_start = None;
                if let Some(tick) = tick.as_mut() {
                    tick.crashed = true;
                    tick.interrupted |= !tick.batch_ended;
                }
            }
            What::Ended { .. } => close(tick.take(), life)?,
            _ => {}
        }
    }
    close(tick, life)
}

/// The journal's lines, whole lines only (a torn tail is cut when it is
/// next opened, as `JournalFile::append` does).
fn journal_lines(bytes: &[u8]) -> Result<Vec<Input>, String> {
    let whole = bytes
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |last| last + 1);
    let text = std::str::from_utf8(&bytes[..whole]).map_err(|err| format!("journal: {err}"))?;
    text.lines()
        .enumerate()
        .map(|(line, text)| {
            serde_json::from_str(text)
                .map_err(|err| format!("journal line {}: {err}: {text}", line + 1))
        })
        .collect()
}

/// Journal lines compare with the model's inputs; a prune's running list as a set.
fn same_input(got: &Input, want: &Input) -> bool {
    match (got, want) {
        (Input::Prune { running: got }, Input::Prune { running: want }) => {
            got.iter().collect::<BTreeSet<_>>() == want.iter().collect::<BTreeSet<_>>()
        }
        _ => got == want,
    }
}

fn is_run_of(got: &[Input], want: &[Input]) -> bool {
    got.len() <= want.len()
        && got
            .iter()
            .zip(want)
            .all(|(got, want)| same_input(got, want))
}

/// D6 with a state file: the journal is a run of the final lineage's
/// inputs without a hole, from where it was last begun (empty at a process
/// start) on; whole, unless a fault stopped it, when it is a prefix of that
/// (it stops, it never skips, across restarts too).
fn check_journal(
    world: &World,
    inputs: &[Input],
    restored_len: impl Fn(usize) -> usize,
) -> Result<(), String> {
    if !world.scenario.journal {
        return Ok(());
    }
    let lines = journal_lines(&world.journal)?;
    let begun: Vec<usize> = world
        .lives
        .iter()
        .enumerate()
        .filter(|(_, life)| life.journal_start == 0 && life.end != Some(End::StartRefused))
        .map(|(index, _)| restored_len(index))
        .collect();
    let fits = |origin: usize| {
        inputs.get(origin..).is_some_and(|rest| {
            is_run_of(&lines, rest) && (world.journal_interrupted || lines.len() == rest.len())
        })
    };
    let intact = !world.journal_interrupted;
    if (intact && fits(0)) || (!intact && begun.iter().any(|&origin| fits(origin))) {
        return Ok(());
    }
    let first_difference = lines
        .iter()
        .zip(inputs)
        .position(|(got, want)| !same_input(got, want))
        .unwrap_or(lines.len().min(inputs.len()));
    Err(format!(
        "D6: the journal ({} lines) is not the final lineage's {} inputs{}, without a hole, from a process start at input {begun:?}; first difference at line {}: {:?} against {:?}",
        lines.len(),
        inputs.len(),
        if intact {
            ""
        } else {
            " (or a prefix of them: a fault stopped it)"
        },
        first_difference + 1,
        lines.get(first_difference),
        inputs.get(first_difference),
    ))
}

/// D6 without a state file: each life's part of the journal is a prefix of
/// that life's inputs, holding at least what its last good flush wrote.
fn check_life_journal(world: &World, life: usize, inputs: &[Input]) -> Result<(), String> {
    if !world.scenario.journal {
        return Ok(());
    }
    let start = world.lives[life].journal_start;
    let end = world
        .lives
        .get(life + 1)
        .map_or(world.journal.len(), |next| next.journal_start);
    let lines = journal_lines(&world.journal[start..end])?;
    let flushed = world.lives[life].flushed_inputs;
    if is_run_of(&lines, inputs) && lines.len() >= flushed {
        return Ok(());
    }
    Err(format!(
        "D6: life {life}'s journal ({} lines) is not a prefix of its {} inputs holding the {flushed} flushed\n lines  {lines:?}\n inputs {inputs:?}",
        lines.len(),
        inputs.len()
    ))
}
