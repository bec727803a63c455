//! A small closed-loop load generator: N concurrent callers issue one call after another for a
//! fixed time; latencies go into an HDR histogram. Used by the benchmarks, which always report a
//! figure beside the ceiling measured on the same machine in the same run, and by the drills.
//!
//! A run is either one kind of call ([`run`]), a weighted [`Mix`] of kinds ([`run_mix`]),
//! each kind with its own histogram and the run's total beside them, or several targets
//! measured in turns so that their ratios come from the same stretch of time
//! ([`Interleaved`]). [`Samples`] times a step inside a call (e.g. `CreateOrder` within a
//! whole purchase).

use std::{
    fmt::Display,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

/// What one load run (or one kind of call in a mix) measured.
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
    /// The first error seen, to say why calls failed without flooding the output.
    pub first_error: Option<String>,
}

impl LoadReport {
    fn from_histogram(label: &str, histogram: &Histogram<u64>, ok: u64, errors: u64, secs: f64) -> Self {
        Self {
            label: label.to_owned(),
            rps: ok as f64 / secs,
            errors,
            ok,
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
            first_error: None,
        }
    }

    /// Requests per second as a percentage of `base`'s.
    pub fn percent_of(&self, base: &LoadReport) -> f64 {
        100.0 * self.rps / base.rps
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<58} {:>8.0} req/s  p50 {:>7} µs  p90 {:>7} µs  p99 {:>7} µs  max {:>8} µs  errors {}",
            self.label, self.rps, self.p50_us, self.p90_us, self.p99_us, self.max_us, self.errors
        )?;
        if let Some(error) = &self.first_error {
            write!(f, " (first: {error})")?;
        }
        Ok(())
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes: a purchase under faults can take tens of seconds.
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1)
}

type BoxCall = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// A weighted mix of calls: each caller picks the next kind at random in proportion to the
/// weights (a fixed-seed generator per caller, so runs are comparable).
#[derive(Clone, Default)]
pub struct Mix {
    kinds: Vec<(String, u32, BoxCall)>,
}

impl std::fmt::Debug for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<_> = self
            .kinds
            .iter()
            .map(|(label, weight, _)| (label, weight))
            .collect();
        f.debug_struct("Mix").field("kinds", &kinds).finish()
    }
}

