//! The load engine: goose 0.19 runs the users (spawning, per-user HTTP clients, lifecycle);
//! apibench does the timing around each request itself.
//!
//! How goose is embedded: one scenario with one transaction, and the transaction *is* the user's
//! whole life: take a
//! slot from the shared [`Schedule`], wait for it with the user's own [`PreciseTimer`](crate::pacer::PreciseTimer) (a timerfd:
//! tens of µs, not tokio's 1 ms tick), send with the user's own
//! `reqwest` client (`user.client`), read the whole body, hand a [`Sample`] to its
//! [`UserRecorder`], repeat until the schedule (open) or the deadline (closed) is exhausted.
//!
//! The generator's own error is measured, never charged to the server: each send's *lag* (actual
//! send − the moment it could have gone, `max(due, user free)`) is recorded apart and subtracted
//! from the latency, which therefore counts the server's backlog (from the due time) but not
//! the generator's lateness. A probe task on the same runtime sleeps 1 ms at a time on a precise
//! timer and records how late it wakes: a CPU-starved generator shows there whatever the server
//! does.
//!
//! Open-model users grow: goose launches `max_users`, of which `users` start; when a user takes
//! a slot that is already overdue (every active user was busy), one more is activated, up to
//! the cap. Sends backlogged while all `max_users` were busy are flagged: the client, not the
//! server, limited the rate.
//! A user whose life is over reports on goose's `shutdown_channel` (what goose's own
//! `--iterations` does); once every user has, goose ends the attack. (`--iterations` itself is not
//! used: it prints "N users launched." on stdout unconditionally.) Goose calls the transaction
//! again until it stops the user; those calls return after a short sleep. `run_time` is only a
//! safety net. Goose's own metrics are off
//! (`no_metrics`): they would time requests from the actual send, which is exactly the
//! coordinated omission apibench exists to avoid, and cost CPU on the generator.
//!
//! Goose installs a Ctrl-C handler (the `ctrlc` crate) when an attack starts and exits the process
//! on a second Ctrl-C. The `apibench` binary installs its own handler first, so goose's
//! registration fails harmlessly; cancellation reaches the users through a `watch` channel.
//! Nothing outside this module knows goose exists.

pub mod workers;

use crate::pacer::PreciseTimer;
use crate::recorder::{Sample, UserRecorder, new_histogram, record_clamped};
use crate::scenario::{LoadModel, RequestSpec};
use crate::schedule::{self, Schedule, SchedulePlan};
use crate::template::{RenderContext, SharedTemplateState};
use goose::config::GooseConfiguration;
use goose::prelude::{GooseAttack, GooseUser, Scenario, Transaction, TransactionResult};
use hdrhistogram::Histogram;
use rand::Rng;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("goose could not start the load: {0}")]
    Goose(String),
    #[error("request `{name}`: `{method}` is not an HTTP method")]
    Method { name: String, method: String },
}

/// What one load phase does.
#[derive(Clone)]
pub struct LoadPlan {
    pub model: LoadModel,
    pub users: usize,
    /// Open model: the most users the load may grow to (≥ `users`); closed: ignored.
    pub max_users: usize,
    /// The `Accept-Encoding` header to send; `None`: no such header (identity).
    pub accept_encoding: Option<String>,
    pub timer: Timer,
    /// Open model: the schedule; closed model: only its warm-up and end offset are used.
    pub schedule: SchedulePlan,
    pub think_time: Duration,
    pub request_timeout: Duration,
    pub seed: u64,
    pub requests: Arc<Vec<RequestSpec>>,
    pub templates: Arc<SharedTemplateState>,
}

/// How sends wait for their due time.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    /// A timerfd per user ([`PreciseTimer`](crate::pacer::PreciseTimer)): tens of microseconds.
    #[default]
    Precise,
    /// tokio's timer wheel: rounds every sleep up to the next millisecond (the old behaviour).
    Tokio,
}

/// How the phase ended.
#[derive(Debug, Clone)]
pub struct EngineOutcome {
    pub started_at: Instant,
    pub ended_at: Instant,
    pub cancelled: bool,
    /// Users that ran (open model: grown from `users` up to `max_users`).
    pub users_started: usize,
    /// The most users busy with a request at once.
    pub peak_users_busy: usize,
    pub max_users: usize,
    /// How late the runtime probe woke from its 1 ms sleeps after the warm-up, µs.
    pub probe_lag: Histogram<u64>,
}

/// How long after the schedule's end overdue slots are still sent: the request timeout, at least
/// 2 s. Slots still unsent then are dropped and reported as such.
pub fn drain_grace(request_timeout: Duration) -> Duration {
    request_timeout.max(Duration::from_secs(2))
}

