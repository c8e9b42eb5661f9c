//! The status page (`GET /`): one server-rendered HTML document, no script,
//! no external asset, refreshing itself every [`REFRESH_SECONDS`].
//!
//! Totals at the top; then the games worth showing, failing and recovering
//! first, each with its position between the thresholds (a `<meter>` and
//! the counts), since when, a bar of its recent outcomes (oldest on the
//! left; each square's tooltip says when, the status, the error and the
//! latency), its last outcome and its undelivered events.
//!
//! Written with maud's `html!`, which escapes every text it is given (ids,
//! endpoints, error texts): only the style sheet goes in unescaped.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{GameStatus, Health, StatusSnapshot};

/// The page reloads itself this often.
pub const REFRESH_SECONDS: u32 = 5;

/// Most games listed on the page; the rest are counted, with the JSON's link.
pub const MAX_ROWS: usize = 500;

/// The page for `snapshot`; `None` (no snapshot yet) says the worker is starting.
pub fn render(snapshot: Option<&StatusSnapshot>) -> String {
    let head = html! {
        meta charset="utf-8";
        meta http-equiv="refresh" content=(REFRESH_SECONDS);
        meta name="viewport" content="width=device-width, initial-scale=1";
        style { (PreEscaped(include_str!("page.css"))) }
    };
    let Some(snapshot) = snapshot else {
        return html! {
            (DOCTYPE) html lang="en" { head { (head) title { "healthprobe: starting" } }
            body { h1 { "healthprobe" } p { "Starting: no tick yet." } } }
        }
        .into_string();
    };
    let (totals, run) = (&snapshot.totals, &snapshot.run);
    let hidden = snapshot.games.len().saturating_sub(MAX_ROWS);
    html! {
        (DOCTYPE) html lang="en" { head { (head)
            title { "healthprobe: " (totals.failing) " failing, " (totals.recovering) " recovering, " (totals.suspect) " suspect" } }
        body {
            header { h1 { "healthprobe" } p.run {
                @if let Some(tick) = &run.last_tick {
                    "tick " (run.ticks) " ended " (time(tick.ended_at)) " in " (millis(tick.duration_ms))
                    @if tick.skipped { " " b.warn { "(skipped: the records could not be listed)" } }
                } @else { "no tick yet" }
                " · every " (millis(run.interval_ms as f64)) " · probe timeout " (millis(run.probe_timeout_ms as f64))
                " · failures_threshold " (run.failures_threshold) " · recovery_threshold " (run.recovery_threshold)
                " · " (run.runtime) ", at most " (run.max_concurrency) " in flight · shard " (run.shard)
                " · started " (time(run.started_at))
            } }
            section.totals {
                @for health in Health::ALL {
                    div class={ "total " (health.as_str()) } id={ "total-" (health.as_str()) } {
                        b { (totals.of(health)) } " " (health.as_str()) " "
                        small { @match health {
                            Health::Failing => "probe_failed emitted",
                            Health::Recovering => "about to recover",
                            Health::Suspect => "about to fail",
                            Health::Healthy => { "of " (totals.games) " listed" }
                        } }
                    }
                }
                div.total.pending #total-pending { b { (run.pending_events) } " pending " small { "events not yet delivered" } }
            }
            @if snapshot.games.is_empty() {
                p.none #no-games { "No game is failing, suspect or recovering, and none failed in its last probes." }
            } @else {
                table #games {
                    thead { tr { th { "state" } th { "game" } th { "container" } th { "endpoint" } th { "between the thresholds" }
                        th { "since" } th { "last outcomes, oldest first" } th { "last outcome" } th { "undelivered" } } }
                    tbody { @for game in snapshot.games.iter().take(MAX_ROWS) { (game_row(game)) } }
                }
                @if hidden > 0 {
                    p.more { (hidden) " more not shown: " a href={ "/status?offset=" (MAX_ROWS) } { "/status?offset=" (MAX_ROWS) } }
                }
            }
            footer { "Read-only. The same data as JSON: " a href="/status" { "/status" } " (" code { "?state=failing" } ", "
                code { "?game=ID" } ", " code { "?limit=" } ", " code { "?offset=" } "); metrics: " a href="/metrics" { "/metrics" } "." }
        } }
    }
    .into_string()
}

fn game_row(game: &GameStatus) -> Markup {
    let state = game.state.as_str();
    html! {
        tr class={ "game " (state) } data-game=(game.game_id) data-state=(state) data-failures=(game.consecutive_failures)
            data-successes=(game.consecutive_successes) data-published=(game.failure_published) {
            td { span class={ "badge " (state) } { (state) } }
            td.id { (game.game_id) }
            td.id { (game.container_id) }
            td.endpoint { @match &game.engine_endpoint { Some(endpoint) => (endpoint), None => i { "not probed yet" } } }
            td.position { (position(game)) }
            td.since { @match game.since { Some(since) => (time(since)), None => i { "before this run" } } }
            td.recent { @for o in &game.recent {
                span class={ "o " @if o.is_ok() { "ok" } @else { "bad" } }
                    title={ (o.observed_at) " · " (o.status) " · " (format_args!("{:.1}", o.latency_ms)) " ms"
                        @if !o.is_ok() { " · " (o.error) } } {}
            } }
            td.last { @if let Some(last) = game.recent.last() {
                b { (last.status) } " "
                @if !last.is_ok() { span.error { (last.error) } " " }
                small { (millis(last.latency_ms)) }
            } }
            td.pending { @for (i, event_type) in game.pending_events.iter().enumerate() { @if i > 0 { ", " } (event_type) } }
        }
    }
}

