//! A small closed-loop load generator: N concurrent callers issue one call after another for a
//! fixed time; latencies go into an HDR histogram. Used by the benchmarks, which always report a
//! figure beside the ceiling measured on the same machine in the same run.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// What was called.
    pub label: String,
    /// Completed calls per second.
    pub rps: f64,
    /// Calls that completed with an error.
    pub errors: u64,
    /// Calls that completed successfully.
    pub ok: u64,
    /// Latency percentiles, microseconds.
    pub p50_us: u64,
    /// 90th percentile, microseconds.
    pub p90_us: u64,
    /// 99th percentile, microseconds.
    pub p99_us: u64,
    /// Slowest call, microseconds.
    pub max_us: u64,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} {:>9.0} req/s  p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  max {:>7} µs  errors {}",
            self.label, self.rps, self.p50_us, self.p90_us, self.p99_us, self.max_us, self.errors
        )
    }
}

/// Runs `call` from `concurrency` callers for `warmup` (not measured) then `duration`.
pub async fn run<F, Fut, E>(
    label: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> LoadReport
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: Send,
{
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let call = call.clone();
        callers.spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let began = Instant::now();
                if began >= stop_at {
                    break;
                }
                let result = call().await;
                if began < measure_from {
                    continue;
                }
                let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
                match result {
                    Ok(()) => ok += 1,
                    Err(_) => errors += 1,
                }
            }
            (histogram, ok, errors)
        });
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut ok, mut errors) = (0, 0);
    while let Some(joined) = callers.join_next().await {
        let (histogram, o, e) = joined.expect("caller task");
        total.add(&histogram).expect("same bounds");
        ok += o;
        errors += e;
    }
    LoadReport {
        label: label.to_owned(),
        rps: ok as f64 / duration.as_secs_f64(),
        errors,
        ok,
        p50_us: total.value_at_quantile(0.50),
        p90_us: total.value_at_quantile(0.90),
        p99_us: total.value_at_quantile(0.99),
        max_us: total.max(),
    }
}
