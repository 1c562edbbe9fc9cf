//! Prometheus metrics, emitted through typed helpers rather than names scattered in the code.
//!
//! Everything lives in one [`Metrics`] value owned by the server (no global registry), so tests
//! running several servers in one process do not mix their figures.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// Kinds of frames, as label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Send,
    Ack,
    Receipt,
    Typing,
    Presence,
    Ping,
    Delivery,
    SendResult,
    QueueEmpty,
    Error,
    Other,
}

impl FrameKind {
    const ALL: [FrameKind; 11] = [
        FrameKind::Send,
        FrameKind::Ack,
        FrameKind::Receipt,
        FrameKind::Typing,
        FrameKind::Presence,
        FrameKind::Ping,
        FrameKind::Delivery,
        FrameKind::SendResult,
        FrameKind::QueueEmpty,
        FrameKind::Error,
        FrameKind::Other,
    ];

    /// A number for the kind on the cluster wire.
    pub fn code(self) -> u32 {
        FrameKind::ALL.iter().position(|k| *k == self).unwrap_or(10) as u32
    }

    /// The kind of a wire number (unknown numbers are `Other`).
    pub fn from_code(code: u32) -> FrameKind {
        FrameKind::ALL
            .get(code as usize)
            .copied()
            .unwrap_or(FrameKind::Other)
    }

    fn label(self) -> &'static str {
        match self {
            FrameKind::Send => "send",
            FrameKind::Ack => "ack",
            FrameKind::Receipt => "receipt",
            FrameKind::Typing => "typing",
            FrameKind::Presence => "presence",
            FrameKind::Ping => "ping",
            FrameKind::Delivery => "delivery",
            FrameKind::SendResult => "send_result",
            FrameKind::QueueEmpty => "queue_empty",
            FrameKind::Error => "error",
            FrameKind::Other => "other",
        }
    }
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    connections: IntGauge,
    connections_total: IntCounter,
    frames_in: IntCounterVec,
    frames_out: IntCounterVec,
    messages_in: IntCounter,
    messages_out: IntCounter,
    queued_entries: IntCounter,
    acked_entries: IntCounter,
    queue_depth: IntGauge,
    delivery_latency: Histogram,
    live_actors: IntGauge,
    gateway_errors: IntCounterVec,
    http_requests: IntCounterVec,
    group_messages: IntCounter,
    group_fan_out: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry =
            Registry::new_custom(Some("courier".into()), None).expect("the metric prefix is valid");
        let connections =
            IntGauge::new("connections", "Open gateway connections.").expect("valid metric");
        let connections_total = IntCounter::new(
            "connections_total",
            "Gateway connections accepted since start.",
        )
        .expect("valid metric");
        let frames_in = IntCounterVec::new(
            Opts::new("frames_in_total", "Gateway frames received, by kind."),
            &["kind"],
        )
        .expect("valid metric");
        let frames_out = IntCounterVec::new(
            Opts::new("frames_out_total", "Gateway frames sent, by kind."),
            &["kind"],
        )
        .expect("valid metric");
        let messages_in = IntCounter::new(
            "messages_in_total",
            "Messages accepted (acknowledged to the sender as sent).",
        )
        .expect("valid metric");
        let messages_out = IntCounter::new(
            "messages_out_total",
            "Queue entries pushed to devices (messages and receipts).",
        )
        .expect("valid metric");
        let queued_entries = IntCounter::new(
            "queue_entries_appended_total",
            "Entries appended to device queues.",
        )
        .expect("valid metric");
        let acked_entries = IntCounter::new(
            "queue_entries_acked_total",
            "Entries acknowledged by devices and removed from queues.",
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new(
            "queue_depth",
            "Entries waiting in device queues (counted at start and after each sweep, \
             kept current in between).",
        )
        .expect("valid metric");
        let delivery_latency = Histogram::with_opts(
            HistogramOpts::new(
                "delivery_latency_seconds",
                "From a message being queued to the recipient device acknowledging it.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 60.0, 600.0, 3600.0, 86400.0,
            ]),
        )
        .expect("valid metric");
        let live_actors =
            IntGauge::new("live_actors", "User actors currently active.").expect("valid metric");
        let gateway_errors = IntCounterVec::new(
            Opts::new(
                "gateway_errors_total",
                "Errors reported to devices, by code.",
            ),
            &["code"],
        )
        .expect("valid metric");
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP API answers, by status class."),
            &["status"],
        )
        .expect("valid metric");
        let group_messages = IntCounter::new(
            "group_messages_total",
            "Group messages accepted (each stored once).",
        )
        .expect("valid metric");
        let group_fan_out = IntCounter::new(
            "group_fan_out_entries_total",
            "Queue references written for group messages (one per member device).",
        )
        .expect("valid metric");
        for collector in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_total.clone()),
            Box::new(frames_in.clone()),
            Box::new(frames_out.clone()),
            Box::new(messages_in.clone()),
            Box::new(messages_out.clone()),
            Box::new(queued_entries.clone()),
            Box::new(acked_entries.clone()),
            Box::new(queue_depth.clone()),
            Box::new(delivery_latency.clone()),
            Box::new(live_actors.clone()),
            Box::new(gateway_errors.clone()),
            Box::new(http_requests.clone()),
            Box::new(group_messages.clone()),
            Box::new(group_fan_out.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        Metrics {
            registry,
            connections,
            connections_total,
            frames_in,
            frames_out,
            messages_in,
            messages_out,
            queued_entries,
            acked_entries,
            queue_depth,
            delivery_latency,
            live_actors,
            gateway_errors,
            http_requests,
            group_messages,
            group_fan_out,
        }
    }

    /// A group message stored once and referenced from `fan_out` device queues.
    pub fn group_message(&self, fan_out: u64) {
        self.group_messages.inc();
        self.group_fan_out.inc_by(fan_out);
        self.queued_entries.inc_by(fan_out);
        self.queue_depth
            .add(i64::try_from(fan_out).unwrap_or(i64::MAX));
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
        self.connections_total.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn frame_in(&self, kind: FrameKind) {
        self.frames_in.with_label_values(&[kind.label()]).inc();
    }

    pub fn frame_out(&self, kind: FrameKind) {
        self.frames_out.with_label_values(&[kind.label()]).inc();
    }

    pub fn message_accepted(&self) {
        self.messages_in.inc();
    }

    pub fn entries_queued(&self, count: u64) {
        self.queued_entries.inc_by(count);
        self.queue_depth
            .add(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn entry_pushed(&self) {
        self.messages_out.inc();
    }

    pub fn entries_acked(&self, count: u64) {
        self.acked_entries.inc_by(count);
        self.queue_depth
            .sub(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub fn set_queue_depth(&self, depth: u64) {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub fn delivery_latency(&self, seconds: f64) {
        self.delivery_latency.observe(seconds);
    }

    pub fn actor_started(&self) {
        self.live_actors.inc();
    }

    pub fn actor_stopped(&self) {
        self.live_actors.dec();
    }

    pub fn gateway_error(&self, code: &str) {
        self.gateway_errors.with_label_values(&[code]).inc();
    }

    pub fn http_answer(&self, status: u16) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_requests.with_label_values(&[class]).inc();
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
