//! What an operator watches: the worker's health and its Prometheus metrics (served by
//! [`crate::io::http`] on `/health` and `/metrics`).
//!
//! One [`Telemetry`] per process ([`global`]), the way Prometheus clients keep a default
//! registry: the code that sees an event (a job ending, a provider retrying, a tool
//! failing) records it where it happens, with no handle threaded through every layer.
//!
//! ```
//! use bella_vista::telemetry::{Telemetry, WorkerState};
//!
//! let telemetry = Telemetry::new();
//! telemetry.set_worker_state(WorkerState::Registered);
//! telemetry.provider_retried("llm");
//! let text = telemetry.encode();
//! assert!(text.contains("bella_vista_provider_retries_total{provider=\"llm\"} 1"));
//! ```

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::voice::metrics::TurnMetrics;

/// Where the worker stands with its LiveKit server: what `/health` answers from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Not serving calls: not a worker (console), or not yet registered.
    Connecting,
    /// Registered with the server and taking calls.
    Registered,
    /// Shutting down: finishing its calls, taking no new ones.
    Draining,
}

impl WorkerState {
    /// Whether an orchestrator should send it work (`/health` answers 200).
    pub fn is_healthy(self) -> bool {
        self == WorkerState::Registered
    }

    /// A word for the health answer.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Connecting => "connecting",
            WorkerState::Registered => "registered",
            WorkerState::Draining => "draining",
        }
    }
}

/// Labels of one metric series: `[("outcome", "failed")]`.
type Labels = Vec<(&'static str, &'static str)>;

/// Seconds, from a quick endpointing decision to a cold local model's first token.
const LATENCY_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0,
];