/// Where the game stands between the thresholds: going down (failures of
/// `failures_threshold`), down, or going up (successes of `recovery_threshold`).
/// The browser colours the bar: between the ends amber; at the far end red
/// for failures (probe_failed), green for successes (`optimum`).
fn position(game: &GameStatus) -> Markup {
    let failures = (
        game.consecutive_failures,
        u64::from(game.failures_threshold),
        0,
    );
    let (value, max, optimum, text) = match game.state {
        Health::Suspect => (
            failures.0,
            failures.1,
            failures.2,
            " failures before probe_failed",
        ),
        Health::Failing => (
            failures.0,
            failures.1,
            failures.2,
            " failures, probe_failed emitted",
        ),
        Health::Recovering => {
            let max = u64::from(game.recovery_threshold);
            (
                u64::from(game.consecutive_successes),
                max,
                max,
                " successes before probe_recovered",
            )
        }
        Health::Healthy => return html! { small { "recovered or flapping" } },
    };
    html! {
        meter min="0" max=(max) low="0.5" high=(max as f64 - 0.5) optimum=(optimum) value=(value.min(max)) {}
        " " (value) " / " (max) (text)
    }
}

/// A duration in milliseconds as a person reads it: `0.4 ms`, `12 ms`, `1.250 s`.
fn millis(ms: f64) -> String {
    // Thresholds at the rounding points, so 999.7 ms is "1.000 s", not "1000 ms".
    if ms >= 999.5 {
        format!("{:.3} s", ms / 1000.0)
    } else if ms >= 9.95 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn time(at: healthprobe_core::Timestamp) -> Markup {
    html! { time datetime=(at) { (format_args!("{at:.0}")) } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::tests::{hostile_snapshot, snapshot_of};

    #[test]
    fn hostile_text_is_escaped_everywhere_it_appears() {
        let snapshot = hostile_snapshot();
        let page = render(Some(&snapshot));
        // The only markup is the page's own: no script, no injected element.
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("</table><script>"), "{page}");
        assert_eq!(page.matches("</table>").count(), 1, "{page}");
        assert!(
            page.contains("&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;&lt;script&gt;x&lt;/script&gt;"),
            "{page}"
        );
        assert!(
            page.contains("&lt;script&gt;alert(&quot;id&quot;)&lt;/script&gt;")
                || page.contains("&lt;script&gt;alert(\"id\")&lt;/script&gt;"),
            "{page}"
        );
        assert!(page.contains("data-game=\"&lt;script&gt;alert(&quot;id&quot;)&lt;/script&gt;\""));
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{page}"
        );
        // Invalid UTF-8, lossily decoded, shows its replacement characters.
        assert!(page.contains("\u{fffd}\u{fffd}&lt;b&gt;"), "{page}");
        // A very long string is shown whole (the cell wraps it).
        assert!(page.contains(&"x".repeat(10_000)), "a long id is cut");
    }

    #[test]
    fn failing_and_recovering_rows_come_first_with_their_position() {
        let page = render(Some(&snapshot_of()));
        let order: Vec<&str> = page
            .match_indices("data-state=\"")
            .map(|(at, _)| {
                let rest = &page[at + 12..];
                &rest[..rest.find('"').expect("closed")]
            })
            .collect();
        assert_eq!(order, ["failing", "recovering", "suspect", "healthy"]);
        assert!(
            page.contains(
                "<meter min=\"0\" max=\"3\" low=\"0.5\" high=\"2.5\" optimum=\"0\" value=\"2\"></meter> 2 / 3 failures before probe_failed"
            ),
            "{page}"
        );
        assert!(page.contains("<meter min=\"0\" max=\"2\" low=\"0.5\" high=\"1.5\" optimum=\"2\" value=\"1\"></meter> 1 / 2 successes before probe_recovered"), "{page}");
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(page.contains("<title>healthprobe: 1 failing, 1 recovering, 1 suspect</title>"));
    }

    #[test]
    fn durations_read_in_milliseconds_then_seconds() {
        for (ms, shown) in [
            (0.04, "0.0 ms"),
            (9.96, "10 ms"),
            (999.4, "999 ms"),
            (999.7, "1.000 s"),
            (2500.0, "2.500 s"),
        ] {
            assert_eq!(millis(ms), shown, "{ms}");
        }
    }

    #[test]
    fn before_the_first_snapshot_the_page_says_it_is_starting() {
        let page = render(None);
        assert!(page.contains("Starting: no tick yet."), "{page}");
    }
}
