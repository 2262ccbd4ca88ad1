//! Prometheus metrics, hand-rolled with atomics: management sessions by outcome, command state
//! transitions, enrollment outcomes, request latency per endpoint and connections (open,
//! refused, closed by a timeout), rendered in the text exposition format (version 0.0.4) on
//! `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram: cumulative counts are computed when rendering.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds (integer, so it can be an atomic).
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, duration: Duration) {
        let secs = duration.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// A family of series keyed by their rendered label set (`outcome="ok"`), created on first use.
#[derive(Debug)]
struct Family<T> {
    series: RwLock<BTreeMap<String, Arc<T>>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family {
            series: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<T: Default> Family<T> {
    fn get(&self, labels: String) -> Arc<T> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&labels)
        {
            return s.clone();
        }
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(labels)
            .or_default()
            .clone()
    }

    fn snapshot(&self) -> Vec<(String, Arc<T>)> {
        self.series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Escapes a label value (Prometheus text format: backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What one tick of the background worker did (`crate::worker::tick` returns it; counted here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Actions moved to `expired` (no transition for `action_expiry`).
    pub expired: usize,
    /// Stored waves of bulk requests whose actions were requested.
    pub waves_released: usize,
    /// Schedules fired (claimed by this tick; a schedule whose group is gone counts too).
    pub schedules_fired: usize,
    /// Webhook deliveries a receiver accepted in this tick (the webhook step of the worker).
    pub webhooks_delivered: usize,
}

impl TickReport {
    /// Whether the tick found nothing to do.
    pub fn is_idle(&self) -> bool {
        *self == TickReport::default()
    }
}

/// Every metric the server exports. Shared as `Arc<Metrics>` in [`crate::state::AppState`].
#[derive(Debug, Default)]
pub struct Metrics {
    sessions: Family<AtomicU64>,
    session_duration: Family<Histogram>,
    commands: Family<AtomicU64>,
    enrollment_requests: Family<AtomicU64>,
    http_duration: Family<Histogram>,
    worker_ticks: Family<AtomicU64>,
    actions_expired: AtomicU64,
    waves_released: AtomicU64,
    schedules_fired: AtomicU64,
    webhooks_delivered: AtomicU64,
    trail_dropped: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: Family<AtomicU64>,
    connections_closed: Family<AtomicU64>,
    accept_errors: AtomicU64,
}

impl Metrics {
    /// One management session (or session message) ended with `outcome` (e.g. `ok`,
    /// `unauthenticated`, `bad_message`, `store_error`) after `duration`.
    pub fn record_session(&self, outcome: &str, duration: Duration) {
        let labels = format!("outcome=\"{}\"", label(outcome));
        self.sessions
            .get(labels.clone())
            .fetch_add(1, Ordering::Relaxed);
        self.session_duration.get(labels).observe(duration);
    }

    /// `count` device commands moved into `state` (e.g. `sent`, `acknowledged`, `failed`).
    pub fn record_command(&self, state: &str, count: u64) {
        self.commands
            .get(format!("state=\"{}\"", label(state)))
            .fetch_add(count, Ordering::Relaxed);
    }

    /// An enrollment service request (`discovery`, `policy`, `enrollment`) ended with
    /// `outcome`: `ok` or the SOAP fault subcode (`MessageFormat`, `Authentication`, …).
    pub fn record_enrollment(&self, service: &str, outcome: &str) {
        self.enrollment_requests
            .get(format!(
                "service=\"{}\",outcome=\"{}\"",
                label(service),
                label(outcome)
            ))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The number of enrollment requests recorded for (`service`, `outcome`).
    pub fn enrollment_count(&self, service: &str, outcome: &str) -> u64 {
        self.enrollment_requests
            .get(format!(
                "service=\"{}\",outcome=\"{}\"",
                label(service),
                label(outcome)
            ))
            .load(Ordering::Relaxed)
    }

    /// One HTTP request to `endpoint` (the route pattern, not the raw path) took `duration`.
    pub fn record_request(&self, endpoint: &str, duration: Duration) {
        self.http_duration
            .get(format!("endpoint=\"{}\"", label(endpoint)))
            .observe(duration);
    }

    /// One background worker tick ended with `outcome` (`ok` or `error`), having expired,
    /// released and fired this many (see [`TickReport`]).
    pub fn record_tick(&self, outcome: &str, report: &TickReport) {
        self.worker_ticks
            .get(format!("outcome=\"{}\"", label(outcome)))
            .fetch_add(1, Ordering::Relaxed);
        let add = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.actions_expired, report.expired);
        add(&self.waves_released, report.waves_released);
        add(&self.schedules_fired, report.schedules_fired);
        add(&self.webhooks_delivered, report.webhooks_delivered);
    }

    /// `count` support-trail messages were dropped because the write buffer was full.
    pub fn record_trail_dropped(&self, count: u64) {
        self.trail_dropped.fetch_add(count, Ordering::Relaxed);
    }

    /// A connection was accepted and admitted (see [`Self::connection_ended`]).
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    /// An admitted connection ended, however it ended.
    pub fn connection_ended(&self) {
        // Never below zero, even if a caller pairs these wrongly.
        let _ = self
            .connections_open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Ordering::Relaxed)
    }

    fn refused_over(&self, cap: &str) -> Arc<AtomicU64> {
        self.connections_refused
            .get(format!("cap=\"{}\"", label(cap)))
    }

    fn closed_past(&self, timeout: &str) -> Arc<AtomicU64> {
        self.connections_closed
            .get(format!("timeout=\"{}\"", label(timeout)))
    }

    /// A connection was closed as soon as it was accepted, over a cap (`max_connections`,
    /// `max_connections_per_ip`).
    pub fn record_connection_refused(&self, cap: &str) {
        self.refused_over(cap).fetch_add(1, Ordering::Relaxed);
    }

    /// How many connections were refused over `cap`.
    pub fn connections_refused(&self, cap: &str) -> u64 {
        self.refused_over(cap).load(Ordering::Relaxed)
    }

    /// The server closed a connection past a timeout (`tls_handshake`, `header_read`, `idle`).
    pub fn record_connection_closed(&self, timeout: &str) {
        self.closed_past(timeout).fetch_add(1, Ordering::Relaxed);
    }

    /// How many connections were closed past `timeout`.
    pub fn connections_closed(&self, timeout: &str) -> u64 {
        self.closed_past(timeout).load(Ordering::Relaxed)
    }

    /// `accept()` failed (out of file descriptors, …).
    pub fn record_accept_error(&self) {
        self.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = |out: &mut String, name: &str, help: &str, f: &Family<AtomicU64>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (labels, v) in f.snapshot() {
                let _ = writeln!(out, "{name}{{{labels}}} {}", v.load(Ordering::Relaxed));
            }
        };
        let histograms = |out: &mut String, name: &str, help: &str, f: &Family<Histogram>| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (labels, h) in f.snapshot() {
                h.render(out, name, &labels);
            }
        };
        counters(
            &mut out,
            "redeploy_management_sessions_total",
            "Management session messages handled, by outcome.",
            &self.sessions,
        );
        histograms(
            &mut out,
            "redeploy_management_session_duration_seconds",
            "Time to handle one management session message, by outcome.",
            &self.session_duration,
        );
        counters(
            &mut out,
            "redeploy_commands_total",
            "Device command state transitions, by the state entered.",
            &self.commands,
        );
        counters(
            &mut out,
            "redeploy_enrollment_requests_total",
            "Enrollment service requests, by service and outcome (ok or SOAP fault subcode).",
            &self.enrollment_requests,
        );
        histograms(
            &mut out,
            "redeploy_http_request_duration_seconds",
            "HTTP request latency, by route.",
            &self.http_duration,
        );
        counters(
            &mut out,
            "redeploy_worker_ticks_total",
            "Background worker ticks, by outcome (ok or error).",
            &self.worker_ticks,
        );
        counters(
            &mut out,
            "redeploy_connections_refused_total",
            "Connections closed as soon as accepted, by the cap they were over.",
            &self.connections_refused,
        );
        counters(
            &mut out,
            "redeploy_connections_closed_total",
            "Connections the server closed past a timeout, by timeout.",
            &self.connections_closed,
        );
        let _ = writeln!(
            out,
            "# HELP redeploy_connections_open Connections open now.\n# TYPE redeploy_connections_open gauge\nredeploy_connections_open {}",
            self.connections_open()
        );
        for (name, help, value) in [
            (
                "redeploy_accept_errors_total",
                "Failed accept() calls (e.g. out of file descriptors); each backs off.",
                &self.accept_errors,
            ),
            (
                "redeploy_actions_expired_total",
                "Actions the worker expired after no progress.",
                &self.actions_expired,
            ),
            (
                "redeploy_waves_released_total",
                "Waves of batches the worker released.",
                &self.waves_released,
            ),
            (
                "redeploy_schedules_fired_total",
                "Schedules the worker fired.",
                &self.schedules_fired,
            ),
            (
                "redeploy_webhooks_delivered_total",
                "Webhook deliveries a receiver accepted.",
                &self.webhooks_delivered,
            ),
            (
                "redeploy_trail_dropped_total",
                "Support-trail messages dropped because the write buffer was full.",
                &self.trail_dropped,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.record_enrollment("enrollment", "ok");
        m.record_enrollment("enrollment", "ok");
        m.record_enrollment("policy", "Authentication");
        m.record_request("/healthz", Duration::from_millis(3));
        m.record_request("/healthz", Duration::from_secs(20));
        m.record_session("ok", Duration::from_millis(40));
        m.record_command("sent", 3);
        m.connection_opened();
        m.connection_opened();
        m.connection_ended();
        m.record_connection_refused("per_ip");
        m.record_connection_closed("idle");
        m.record_connection_closed("idle");
        let text = m.render();
        assert!(text.contains("redeploy_connections_open 1\n"), "{text}");
        assert!(text.contains("redeploy_connections_refused_total{cap=\"per_ip\"} 1"));
        assert!(text.contains("redeploy_connections_closed_total{timeout=\"idle\"} 2"));
        assert!(text.contains("redeploy_accept_errors_total 0"));
        assert!(text.contains(
            "redeploy_enrollment_requests_total{service=\"enrollment\",outcome=\"ok\"} 2"
        ));
        assert!(text.contains(
            "redeploy_enrollment_requests_total{service=\"policy\",outcome=\"Authentication\"} 1"
        ));
        assert!(text.contains(
            "redeploy_http_request_duration_seconds_bucket{endpoint=\"/healthz\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "redeploy_http_request_duration_seconds_bucket{endpoint=\"/healthz\",le=\"10\"} 1"
        ));
        assert!(text.contains(
            "redeploy_http_request_duration_seconds_bucket{endpoint=\"/healthz\",le=\"+Inf\"} 2"
        ));
        assert!(
            text.contains("redeploy_http_request_duration_seconds_count{endpoint=\"/healthz\"} 2")
        );
        assert!(text.contains("redeploy_management_sessions_total{outcome=\"ok\"} 1"));
        assert!(text.contains("redeploy_commands_total{state=\"sent\"} 3"));
        assert_eq!(m.enrollment_count("enrollment", "ok"), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.record_session("a\"b\\c\nd", Duration::ZERO);
        assert!(m
            .render()
            .contains("redeploy_management_sessions_total{outcome=\"a\\\"b\\\\c\\nd\"} 1"));
    }
}
