//! The status page (`GET /`): one server-rendered HTML document, no script,
//! no external asset, refreshing itself every [`REFRESH_SECONDS`].
//!
//! Totals at the top; then the games worth showing, failing and recovering
//! first, each with its position between the thresholds (a `<meter>` and
//! the counts), since when, a bar of its recent outcomes (oldest on the
//! left; each square's tooltip says when, the status, the error and the
//! latency), its last outcome and its undelivered events.
//!
//! Every text an engine or a record controls (ids, endpoints, error texts)
//! goes through [`Html::text`] or [`Html::attr`], which escape it; markup
//! can only be written from `&'static str`, so no run-time text can become
//! markup.

use std::fmt::Write as _;

use healthprobe_core::Timestamp;

use super::{GameStatus, Health, StatusSnapshot};

/// The page reloads itself this often.
pub const REFRESH_SECONDS: u32 = 5;

/// Most games listed on the page; the rest are counted, with the JSON's link.
pub const MAX_ROWS: usize = 500;

/// The page for `snapshot`; `None` (no snapshot yet) says the worker is starting.
pub fn render(snapshot: Option<&StatusSnapshot>) -> String {
    let mut html = Html::default();
    html.raw(HEAD_START);
    let Some(snapshot) = snapshot else {
        html.raw("<title>healthprobe: starting</title></head><body><h1>healthprobe</h1><p>Starting: no tick yet.</p></body></html>\n");
        return html.0;
    };
    let totals = &snapshot.totals;
    html.raw("<title>healthprobe: ");
    html.number(totals.failing);
    html.raw(" failing, ");
    html.number(totals.recovering);
    html.raw(" recovering, ");
    html.number(totals.suspect);
    html.raw(" suspect</title></head>\n<body>\n<header><h1>healthprobe</h1>");
    run_line(&mut html, snapshot);
    html.raw("</header>\n<section class=\"totals\">");
    for health in Health::ALL {
        html.raw("<div class=\"total ");
        html.raw(health.as_str());
        html.raw("\" id=\"total-");
        html.raw(health.as_str());
        html.raw("\"><b>");
        html.number(totals.of(health));
        html.raw("</b> ");
        html.raw(health.as_str());
        html.raw(match health {
            Health::Failing => " <small>probe_failed emitted</small>",
            Health::Recovering => " <small>about to recover</small>",
            Health::Suspect => " <small>about to fail</small>",
            Health::Healthy => " <small>of ",
        });
        if health == Health::Healthy {
            html.number(totals.games);
            html.raw(" listed</small>");
        }
        html.raw("</div>");
    }
    html.raw("<div class=\"total pending\" id=\"total-pending\"><b>");
    html.number(snapshot.run.pending_events);
    html.raw("</b> pending <small>events not yet delivered</small></div></section>\n");
    games_table(&mut html, snapshot);
    html.raw("<footer>Read-only. The same data as JSON: <a href=\"/status\">/status</a> (<code>?state=failing</code>, <code>?game=ID</code>, <code>?limit=</code>, <code>?offset=</code>); metrics: <a href=\"/metrics\">/metrics</a>.</footer>\n</body></html>\n");
    html.0
}

fn run_line(html: &mut Html, snapshot: &StatusSnapshot) {
    let run = &snapshot.run;
    html.raw("<p class=\"run\">");
    match &run.last_tick {
        Some(tick) => {
            html.raw("tick ");
            html.number(run.ticks);
            html.raw(" ended ");
            html.time(tick.ended_at);
            html.raw(" in ");
            html.millis(tick.duration_ms);
            if tick.skipped {
                html.raw(" <b class=\"warn\">(skipped: the records could not be listed)</b>");
            }
        }
        None => html.raw("no tick yet"),
    }
    html.raw(" · every ");
    html.millis(run.interval_ms as f64);
    html.raw(" · probe timeout ");
    html.millis(run.probe_timeout_ms as f64);
    html.raw(" · failures_threshold ");
    html.number(run.failures_threshold);
    html.raw(" · recovery_threshold ");
    html.number(run.recovery_threshold);
    html.raw(" · ");
    html.text(run.runtime);
    html.raw(", at most ");
    html.number(run.max_concurrency);
    html.raw(" in flight · shard ");
    html.text(&run.shard);
    html.raw(" · started ");
    html.time(run.started_at);
    html.raw("</p>");
}

