//! The dashboard's charts (issue #15 item 5): fleet readiness as one stacked bar and the
//! Autopilot Resets of the last 30 days as daily stacked columns. Plain SVG drawn on the server
//! (no script, no inline style: the console's Content-Security-Policy allows neither), each with
//! a text summary for screen readers and a `<title>` per part for a pointer.

use maud::{html, Markup};

use crate::service::actions::ResetDay;

const GOOD: &str = "#1a7f37";
const BAD: &str = "#b42318";
const MUTED: &str = "#8c959f";
const BUSY: &str = "#9a6700";

/// Ready and not-ready devices as one bar 100 units wide, the not-ready part split by reason.
pub fn readiness(ready: usize, blocked: &[(String, usize)], total: usize) -> Markup {
    let total = total.max(1);
    let not_ready: usize = total.saturating_sub(ready);
    let width = |n: usize| n as f64 * 100.0 / total as f64;
    let mut parts = vec![("ready".to_owned(), ready, GOOD)];
    let palette = [BAD, BUSY, "#6639ba", "#0a58ca", MUTED];
    // A device may have several reasons: the bar splits its not-ready part by each reason's
    // share of the reasons given.
    let given: usize = blocked.iter().map(|(_, n)| n).sum::<usize>().max(1);
    for (i, (reason, n)) in blocked.iter().enumerate() {
        let share = (*n as f64 * not_ready as f64 / given as f64).round() as usize;
        parts.push((reason.clone(), share, palette[i % palette.len()]));
    }
    let summary = format!("{ready} of {total} devices ready for Autopilot Reset");
    // Where each non-empty part starts and how wide it is.
    let mut x = 0.0;
    let bars: Vec<(f64, f64, &str, usize, &str)> = parts
        .iter()
        .filter(|(_, n, _)| *n > 0)
        .map(|(label, n, colour)| {
            let (start, w) = (x, width(*n));
            x += w;
            (start, w, label.as_str(), *n, *colour)
        })
        .collect();
    html! {
        figure.chart #readiness-chart {
            svg viewBox="0 0 100 8" preserveAspectRatio="none" role="img" aria-label=(summary) width="100%" height="28" {
                @for (x, w, label, n, colour) in &bars {
                    rect x=(format!("{x:.2}")) y="0" width=(format!("{w:.2}")) height="8" fill=(colour) {
                        title { (label) ": " (n) }
                    }
                }
            }
            figcaption {
                ul.legend {
                    @for (label, n, colour) in &parts {
                        @if *n > 0 {
                            li { svg width="10" height="10" aria-hidden="true" { rect width="10" height="10" fill=(colour) {} } " " (label) " (" (n) ")" }
                        }
                    }
                }
            }
        }
    }
}

/// One column per day, done / failed / stopped / in flight stacked, scaled to the busiest day.
pub fn reset_history(days: &[ResetDay]) -> Markup {
    let total = |d: &ResetDay| d.done + d.failed + d.stopped + d.in_flight;
    let peak = days.iter().map(total).max().unwrap_or(0).max(1) as f64;
    let all: u64 = days.iter().map(total).sum();
    let done: u64 = days.iter().map(|d| d.done).sum();
    let failed: u64 = days.iter().map(|d| d.failed).sum();
    let summary = format!(
        "{all} Autopilot Resets requested in the last {} days: {done} done, {failed} failed",
        days.len()
    );
    let column = 100.0 / days.len().max(1) as f64;
    // Each day's parts stacked from the bottom: (x, top, height, day, count, colour, what).
    let mut segments = Vec::new();
    for (i, d) in days.iter().enumerate() {
        let x = i as f64 * column + column * 0.1;
        let mut top = 40.0;
        for (n, colour, what) in [
            (d.done, GOOD, "done"),
            (d.failed, BAD, "failed"),
            (d.stopped, MUTED, "blocked, canceled or expired"),
            (d.in_flight, BUSY, "in flight"),
        ] {
            if n > 0 {
                let h = n as f64 * 40.0 / peak;
                top -= h;
                segments.push((x, top, h, d.day, n, colour, what));
            }
        }
    }
    html! {
        figure.chart #history-chart {
            svg viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label=(summary) width="100%" height="120" {
                @for (x, top, h, day, n, colour, what) in &segments {
                    rect x=(format!("{x:.2}")) y=(format!("{top:.2}")) width=(format!("{w:.2}", w = column * 0.8)) height=(format!("{h:.2}")) fill=(colour) {
                        title { (day) ": " (n) " " (what) }
                    }
                }
            }
            figcaption {
                (summary) ". "
                span.help { "Each column is one UTC day, oldest on the left." }
            }
        }
    }
}