/// The probe's sleep: short enough to sample the runtime ~1000 times a second.
const PROBE_PERIOD: Duration = Duration::from_millis(1);

struct Shared {
    plan: LoadPlan,
    base_url: String,
    methods: Vec<reqwest::Method>,
    cumulative_weights: Vec<u64>,
    schedule: Schedule,
    next_user: AtomicU64,
    /// Users allowed to run (open model grows it up to `max_users`); `done` releases the rest.
    active: watch::Sender<Growth>,
    busy_users: AtomicUsize,
    peak_busy_users: AtomicUsize,
    max_users: usize,
    accept_encoding: Option<reqwest::header::HeaderValue>,
    sink: std::sync::Mutex<Option<mpsc::Sender<Vec<Sample>>>>,
    cancel: watch::Receiver<bool>,
    /// Goose users (by `weighted_users_index`) whose life is over.
    finished_users: std::sync::Mutex<std::collections::HashSet<usize>>,
}

/// Runs one load phase against `base_url` until the plan is done or `cancel` turns true.
/// Samples go to `sink`; it is dropped when every user has finished.
pub async fn run(
    plan: LoadPlan,
    base_url: &str,
    sink: mpsc::Sender<Vec<Sample>>,
    cancel: watch::Receiver<bool>,
    schedule_started: Option<tokio::sync::oneshot::Sender<Instant>>,
) -> Result<EngineOutcome, EngineError> {
    let methods = plan
        .requests
        .iter()
        .map(|r| {
            reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|_| EngineError::Method {
                name: r.name.clone(),
                method: r.method.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut total = 0u64;
    let cumulative_weights = plan
        .requests
        .iter()
        .map(|r| {
            total += u64::from(r.weight);
            total
        })
        .collect();
    let users = plan.users.max(1);
    let max_users = match plan.model {
        LoadModel::Open => plan.max_users.max(users),
        LoadModel::Closed => users,
    };
    let accept_encoding = plan
        .accept_encoding
        .as_deref()
        .and_then(|v| reqwest::header::HeaderValue::from_str(v).ok());
    let (active, _) = watch::channel(Growth {
        active: users,
        done: false,
    });
    let shared = Arc::new(Shared {
        schedule: Schedule::new(plan.schedule.clone()),
        active,
        busy_users: AtomicUsize::new(0),
        peak_busy_users: AtomicUsize::new(0),
        max_users,
        accept_encoding,
        plan,
        base_url: base_url.trim_end_matches('/').to_string(),
        methods,
        cumulative_weights,
        next_user: AtomicU64::new(0),
        sink: std::sync::Mutex::new(Some(sink)),
        cancel: cancel.clone(),
        finished_users: std::sync::Mutex::new(std::collections::HashSet::new()),
    });

    let for_users = Arc::clone(&shared);
    let transaction = Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let shared = Arc::clone(&for_users);
        Box::pin(async move {
            let index = user.weighted_users_index;
            let finished = shared
                .finished_users
                .lock()
                .map(|f| f.contains(&index))
                .unwrap_or(true);
            if finished {
                // Goose has not stopped this user yet; idle until it does.
                tokio::time::sleep(Duration::from_millis(20)).await;
            } else {
                user_life(&shared, user).await;
                if let Ok(mut f) = shared.finished_users.lock() {
                    f.insert(index);
                }
            }
            if let Some(channel) = &user.shutdown_channel {
                let _ = channel.send(index);
            }
            Ok(())
        }) as Pin<Box<dyn Future<Output = TransactionResult> + Send + '_>>
    }))
    .set_name("apibench");

    let mut configuration = GooseConfiguration::default();
    configuration.host = Some(shared.base_url.clone());
    configuration.users = Some(max_users);
    // All users within ~100 ms; the schedule, not goose, decides when requests go out.
    configuration.increase_rate = Some(format!("{}", (max_users * 10).max(100)));
    // A safety net only: the users end the attack when the schedule is done.
    let safety = shared.plan.schedule.end_offset()
        + drain_grace(shared.plan.request_timeout)
        + shared.plan.request_timeout
        + Duration::from_secs(30);
    configuration.run_time = Some(safety.as_secs().to_string());
    configuration.quiet = 1;
    configuration.no_metrics = true;
    configuration.no_print_metrics = true;
    configuration.no_error_summary = true;
    // Goose would otherwise open a telnet controller on a fixed port (5116); its WebSocket
    // controller is off by default in 0.19 (setting `no_websocket` only earns a warning).
    configuration.no_telnet = true;

    let attack = GooseAttack::initialize_with_config(configuration)
        .map_err(|e| EngineError::Goose(e.to_string()))?
        .register_scenario(Scenario::new("apibench").register_transaction(transaction));

    let started_watch = Arc::clone(&shared);
    let notify = tokio::spawn(async move {
        // Tell the caller when the schedule starts (the first user is ready).
        loop {
            if let Some(start) = started_watch.schedule.started_at() {
                if let Some(tx) = schedule_started {
                    let _ = tx.send(start);
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let probe = tokio::spawn(probe_runtime(Arc::clone(&shared)));
    let result = attack.execute().await;
    notify.abort();
    shared.active.send_modify(|g| g.done = true);
    let probe_lag = probe.await.unwrap_or_else(|_| new_histogram());
    // Every user has returned: drop the last sender so the collector can finish.
    if let Ok(mut sink) = shared.sink.lock() {
        sink.take();
    }
    result.map_err(|e| EngineError::Goose(e.to_string()))?;
    let ended_at = Instant::now();
    Ok(EngineOutcome {
        started_at: shared.schedule.started_at().unwrap_or(ended_at),
        ended_at,
        cancelled: *cancel.borrow(),
        users_started: shared.active.borrow().active.min(max_users),
        peak_users_busy: shared.peak_busy_users.load(Ordering::Relaxed),
        max_users,
        probe_lag,
    })
}

/// Users allowed to run, and whether the schedule is over (dormant users then leave).
#[derive(Debug, Clone, Copy)]
struct Growth {
    active: usize,
    done: bool,
}

/// The runtime probe: sleeps [`PROBE_PERIOD`] at a time on a precise timer on the users'
/// runtime and records how late it wakes, after the warm-up, until the users are done.
async fn probe_runtime(shared: Arc<Shared>) -> Histogram<u64> {
    let mut lag = new_histogram();
    let mut done = shared.active.subscribe();
    let warmup = shared.plan.schedule.warmup();
    let mut due = Instant::now() + PROBE_PERIOD;
    let mut timer = PreciseTimer::new();
    loop {
        tokio::select! {
            () = timer.sleep_until(due) => {}
            _ = done.wait_for(|g| g.done) => break,
        }
        let now = Instant::now();
        // The first user fixes the schedule's start; until then nothing is measured.
        let measured = shared
            .schedule
            .started_at()
            .is_some_and(|start| due >= start + warmup);
        if measured {
            record_clamped(&mut lag, micros(now.saturating_duration_since(due)));
        }
        // The next appointment from now: a late wake-up is not compounded.
        due = now + PROBE_PERIOD;
    }
    lag
}

/// One goose user, from its first request to its last.
async fn user_life(shared: &Shared, user: &mut GooseUser) {
    let Some(sink) = shared.sink.lock().ok().and_then(|s| s.clone()) else {
        return;
    };
    let mut recorder = UserRecorder::new(sink);
    let user_index = shared.next_user.fetch_add(1, Ordering::Relaxed);
    let mut cancel = shared.cancel.clone();
    // A dormant user (beyond `users`) waits until the load grows to it, or the schedule ends.
    let index = usize::try_from(user_index).unwrap_or(usize::MAX);
    if index >= shared.max_users {
        return;
    }
    let mut growth = shared.active.subscribe();
    tokio::select! {
        g = growth.wait_for(|g| g.active > index || g.done) => {
            if g.map(|g| g.done && g.active <= index).unwrap_or(true) {
                return;
            }
        }
        _ = cancel.wait_for(|c| *c) => return,
    }
    let mut render = RenderContext::new(
        shared.plan.seed,
        user_index,
        Arc::clone(&shared.plan.templates),
    );
    let client = user.client.clone();
    let mut timer = PreciseTimer::new();
    let start = shared.schedule.start();
    let warmup_end = start + shared.plan.schedule.warmup();
    let closed_deadline = start + shared.plan.schedule.end_offset();
    let give_up_at = closed_deadline + drain_grace(shared.plan.request_timeout);
    let mut path = String::with_capacity(128);
    let mut body = String::with_capacity(256);
    let mut url = String::with_capacity(256);
    let mut user_free_at = Instant::now();
    let mut first = true;

    loop {
        if *cancel.borrow() {
            break;
        }
        // When this request should go out, and from when its latency counts.
        let (due, in_warmup) = match shared.plan.model {
            LoadModel::Open => match shared.schedule.take() {
                Some(slot) => {
                    let now = Instant::now();
                    // Past the schedule's end by more than the grace: the rest of the backlog is
                    // dropped (counted as such), so an overloaded run still stops by itself.
                    if now > give_up_at {
                        shared.schedule.exhaust();
                        shared.active.send_modify(|g| g.done = true);
                        break;
                    }
                    // Overdue already: every active user was busy. Grow, up to the cap.
                    if schedule::is_backlogged(slot.due, now) {
                        shared.active.send_if_modified(|g| {
                            let grow = g.active < shared.max_users;
                            g.active += usize::from(grow);
                            grow
                        });
                    }
                    (slot.due, slot.in_warmup)
                }
                None => {
                    shared.active.send_modify(|g| g.done = true);
                    break;
                }
            },
            LoadModel::Closed => {
                let due = if first {
                    user_free_at
                } else {
                    user_free_at + shared.plan.think_time
                };
                if due >= closed_deadline {
                    break;
                }
                (due, due < warmup_end)
            }
        };
        first = false;
        if due > Instant::now() {
            let wait = async {
                match shared.plan.timer {
                    Timer::Precise => timer.sleep_until(due).await,
                    Timer::Tokio => tokio::time::sleep_until(due.into()).await,
                }
            };
            tokio::select! {
                () = wait => {}
                _ = cancel.wait_for(|c| *c) => break,
            }
        }
        let sent_at = Instant::now();
        let send_lag = schedule::send_lag(due, user_free_at, sent_at);
        let generator_late = send_lag > schedule::LATE_THRESHOLD;
        let backlogged =
            shared.plan.model == LoadModel::Open && schedule::is_backlogged(due, user_free_at);
        let backlogged_at_cap = backlogged && shared.active.borrow().active >= shared.max_users;
        let busy = shared.busy_users.fetch_add(1, Ordering::Relaxed) + 1;
        shared.peak_busy_users.fetch_max(busy, Ordering::Relaxed);

        let request_index = pick(&shared.cumulative_weights, &mut render);
        let Some(spec) = shared.plan.requests.get(request_index) else {
            break;
        };
        spec.path.render_into(&mut path, &mut render);
        url.clear();
        url.push_str(&shared.base_url);
        url.push_str(&path);
        let mut request = client
            .request(shared.methods[request_index].clone(), url.as_str())
            .timeout(shared.plan.request_timeout);
        if let Some(encoding) = &shared.accept_encoding {
            request = request.header(reqwest::header::ACCEPT_ENCODING, encoding.clone());
        }
        for (name, value) in &spec.headers {
            request = request.header(name, value);
        }
        if let Some(template) = &spec.body {
            template.render_into(&mut body, &mut render);
            if !spec
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("content-type"))
            {
                request = request.header(reqwest::header::CONTENT_TYPE, "application/json");
            }
            request = request.body(body.clone());
        }

        // Latency counts from the due time (open: a backlog behind a busy server is the
        // server's) or the actual send (closed) — never the generator's own send lag.
        let latency_origin = match shared.plan.model {
            LoadModel::Open => due + send_lag,
            LoadModel::Closed => sent_at,
        };
        let exchange = async {
            match request.send().await {
                Ok(response) => {
                    let headers_at = Instant::now();
                    let status = response.status().as_u16();
                    let body_ok = response.bytes().await;
                    (Some(headers_at), status, body_ok.err())
                }
                Err(error) => (None, 0, Some(error)),
            }
        };
        let outcome = tokio::select! {
            outcome = exchange => Some(outcome),
            // Ctrl-C: drop the in-flight request; what completed so far is kept.
            _ = cancel.wait_for(|c| *c) => None,
        };
        shared.busy_users.fetch_sub(1, Ordering::Relaxed);
        let Some((headers_at, status, error)) = outcome else {
            break;
        };
        let completed_at = Instant::now();
        let timed_out = error.as_ref().is_some_and(reqwest::Error::is_timeout);
        let status_ok = match spec.expect_status {
            Some(expected) => status == expected,
            None => (200..300).contains(&status),
        };
        recorder.push(Sample {
            request: u16::try_from(request_index).unwrap_or(u16::MAX),
            latency_us: micros(completed_at.saturating_duration_since(latency_origin)),
            ttfb_us: headers_at.map(|at| micros(at.saturating_duration_since(latency_origin))),
            completed_offset_us: micros(completed_at.saturating_duration_since(start)),
            sent_offset_us: micros(sent_at.saturating_duration_since(start)),
            status,
            error: error.is_some() || !status_ok,
            timed_out,
            in_warmup,
            generator_late,
            backlogged,
            backlogged_at_cap,
            send_lag_us: micros(send_lag),
            service_us: micros(completed_at.saturating_duration_since(sent_at)),
        });
        user_free_at = completed_at;
    }
    recorder.flush();
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Weighted pick of a request index.
fn pick(cumulative_weights: &[u64], render: &mut RenderContext) -> usize {
    let total = cumulative_weights.last().copied().unwrap_or(1).max(1);
    if cumulative_weights.len() <= 1 {
        return 0;
    }
    let x = render.rng.gen_range(0..total);
    cumulative_weights.partition_point(|w| *w <= x)
}