impl Mix {
    /// An empty mix.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind of call with its relative `weight`.
    pub fn with<F, Fut, T, E>(mut self, label: &str, weight: u32, call: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Display,
    {
        let call: BoxCall = Arc::new(move || {
            let fut = call();
            Box::pin(async move { fut.await.map(|_| ()).map_err(|err| err.to_string()) })
        });
        self.kinds.push((label.to_owned(), weight, call));
        self
    }

    fn pick(&self, roll: u64) -> usize {
        let total: u64 = self.kinds.iter().map(|(_, w, _)| u64::from(*w)).sum();
        let mut point = roll % total.max(1);
        for (i, (_, weight, _)) in self.kinds.iter().enumerate() {
            if point < u64::from(*weight) {
                return i;
            }
            point -= u64::from(*weight);
        }
        0
    }
}

/// What a mixed run measured: every kind, and all calls together.
#[derive(Debug, Clone)]
pub struct MixReport {
    /// All calls.
    pub total: LoadReport,
    /// One report per kind, in the order they were added.
    pub kinds: Vec<LoadReport>,
}

/// One caller's tallies: per kind, (histogram, ok, errors, first error).
type Tally = Vec<(Histogram<u64>, u64, u64, Option<String>)>;

/// Drives `mix` from `concurrency` callers for `warmup` (not measured) then `duration`.
async fn drive(concurrency: usize, warmup: Duration, duration: Duration, mix: &Mix) -> Tally {
    assert!(!mix.kinds.is_empty(), "a mix needs at least one kind of call");
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..concurrency {
        let mix = mix.clone();
        callers.spawn(async move {
            // xorshift64*, seeded per caller: cheap, deterministic, good enough to pick kinds.
            let mut state =
                0x9E37_79B9_7F4A_7C15_u64 ^ (caller as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut tally: Tally = mix.kinds.iter().map(|_| (histogram(), 0, 0, None)).collect();
            loop {
                let began = Instant::now();
                if began >= stop_at {
                    break;
                }
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let kind = mix.pick(state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11);
                let result = (mix.kinds[kind].2)().await;
                if began < measure_from {
                    continue;
                }
                let (histogram, ok, errors, first_error) = &mut tally[kind];
                histogram.saturating_record(micros(began.elapsed()));
                match result {
                    Ok(()) => *ok += 1,
                    Err(err) => {
                        *errors += 1;
                        first_error.get_or_insert(err);
                    }
                }
            }
            tally
        });
    }
    let mut merged: Tally = mix.kinds.iter().map(|_| (histogram(), 0, 0, None)).collect();
    while let Some(joined) = callers.join_next().await {
        merge(&mut merged, joined.expect("caller task"));
    }
    merged
}

fn merge(into: &mut Tally, from: Tally) {
    for (into, from) in into.iter_mut().zip(from) {
        into.0.add(&from.0).expect("same bounds");
        into.1 += from.1;
        into.2 += from.2;
        if into.3.is_none() {
            into.3 = from.3;
        }
    }
}

/// Runs `mix` from `concurrency` callers for `warmup` (not measured) then `duration`.
pub async fn run_mix(
    label: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    mix: Mix,
) -> MixReport {
    let merged = drive(concurrency, warmup, duration, &mix).await;
    let secs = duration.as_secs_f64();
    let mut all = histogram();
    let (mut ok, mut errors, mut first_error) = (0, 0, None);
    let kinds = mix
        .kinds
        .iter()
        .zip(merged)
        .map(|((kind, _, _), (h, o, e, first))| {
            all.add(&h).expect("same bounds");
            ok += o;
            errors += e;
            if first_error.is_none() {
                first_error.clone_from(&first);
            }
            LoadReport {
                first_error: first,
                ..LoadReport::from_histogram(kind, &h, o, e, secs)
            }
        })
        .collect();
    MixReport {
        total: LoadReport {
            first_error,
            ..LoadReport::from_histogram(label, &all, ok, errors, secs)
        },
        kinds,
    }
}

/// Runs `call` from `concurrency` callers for `warmup` (not measured) then `duration`.
pub async fn run<F, Fut, T, E>(
    label: &str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> LoadReport
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Display,
{
    run_mix(
        label,
        concurrency,
        warmup,
        duration,
        Mix::new().with(label, 1, call),
    )
    .await
    .total
}

/// An open load: call `i` is due `i / rate` seconds after the start and its latency counts from
/// then, late or not, so a slow answer cannot hide by making callers wait. `callers` bounds the
/// calls in flight (a call is late when all are busy). Calls due in the first `warmup` are made
/// but not measured; the rate reported is the one achieved over the measured calls.
pub async fn paced<F, Fut, T, E>(
    label: &str,
    rate: f64,
    callers: usize,
    warmup: Duration,
    duration: Duration,
    call: F,
) -> LoadReport
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    E: Display,
{
    assert!(rate > 0.0, "a paced run needs a positive rate");
    let calls = ((warmup + duration).as_secs_f64() * rate).ceil() as u64;
    let warmup_calls = (warmup.as_secs_f64() * rate).ceil() as u64;
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let call = Arc::new(call);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (next, call) = (next.clone(), call.clone());
        tasks.spawn(async move {
            let mut tally = (histogram(), 0u64, 0u64, None::<String>);
            let mut last_done = start;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    break;
                }
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let result = call().await;
                if i < warmup_calls {
                    continue;
                }
                last_done = Instant::now();
                tally.0.saturating_record(micros(due.elapsed()));
                match result {
                    Ok(_) => tally.1 += 1,
                    Err(err) => {
                        tally.2 += 1;
                        tally.3.get_or_insert(err.to_string());
                    }
                }
            }
            (tally, last_done)
        });
    }
    let mut merged: Tally = vec![(histogram(), 0, 0, None)];
    let mut end = start;
    while let Some(joined) = tasks.join_next().await {
        let (tally, last_done) = joined.expect("caller task");
        merge(&mut merged, vec![tally]);
        end = end.max(last_done);
    }
    let (histogram, ok, errors, first_error) = merged.remove(0);
    let measured_from = start + Duration::from_secs_f64(warmup_calls as f64 / rate);
    let secs = end
        .saturating_duration_since(measured_from)
        .as_secs_f64()
        .max(f64::EPSILON);
    LoadReport {
        first_error,
        ..LoadReport::from_histogram(label, &histogram, ok, errors, secs)
    }
}

/// Several targets measured in turns: after one warm-up each, every round gives each target a
/// `slice` of load (its first tenth not measured), until each has had `duration`. A machine
/// whose speed drifts (other tenants, frequency scaling) then slows every target alike, so
/// the ratios between them hold even when the absolute figures move between runs.
#[derive(Clone, Default)]
pub struct Interleaved {
    targets: Vec<Mix>,
}

impl std::fmt::Debug for Interleaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.targets).finish()
    }
}