fn games_table(html: &mut Html, snapshot: &StatusSnapshot) {
    if snapshot.games.is_empty() {
        html.raw("<p class=\"none\" id=\"no-games\">No game is failing, suspect or recovering, and none failed in its last probes.</p>\n");
        return;
    }
    html.raw("<table id=\"games\"><thead><tr><th>state</th><th>game</th><th>container</th><th>endpoint</th><th>between the thresholds</th><th>since</th><th>last outcomes, oldest first</th><th>last outcome</th><th>undelivered</th></tr></thead>\n<tbody>\n");
    for game in snapshot.games.iter().take(MAX_ROWS) {
        game_row(html, game);
    }
    html.raw("</tbody></table>\n");
    let hidden = snapshot.games.len().saturating_sub(MAX_ROWS);
    if hidden > 0 {
        html.raw("<p class=\"more\">");
        html.number(hidden);
        html.raw(" more not shown: <a href=\"/status?offset=");
        html.number(MAX_ROWS);
        html.raw("\">/status?offset=");
        html.number(MAX_ROWS);
        html.raw("</a></p>\n");
    }
}

fn game_row(html: &mut Html, game: &GameStatus) {
    let state = game.state.as_str();
    html.raw("<tr class=\"game ");
    html.raw(state);
    html.raw("\" data-game=\"");
    html.attr(&game.game_id);
    html.raw("\" data-state=\"");
    html.raw(state);
    html.raw("\" data-failures=\"");
    html.number(game.consecutive_failures);
    html.raw("\" data-successes=\"");
    html.number(game.consecutive_successes);
    html.raw("\" data-published=\"");
    html.raw(if game.failure_published {
        "true"
    } else {
        "false"
    });
    html.raw("\"><td><span class=\"badge ");
    html.raw(state);
    html.raw("\">");
    html.raw(state);
    html.raw("</span></td><td class=\"id\">");
    html.text(&game.game_id);
    html.raw("</td><td class=\"id\">");
    html.text(&game.container_id);
    html.raw("</td><td class=\"endpoint\">");
    match &game.engine_endpoint {
        Some(endpoint) => html.text(endpoint),
        None => html.raw("<i>not probed yet</i>"),
    }
    html.raw("</td><td class=\"position\">");
    position(html, game);
    html.raw("</td><td class=\"since\">");
    match game.since {
        Some(since) => html.time(since),
        None => html.raw("<i>before this run</i>"),
    }
    html.raw("</td><td class=\"recent\">");
    for outcome in &game.recent {
        html.raw(if outcome.is_ok() {
            "<span class=\"o ok\" title=\""
        } else {
            "<span class=\"o bad\" title=\""
        });
        let mut tip = String::new();
        let _ = write!(
            tip,
            "{} · {} · {:.1} ms",
            outcome.observed_at, outcome.status, outcome.latency_ms
        );
        if !outcome.is_ok() {
            tip.push_str(" · ");
            tip.push_str(outcome.error.as_deref().unwrap_or_default());
        }
        html.attr(&tip);
        html.raw("\"></span>");
    }
    html.raw("</td><td class=\"last\">");
    if let Some(last) = game.recent.last() {
        html.raw("<b>");
        html.number(last.status);
        html.raw("</b> ");
        if !last.is_ok() {
            html.raw("<span class=\"error\">");
            html.text(last.error.as_deref().unwrap_or_default());
            html.raw("</span> ");
        }
        html.raw("<small>");
        html.millis(last.latency_ms);
        html.raw("</small>");
    }
    html.raw("</td><td class=\"pending\">");
    for (i, event_type) in game.pending_events.iter().enumerate() {
        if i > 0 {
            html.raw(", ");
        }
        html.text(event_type);
    }
    html.raw("</td></tr>\n");
}

/// Where the game stands between the thresholds: going down (failures of
/// `failures_threshold`), down, or going up (successes of `recovery_threshold`).
fn position(html: &mut Html, game: &GameStatus) {
    let (value, max, text, optimum) = match game.state {
        Health::Suspect => (
            game.consecutive_failures,
            u64::from(game.failures_threshold),
            " failures before probe_failed",
            Optimum::Empty,
        ),
        Health::Failing => (
            game.consecutive_failures,
            u64::from(game.failures_threshold),
            " failures, probe_failed emitted",
            Optimum::Empty,
        ),
        Health::Recovering => (
            u64::from(game.consecutive_successes),
            u64::from(game.recovery_threshold),
            " successes before probe_recovered",
            Optimum::Full,
        ),
        Health::Healthy => {
            html.raw("<small>recovered or flapping</small>");
            return;
        }
    };
    // The browser colours the bar: between the ends amber; at the far end
    // red for failures (probe_failed), green for successes.
    html.raw("<meter min=\"0\" max=\"");
    html.number(max);
    html.raw("\" low=\"0.5\" high=\"");
    html.number(max as f64 - 0.5);
    html.raw("\" optimum=\"");
    match optimum {
        Optimum::Empty => html.raw("0"),
        Optimum::Full => html.number(max),
    }
    html.raw("\" value=\"");
    html.number(value.min(max));
    html.raw("\"></meter> ");
    html.number(value);
    html.raw(" / ");
    html.number(max);
    html.raw(text);
}

