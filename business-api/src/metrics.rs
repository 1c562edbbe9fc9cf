//! Prometheus metrics of the business API, through typed helpers. Everything lives in one
//! [`Metrics`] value (no global registry), served on the business listener's `/metrics`.
//! Every name is prefixed `courier_business_`.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    accepted: IntCounter,
    sent: IntCounter,
    send_latency: Histogram,
    inbound: IntCounter,
    statuses: IntCounterVec,
    webhook_attempts: IntCounterVec,
    webhook_latency: Histogram,
    dead_letters: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("courier_business".into()), None)
            .unwrap_or_else(|_| Registry::new());
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(c.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(c.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            c
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
            )
            .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            registry
                .register(Box::new(h.clone()))
                .unwrap_or_else(|e| panic!("metric {name}: {e}"));
            h
        };
        Metrics {
            requests: counter_vec(
                "api_requests_total",
                "API answers by status class",
                "status",
            ),
            accepted: counter(
                "messages_accepted_total",
                "API messages accepted into the outbox",
            ),
            sent: counter(
                "messages_sent_total",
                "outbox messages the platform accepted (sent)",
            ),
            send_latency: histogram(
                "send_latency_seconds",
                "from API acceptance to the platform's sent acknowledgement",
            ),
            inbound: counter(
                "inbound_messages_total",
                "customer messages turned into webhooks",
            ),
            statuses: counter_vec(
                "statuses_total",
                "status webhooks queued by status",
                "status",
            ),
            webhook_attempts: counter_vec(
                "webhook_attempts_total",
                "webhook POSTs by result (ok, failed)",
                "result",
            ),
            webhook_latency: histogram("webhook_post_seconds", "duration of webhook POSTs"),
            dead_letters: counter("webhook_dead_letters_total", "webhooks given up on"),
            registry,
        }
    }

    pub fn request(&self, status: u16) {
        let class = match status {
            200..=299 => "2xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests.with_label_values(&[class]).inc();
    }

    pub fn accepted(&self) {
        self.accepted.inc();
    }

    pub fn sent(&self, since_accepted: Duration) {
        self.sent.inc();
        self.send_latency.observe(since_accepted.as_secs_f64());
    }

    pub fn inbound(&self) {
        self.inbound.inc();
    }

    pub fn status(&self, status: &str) {
        self.statuses.with_label_values(&[status]).inc();
    }

    pub fn webhook_attempt(&self, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "failed" };
        self.webhook_attempts.with_label_values(&[result]).inc();
        self.webhook_latency.observe(took.as_secs_f64());
    }

    pub fn webhook_dead_lettered(&self) {
        self.dead_letters.inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