impl Interleaved {
    /// No targets yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a target.
    pub fn with<F, Fut, T, E>(mut self, label: &str, call: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Display,
    {
        self.targets.push(Mix::new().with(label, 1, call));
        self
    }

    /// Runs the rounds; one report per target, in the order they were added.
    pub async fn run(
        &self,
        concurrency: usize,
        warmup: Duration,
        duration: Duration,
        slice: Duration,
    ) -> Vec<LoadReport> {
        let settle = slice / 10;
        let measured = slice - settle;
        let rounds = duration.as_nanos().div_ceil(measured.as_nanos().max(1)).max(1);
        let rounds = u32::try_from(rounds).unwrap_or(u32::MAX);
        let mut tallies = Vec::new();
        for target in &self.targets {
            tallies.push(drive(concurrency, warmup, Duration::ZERO, target).await);
        }
        for _ in 0..rounds {
            for (target, tally) in self.targets.iter().zip(&mut tallies) {
                merge(tally, drive(concurrency, settle, measured, target).await);
            }
        }
        let secs = (measured * rounds).as_secs_f64();
        self.targets
            .iter()
            .zip(tallies)
            .map(|(target, mut tally)| {
                let (histogram, ok, errors, first_error) = tally.remove(0);
                LoadReport {
                    first_error,
                    ..LoadReport::from_histogram(&target.kinds[0].0, &histogram, ok, errors, secs)
                }
            })
            .collect()
    }
}

/// Latencies of one step inside a call (e.g. `CreateOrder` within a purchase), recorded from
/// `measure_from` on so that they cover the same window as the run's own figures.
#[derive(Debug, Clone)]
pub struct Samples {
    measure_from: Instant,
    histogram: Arc<Mutex<Histogram<u64>>>,
}

impl Samples {
    /// Samples that ignore the first `warmup`.
    pub fn after(warmup: Duration) -> Self {
        Self {
            measure_from: Instant::now() + warmup,
            histogram: Arc::new(Mutex::new(histogram())),
        }
    }

    /// Records a step that began at `began` and ends now.
    pub fn record_since(&self, began: Instant) {
        if began >= self.measure_from {
            let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
            histogram.saturating_record(micros(began.elapsed()));
        }
    }

    /// The recorded latencies as a report (rate over `duration`).
    pub fn report(&self, label: &str, duration: Duration) -> LoadReport {
        let histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        LoadReport::from_histogram(label, &histogram, histogram.len(), 0, duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paced_runs_hold_the_rate_and_count_lateness() {
        // 200 calls/s for 0.5 s measured; every call takes 20 ms, so 8 callers (up to 400
        // calls/s) keep up and 2 (at most 100/s) fall ever further behind.
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<_, String>(())
        };
        let (warmup, duration) = (Duration::from_millis(100), Duration::from_millis(500));
        let keeping_up = paced("keeping up", 200.0, 8, warmup, duration, slow).await;
        assert_eq!((keeping_up.ok, keeping_up.errors), (100, 0), "{keeping_up}");
        assert!((150.0..=230.0).contains(&keeping_up.rps), "{keeping_up}");
        let behind = paced("behind", 200.0, 2, warmup, duration, slow).await;
        assert_eq!(behind.ok, 100, "{behind}");
        assert!(behind.rps < 120.0, "{behind}");
        // The last calls were due ~0.5 s before they could start.
        assert!(
            behind.max_us > 300_000 && behind.p50_us > keeping_up.p99_us,
            "{behind} / {keeping_up}"
        );
    }

    #[tokio::test]
    async fn interleaved_targets_take_turns_round_by_round() {
        let log: Arc<Mutex<Vec<usize>>> = Arc::default();
        let mut targets = Interleaved::new();
        for target in 0..2 {
            let log = log.clone();
            targets = targets.with(&format!("target {target}"), move || {
                let log = log.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    log.lock().unwrap().push(target);
                    Ok::<_, String>(())
                }
            });
        }
        let slice = Duration::from_millis(100);
        let reports = targets
            .run(4, Duration::from_millis(50), Duration::from_millis(270), slice)
            .await;

        assert_eq!(reports.len(), 2);
        for (i, report) in reports.iter().enumerate() {
            assert_eq!(report.label, format!("target {i}"));
            assert!(report.ok > 0 && report.errors == 0, "{report}");
        }
        // 270 ms at 90 ms measured per turn is three rounds: with the warm-ups, runs of
        // 0 1 | 0 1 | 0 1 | 0 1. A run with no call at all (its task scheduled too late on a
        // loaded machine) merges its neighbours, hence six as the least.
        let log = log.lock().unwrap();
        let mut runs = log.clone();
        runs.dedup();
        assert!(
            (6..=8).contains(&runs.len()) && runs.iter().enumerate().all(|(i, t)| i % 2 == *t),
            "runs by target in time order: {runs:?}"
        );
    }
}