/// Which end of a position's bar is good.
#[derive(Debug, Clone, Copy)]
enum Optimum {
    Empty,
    Full,
}

/// An HTML document being written: markup only from `&'static str`, every
/// other text escaped.
#[derive(Debug, Default)]
struct Html(String);

impl Html {
    /// Markup, written as is: a literal of this file.
    fn raw(&mut self, markup: &'static str) {
        self.0.push_str(markup);
    }

    /// Text content, escaped (`&`, `<`, `>`).
    fn text(&mut self, text: &str) {
        html_escape::encode_text_to_string(text, &mut self.0);
    }

    /// A double-quoted attribute's value, escaped (`&`, `<`, `>`, `"`).
    fn attr(&mut self, value: &str) {
        html_escape::encode_double_quoted_attribute_to_string(value, &mut self.0);
    }

    fn number(&mut self, number: impl std::fmt::Display) {
        let _ = write!(self.0, "{number}");
    }

    fn millis(&mut self, ms: f64) {
        // Thresholds at the rounding points, so 999.7 ms is "1.000 s", not "1000 ms".
        let _ = if ms >= 999.5 {
            write!(self.0, "{:.3} s", ms / 1000.0)
        } else if ms >= 9.95 {
            write!(self.0, "{ms:.0} ms")
        } else {
            write!(self.0, "{ms:.1} ms")
        };
    }

    fn time(&mut self, at: Timestamp) {
        let _ = write!(self.0, "<time datetime=\"{at}\">{at:.0}</time>");
    }
}

const HEAD_START: &str = concat!(
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<meta http-equiv=\"refresh\" content=\"5\">",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
    "<style>",
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}",
    "h1{font-size:1.3em;margin:0 0 .2em}",
    ".run{color:#555;margin:0 0 1em}",
    ".totals{display:flex;gap:.8em;flex-wrap:wrap;margin-bottom:1em}",
    ".total{padding:.5em .9em;border-radius:6px;background:#fff;border:1px solid #ddd;border-left:6px solid #999}",
    ".total b{font-size:1.6em;margin-right:.2em}",
    ".total.failing{border-left-color:#c62828}.total.recovering{border-left-color:#1565c0}",
    ".total.suspect{border-left-color:#f9a825}.total.healthy{border-left-color:#2e7d32}",
    ".total.pending{border-left-color:#6a1b9a}",
    "table{border-collapse:collapse;width:100%;background:#fff}",
    "th,td{border-bottom:1px solid #e5e5e5;padding:.35em .5em;text-align:left;vertical-align:top}",
    "th{font-weight:600;color:#444;background:#f0f0f0}",
    "td.id,td.endpoint,td.last{word-break:break-all;max-width:24em}",
    "tr.failing{background:#fdecea}tr.recovering{background:#e8f0fc}tr.suspect{background:#fff8e1}",
    ".badge{display:inline-block;padding:0 .5em;border-radius:4px;color:#fff;font-weight:600}",
    ".badge.failing{background:#c62828}.badge.recovering{background:#1565c0}",
    ".badge.suspect{background:#f9a825;color:#222}.badge.healthy{background:#2e7d32}",
    ".o{display:inline-block;width:10px;height:18px;margin-right:2px;border-radius:2px}",
    ".o.ok{background:#43a047}.o.bad{background:#e53935}",
    "td.recent{white-space:nowrap}",
    ".error{color:#b71c1c}.warn{color:#b71c1c}",
    "meter{width:5em;vertical-align:middle}",
    "footer{margin-top:1.5em;color:#666}",
    "</style>"
);

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
            let mut html = Html::default();
            html.millis(ms);
            assert_eq!(html.0, shown, "{ms}");
        }
    }

    #[test]
    fn refresh_interval_matches_its_constant() {
        assert!(HEAD_START.contains(&format!("content=\"{REFRESH_SECONDS}\"")));
    }

    #[test]
    fn before_the_first_snapshot_the_page_says_it_is_starting() {
        let page = render(None);
        assert!(page.contains("Starting: no tick yet."), "{page}");
    }
}