/// The process's metrics and health state.
pub struct Telemetry {
    registry: Registry,
    state: AtomicU8,
    calls_running: Gauge,
    calls_ended: Family<Labels, Counter>,
    worker_load: Gauge<f64, AtomicU64>,
    worker_cpu: Gauge<f64, AtomicU64>,
    end_of_utterance: Histogram,
    stt: Histogram,
    llm_first_token: Histogram,
    tts_first_byte: Histogram,
    turn: Histogram,
    tool_errors: Counter,
    provider_retries: Family<Labels, Counter>,
    orders: Family<Labels, Counter>,
    webhook_deliveries: Family<Labels, Counter>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("state", &self.worker_state())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Empty metrics, all registered under the `bella_vista_` prefix; state `Connecting`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bella_vista");
        let calls_running = Gauge::default();
        registry.register(
            "calls_running",
            "Calls in progress on this worker",
            calls_running.clone(),
        );
        let calls_ended = Family::<Labels, Counter>::default();
        registry.register(
            "calls",
            "Calls ended, by outcome (finished or failed)",
            calls_ended.clone(),
        );
        let worker_load = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "worker_load",
            "Load reported to the LiveKit server (0 to 1; no calls are sent at 0.7 or more)",
            worker_load.clone(),
        );
        let worker_cpu = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "worker_cpu",
            "Share of the CPU available to this worker that is in use (0 to 1)",
            worker_cpu.clone(),
        );
        let mut seconds = |name: &str, help: &str| {
            let histogram = Histogram::new(LATENCY_BUCKETS);
            registry.register_with_unit(name, help, Unit::Seconds, histogram.clone());
            histogram
        };
        let end_of_utterance = seconds(
            "end_of_utterance_delay",
            "Caller stopped speaking to turn committed (endpointing and transcription)",
        );
        let stt = seconds("stt", "Transcription request to transcript");
        let llm_first_token = seconds(
            "llm_first_token",
            "Turn committed to the model's first reply token",
        );
        let tts_first_byte = seconds("tts_first_byte", "First speech request to its first audio");
        let turn = seconds(
            "turn_latency",
            "Caller stopped speaking to the agent's first audio",
        );
        let tool_errors = Counter::default();
        registry.register(
            "tool_errors",
            "Tool calls that failed (bad arguments from the model, unknown dishes, a store error)",
            tool_errors.clone(),
        );
        let provider_retries = Family::<Labels, Counter>::default();
        registry.register(
            "provider_retries",
            "Requests to a model provider retried, by provider (llm, stt, tts)",
            provider_retries.clone(),
        );
        let orders = Family::<Labels, Counter>::default();
        registry.register(
            "orders",
            "Order confirmations, by outcome (stored, or failed: the database was unreachable)",
            orders.clone(),
        );
        let webhook_deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, failed: retried, parked: refused)",
            webhook_deliveries.clone(),
        );
        Telemetry {
            registry,
            state: AtomicU8::new(WorkerState::Connecting as u8),
            calls_running,
            calls_ended,
            worker_load,
            worker_cpu,
            end_of_utterance,
            stt,
            llm_first_token,
            tts_first_byte,
            turn,
            tool_errors,
            provider_retries,
            orders,
            webhook_deliveries,
        }
    }

    /// Where the worker stands with its server.
    pub fn worker_state(&self) -> WorkerState {
        match self.state.load(Ordering::Relaxed) {
            1 => WorkerState::Registered,
            2 => WorkerState::Draining,
            _ => WorkerState::Connecting,
        }
    }

    /// Records where the worker stands with its server.
    pub fn set_worker_state(&self, state: WorkerState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Records the calls in progress and the load reported for them.
    pub fn set_worker_load(&self, calls_running: usize, load: f32, cpu: f32) {
        self.calls_running
            .set(i64::try_from(calls_running).unwrap_or(i64::MAX));
        // Shares to four places: an f32's widening noise (0.699999988…) means nothing.
        let share = |value: f32| (f64::from(value) * 1e4).round() / 1e4;
        self.worker_load.set(share(load));
        self.worker_cpu.set(share(cpu));
    }

    /// Counts a call that ended: `Ok` if it ran to its end, `Err` if it failed.
    pub fn call_ended(&self, outcome: &Result<(), String>) {
        let outcome = if outcome.is_ok() {
            "finished"
        } else {
            "failed"
        };
        self.calls_ended
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    /// Adds one turn's latencies to the histograms (stages that did not happen are skipped).
    pub fn record_turn(&self, metrics: &TurnMetrics) {
        let stages = [
            (&self.end_of_utterance, metrics.end_of_utterance_delay),
            (&self.stt, metrics.stt),
            (&self.llm_first_token, metrics.llm_first_token),
            (&self.tts_first_byte, metrics.tts_first_byte),
            (&self.turn, metrics.end_to_end),
        ];
        for (histogram, took) in stages {
            if let Some(took) = took {
                histogram.observe(took.as_secs_f64());
            }
        }
    }

    /// Counts a tool call that failed.
    pub fn tool_failed(&self) {
        self.tool_errors.inc();
    }

    /// Counts a request to `provider` (`llm`, `stt`, `tts`) that is tried again.
    pub fn provider_retried(&self, provider: &'static str) {
        self.provider_retries
            .get_or_create(&vec![("provider", provider)])
            .inc();
    }

    /// Counts an order confirmation: `stored`, or `failed` (the database was unreachable).
    pub fn order_confirmed(&self, outcome: &'static str) {
        self.orders.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    /// Counts a webhook delivery attempt: `delivered`, `failed` or `parked`.
    pub fn webhook_attempted(&self, outcome: &'static str) {
        self.webhook_deliveries
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }

    /// The metrics in the OpenMetrics text format (what Prometheus scrapes).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Telemetry::encode`]'s text.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's telemetry.
pub fn global() -> &'static Telemetry {
    static GLOBAL: LazyLock<Telemetry> = LazyLock::new(Telemetry::new);
    &GLOBAL
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn health_is_good_only_while_registered() {
        let telemetry = Telemetry::new();
        assert_eq!(telemetry.worker_state(), WorkerState::Connecting);
        assert!(!telemetry.worker_state().is_healthy());
        telemetry.set_worker_state(WorkerState::Registered);
        assert!(telemetry.worker_state().is_healthy());
        telemetry.set_worker_state(WorkerState::Draining);
        assert!(!telemetry.worker_state().is_healthy());
    }

    #[test]
    fn calls_turns_and_load_show_in_the_text() {
        let telemetry = Telemetry::new();
        telemetry.call_ended(&Ok(()));
        telemetry.call_ended(&Ok(()));
        telemetry.call_ended(&Err("room vanished".into()));
        telemetry.set_worker_load(3, 0.5, 0.25);
        telemetry.record_turn(&TurnMetrics {
            end_to_end: Some(Duration::from_millis(850)),
            llm_first_token: Some(Duration::from_millis(300)),
            ..TurnMetrics::default()
        });
        telemetry.tool_failed();
        let text = telemetry.encode();
        for line in [
            "bella_vista_calls_total{outcome=\"finished\"} 2",
            "bella_vista_calls_total{outcome=\"failed\"} 1",
            "bella_vista_calls_running 3",
            "bella_vista_worker_load 0.5",
            "bella_vista_worker_cpu 0.25",
            "bella_vista_turn_latency_seconds_count 1",
            "bella_vista_turn_latency_seconds_bucket{le=\"1.0\"} 1",
            "bella_vista_turn_latency_seconds_bucket{le=\"0.75\"} 0",
            "bella_vista_llm_first_token_seconds_sum 0.3",
            "bella_vista_stt_seconds_count 0",
            "bella_vista_tool_errors_total 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
