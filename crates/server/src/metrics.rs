//! Prometheus metrics through the Prometheus project's `prometheus-client`: management sessions
//! by outcome, command state transitions, enrollment outcomes, request latency per endpoint and
//! connections (open, refused, closed by a timeout), rendered in the OpenMetrics text format
//! (which Prometheus scrapes natively) on `GET /metrics`. The registry belongs to one server
//! (not a process-wide global), so servers started side by side in one test process keep their
//! own counts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

/// The content type of [`Metrics::render`]'s text (OpenMetrics 1.0).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// A family of latency histograms, one per label set.
type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

fn latencies<L: Clone + std::hash::Hash + Eq>() -> Latencies<L> {
    Family::new_with_constructor(latency_histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandState {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnrollmentOutcome {
    service: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cap {
    cap: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Timeout {
    timeout: String,
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
/// The fields are handles of what `registry` holds (clones of a metric share its value).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sessions: Family<Outcome, Counter>,
    session_duration: Latencies<Outcome>,
    commands: Family<CommandState, Counter>,
    enrollment_requests: Family<EnrollmentOutcome, Counter>,
    http_duration: Latencies<Endpoint>,
    worker_ticks: Family<Outcome, Counter>,
    actions_expired: Counter,
    waves_released: Counter,
    schedules_fired: Counter,
    webhooks_delivered: Counter,
    trail_dropped: Counter,
    connections_open: Gauge,
    connections_refused: Family<Cap, Counter>,
    connections_closed: Family<Timeout, Counter>,
    accept_errors: Counter,
}

/// Registers `metric` in `registry` under `name` with `help`, and hands back the caller's handle.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    /// A counter's name is given without `_total` (the encoder appends it, as OpenMetrics
    /// wants), and each help text without its full stop (the registry appends it). The
    /// exposition lists the metrics in this order.
    fn default() -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        Metrics {
            sessions: registered(
                r,
                "redeploy_management_sessions",
                "Management session messages handled, by outcome",
                Family::default(),
            ),
            session_duration: registered(
                r,
                "redeploy_management_session_duration_seconds",
                "Time to handle one management session message, by outcome",
                latencies(),
            ),
            commands: registered(
                r,
                "redeploy_commands",
                "Device command state transitions, by the state entered",
                Family::default(),
            ),
            enrollment_requests: registered(
                r,
                "redeploy_enrollment_requests",
                "Enrollment service requests, by service and outcome (ok or SOAP fault subcode)",
                Family::default(),
            ),
            http_duration: registered(
                r,
                "redeploy_http_request_duration_seconds",
                "HTTP request latency, by route",
                latencies(),
            ),
            worker_ticks: registered(
                r,
                "redeploy_worker_ticks",
                "Background worker ticks, by outcome (ok or error)",
                Family::default(),
            ),
            connections_refused: registered(
                r,
                "redeploy_connections_refused",
                "Connections closed as soon as accepted, by the cap they were over",
                Family::default(),
            ),
            connections_closed: registered(
                r,
                "redeploy_connections_closed",
                "Connections the server closed past a timeout, by timeout",
                Family::default(),
            ),
            connections_open: registered(
                r,
                "redeploy_connections_open",
                "Connections open now",
                Gauge::default(),
            ),
            accept_errors: registered(
                r,
                "redeploy_accept_errors",
                "Failed accept() calls (e.g. out of file descriptors); each backs off",
                Counter::default(),
            ),
            actions_expired: registered(
                r,
                "redeploy_actions_expired",
                "Actions the worker expired after no progress",
                Counter::default(),
            ),
            waves_released: registered(
                r,
                "redeploy_waves_released",
                "Waves of batches the worker released",
                Counter::default(),
            ),
            schedules_fired: registered(
                r,
                "redeploy_schedules_fired",
                "Schedules the worker fired",
                Counter::default(),
            ),
            webhooks_delivered: registered(
                r,
                "redeploy_webhooks_delivered",
                "Webhook deliveries a receiver accepted",
                Counter::default(),
            ),
            trail_dropped: registered(
                r,
                "redeploy_trail_dropped",
                "Support-trail messages dropped because the write buffer was full",
                Counter::default(),
            ),
            registry,
        }
    }
}

impl Metrics {
    /// One management session (or session message) ended with `outcome` (e.g. `ok`,
    /// `unauthenticated`, `bad_message`, `store_error`) after `duration`.
    pub fn record_session(&self, outcome: &str, duration: Duration) {
        let labels = Outcome {
            outcome: outcome.to_owned(),
        };
        self.sessions.get_or_create(&labels).inc();
        self.session_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    /// `count` device commands moved into `state` (e.g. `sent`, `acknowledged`, `failed`).
    pub fn record_command(&self, state: &str, count: u64) {
        self.commands
            .get_or_create(&CommandState {
                state: state.to_owned(),
            })
            .inc_by(count);
    }

    fn enrollment(&self, service: &str, outcome: &str) -> EnrollmentOutcome {
        EnrollmentOutcome {
            service: service.to_owned(),
            outcome: outcome.to_owned(),
        }
    }

    /// An enrollment service request (`discovery`, `policy`, `enrollment`) ended with
    /// `outcome`: `ok` or the SOAP fault subcode (`MessageFormat`, `Authentication`, …).
    pub fn record_enrollment(&self, service: &str, outcome: &str) {
        self.enrollment_requests
            .get_or_create(&self.enrollment(service, outcome))
            .inc();
    }

    /// The number of enrollment requests recorded for (`service`, `outcome`).
    pub fn enrollment_count(&self, service: &str, outcome: &str) -> u64 {
        self.enrollment_requests
            .get(&self.enrollment(service, outcome))
            .map_or(0, |c| c.get())
    }

    /// One HTTP request to `endpoint` (the route pattern, not the raw path) took `duration`.
    pub fn record_request(&self, endpoint: &str, duration: Duration) {
        self.http_duration
            .get_or_create(&Endpoint {
                endpoint: endpoint.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// One background worker tick ended with `outcome` (`ok` or `error`), having expired,
    /// released and fired this many (see [`TickReport`]).
    pub fn record_tick(&self, outcome: &str, report: &TickReport) {
        self.worker_ticks
            .get_or_create(&Outcome {
                outcome: outcome.to_owned(),
            })
            .inc();
        let add = |c: &Counter, n: usize| c.inc_by(n as u64);
        add(&self.actions_expired, report.expired);
        add(&self.waves_released, report.waves_released);
        add(&self.schedules_fired, report.schedules_fired);
        add(&self.webhooks_delivered, report.webhooks_delivered);
    }

    /// `count` support-trail messages were dropped because the write buffer was full.
    pub fn record_trail_dropped(&self, count: u64) {
        self.trail_dropped.inc_by(count);
    }

    /// A connection was accepted and admitted (see [`Self::connection_ended`]).
    pub fn connection_opened(&self) {
        self.connections_open.inc();
    }

    /// An admitted connection ended, however it ended.
    pub fn connection_ended(&self) {
        // Never below zero, even if a caller pairs these wrongly.
        let _ =
            self.connections_open
                .inner()
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n > 0).then(|| n - 1)
                });
    }

    /// Connections open now.
    pub fn connections_open(&self) -> u64 {
        u64::try_from(self.connections_open.get()).unwrap_or(0)
    }

    /// A connection was closed as soon as it was accepted, over a cap (`max_connections`,
    /// `max_connections_per_ip`).
    pub fn record_connection_refused(&self, cap: &str) {
        self.connections_refused
            .get_or_create(&Cap {
                cap: cap.to_owned(),
            })
            .inc();
    }

    /// How many connections were refused over `cap`.
    pub fn connections_refused(&self, cap: &str) -> u64 {
        self.connections_refused
            .get(&Cap {
                cap: cap.to_owned(),
            })
            .map_or(0, |c| c.get())
    }

    /// The server closed a connection past a timeout (`tls_handshake`, `header_read`, `idle`).
    pub fn record_connection_closed(&self, timeout: &str) {
        self.connections_closed
            .get_or_create(&Timeout {
                timeout: timeout.to_owned(),
            })
            .inc();
    }

    /// How many connections were closed past `timeout`.
    pub fn connections_closed(&self, timeout: &str) -> u64 {
        self.connections_closed
            .get(&Timeout {
                timeout: timeout.to_owned(),
            })
            .map_or(0, |c| c.get())
    }

    /// `accept()` failed (out of file descriptors, …).
    pub fn record_accept_error(&self) {
        self.accept_errors.inc();
    }

    /// The OpenMetrics text exposition of every series ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
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
        assert!(text.contains("\nredeploy_connections_open 1\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE redeploy_http_request_duration_seconds histogram\n"));
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
            "redeploy_http_request_duration_seconds_bucket{le=\"0.005\",endpoint=\"/healthz\"} 1"
        ));
        assert!(text.contains(
            "redeploy_http_request_duration_seconds_bucket{le=\"10.0\",endpoint=\"/healthz\"} 1"
        ));
        assert!(text.contains(
            "redeploy_http_request_duration_seconds_bucket{le=\"+Inf\",endpoint=\"/healthz\"} 2"
        ));
        assert!(
            text.contains("redeploy_http_request_duration_seconds_count{endpoint=\"/healthz\"} 2")
        );
        assert!(text.contains("redeploy_management_sessions_total{outcome=\"ok\"} 1"));
        assert!(text.contains("redeploy_commands_total{state=\"sent\"} 3"));
        assert_eq!(m.enrollment_count("enrollment", "ok"), 2);
        assert_eq!(m.enrollment_count("discovery", "ok"), 0);
        assert_eq!(m.connections_closed("idle"), 2);
        assert_eq!(m.connections_refused("per_ip"), 1);
        m.connection_ended();
        m.connection_ended();
        assert_eq!(m.connections_open(), 0, "never below zero");
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
