//! In-process metrics: the proxy's own overhead (total request time minus the
//! time spent waiting on the upstream) and request counts, rendered in the
//! Prometheus text format at `GET /metrics`.
//!
//! Recording is a handful of relaxed atomic adds: no lock, no allocation.

use liter_llm_gateway::pipeline::Endpoint;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in microseconds. Dense below 1 ms, where a healthy proxy lives.
const BOUNDS_US: [u64; 16] = [
    5, 10, 20, 30, 40, 50, 75, 100, 150, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000,
];

pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn record(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let idx = BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str, header: bool) {
        if header {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
        }
        let mut cumulative = 0u64;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BOUNDS_US.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[BOUNDS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// Response status classes counted per route.
#[derive(Default)]
pub struct StatusCounts {
    by_class: [AtomicU64; 5],
}

impl StatusCounts {
    pub fn record(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.by_class
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// One route's figures.
#[derive(Default)]
pub struct RouteMetrics {
    pub overhead: Histogram,
    pub upstream: Histogram,
    pub status: StatusCounts,
}

/// Figures per model endpoint, indexed like [`Endpoint::ALL`].
#[derive(Default)]
pub struct Metrics {
    routes: [RouteMetrics; Endpoint::ALL.len()],
}

fn route_label(endpoint: Endpoint) -> String {
    format!("route=\"/v1{}\"", endpoint.path())
}

impl Metrics {
    pub fn route(&self, endpoint: Endpoint) -> &RouteMetrics {
        // ALL lists every variant once, so the position always exists.
        let i = Endpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or(0);
        &self.routes[i]
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Chat is always shown so dashboards have a series from the start; the
        // other routes appear once they have served a request.
        let shown: Vec<(Endpoint, &RouteMetrics)> = Endpoint::ALL
            .iter()
            .zip(self.routes.iter())
            .filter(|(e, r)| **e == Endpoint::ChatCompletions || r.status.total() > 0)
            .map(|(e, r)| (*e, r))
            .collect();
        for (i, (endpoint, r)) in shown.iter().enumerate() {
            r.overhead.render(
                &mut out,
                "liter_llm_overhead_seconds",
                "Time the proxy itself adds to a request: total time minus the time spent waiting on the upstream.",
                &route_label(*endpoint),
                i == 0,
            );
        }
        for (i, (endpoint, r)) in shown.iter().enumerate() {
            r.upstream.render(
                &mut out,
                "liter_llm_upstream_seconds",
                "Time spent waiting on the upstream, retries included (to response headers for streams).",
                &route_label(*endpoint),
                i == 0,
            );
        }
        let _ = writeln!(
            out,
            "# HELP liter_llm_requests_total Requests answered, by route and status class."
        );
        let _ = writeln!(out, "# TYPE liter_llm_requests_total counter");
        for (endpoint, r) in &shown {
            for (i, c) in r.status.by_class.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "liter_llm_requests_total{{{},status=\"{}xx\"}} {}",
                    route_label(*endpoint),
                    i + 1,
                    c.load(Ordering::Relaxed)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_count_matches() {
        let h = Histogram::default();
        h.record(Duration::from_micros(3));
        h.record(Duration::from_micros(45));
        h.record(Duration::from_secs(2));
        let mut out = String::new();
        h.render(&mut out, "x", "help", "", true);
        assert!(out.contains("x_bucket{le=\"0.000005\"} 1"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.00005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count 3"), "{out}");
        assert_eq!(h.count(), 3);
    }
}
