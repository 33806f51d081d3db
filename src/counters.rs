//! What the background threads of this process count (the outbox deliverers, the executor's
//! webhook calls, the execution worker's lease takeovers), for `GET /metrics`. A leaf
//! module: every layer may count here, and `web::metrics` gathers it. Figures are per
//! process (Prometheus sums them over the processes it scrapes).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, Opts, Registry};

struct Counters {
    registry: Registry,
    delivery: HistogramVec,
    takeovers: IntCounter,
}

fn counters() -> &'static Counters {
    static C: OnceLock<Counters> = OnceLock::new();
    C.get_or_init(|| {
        let registry = Registry::new();
        let delivery = HistogramVec::new(
            HistogramOpts::new(
                "countersign_delivery_duration_seconds",
                "Time one delivery attempt took, by channel (mail, hook, executor) and outcome (delivered, retry, refused)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["channel", "outcome"],
        )
        .expect("valid metric");
        let takeovers = IntCounter::with_opts(Opts::new(
            "countersign_lease_takeovers_total",
            "Executions this process's worker took over after another worker's lease expired",
        ))
        .expect("valid metric");
        registry
            .register(Box::new(delivery.clone()))
            .expect("registered once");
        registry
            .register(Box::new(takeovers.clone()))
            .expect("registered once");
        Counters {
            registry,
            delivery,
            takeovers,
        }
    })
}

/// One delivery attempt on `channel` (`mail`, `hook`, `executor`) that took `took`;
/// `outcome`: `delivered`, `retry` or `refused`.
pub fn delivery(channel: &str, outcome: &str, took: Duration) {
    counters()
        .delivery
        .with_label_values(&[channel, outcome])
        .observe(took.as_secs_f64());
}

/// The worker took over an execution whose lease another worker let expire.
pub fn lease_takeover() {
    counters().takeovers.inc();
}

pub fn gather() -> Vec<MetricFamily> {
    counters().registry.gather()
}
