//! The load engine: goose 0.19 runs the users (spawning, lifecycle; its HTTP client, one shared
//! by all, never sends); apibench sends, on each user's own connection, and times each request
//! itself.
//!
//! How goose is embedded: one scenario with one transaction, and the transaction *is* the user's
//! whole life: take a
//! slot from its worker's lane of the shared [`Schedule`], wait for it on the worker's
//! [`GridPacer`] (one timerfd per worker: tens of µs, not tokio's 1 ms tick), send on the user's
//! own HTTP/1.1 connection ([`http`]), read the whole body, record a [`Sample`] into its worker's
//! [`WorkerRecorder`], repeat until the schedule (open) or the deadline (closed) is exhausted.
//!
//! Where users run: [`workers`] starts `generator_threads` single-threaded runtimes; goose's
//! user task spawns the user's life on worker `user mod N` and waits for it, so goose still owns
//! launching and stopping users while every request, timer and connection of a user stays on one
//! thread. Worker `w` takes slots `w, w + N, …` (its lane) and has its own growth, busy count,
//! cancellation copy and pacer: nothing on the send path is written by two threads.
//!
//! The generator's own error is measured, never charged to the server: each send's *lag* (actual
//! send − the moment it could have gone, `max(due, user free)`) is recorded apart and subtracted
//! from the latency, which therefore counts the server's backlog (from the due time) but not
//! the generator's lateness. A probe task on the same runtime sleeps 1 ms at a time on a precise
//! timer and records how late it wakes: a CPU-starved generator shows there whatever the server
//! does.
//!
//! Open-model users grow and shrink: goose launches `max_users`, of which `users` start; when a
//! user takes a slot that is already overdue while every other active user of its worker is in
//! a request, one more is activated, up to the cap (an overdue slot with users free is the
//! worker's own lateness, which more users would only worsen). Once the backlog is gone (no
//! growth for 100 ms, slots taken with time to spare), the worker halves its excess over
//! `max(users, 2 × busy + 1)` every 10 ms: the highest-numbered users retire after the request
//! in hand and rest, connection kept, until the load grows again. Slots go round-robin over the
//! active users, so without the shrink one stall of the server would spread the rest of the
//! run over every user it ever needed. Sends backlogged while all `max_users` were busy are
//! flagged: the client, not the server, limited the rate.
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
//!
//! What a user picks, by weight, is a *unit* ([`UnitSpec`]): top-level request `i` is unit `i`,
//! then each `[[flows]]` is one unit whose steps run in order. A slot (open model) or a turn
//! (closed) is one unit: its first step's latency counts from the slot's due time, every later
//! step's from the previous step's completion (its intended send time). A plain request — no
//! check, no extraction — is sent exactly as before: no capture of its answer, no variable,
//! no lookup by name (templates were resolved to indices at parse time). Flow variables live in
//! the user's [`RenderContext`]; data-file rows are drawn per iteration from the phase's shared
//! [`DataFeeds`]. When a `unique` data file with `on_exhausted = "stop"` runs out, no user takes
//! another slot, and [`EngineOutcome::stopped_early`] says why.

pub mod http;
pub mod workers;

use crate::flow::{self, Captured, DataFeeds};
use crate::pacer::GridPacer;
use crate::recorder::{Sample, Sink, WorkerRecorder, new_histogram, record_clamped};
use crate::scenario::{FlowSet, LoadModel, RequestSpec, UnitSpec};
use crate::schedule::{self, Schedule, SchedulePlan};
use crate::template::{RenderContext, SharedTemplateState};
use goose::config::GooseConfiguration;
use goose::prelude::{GooseAttack, GooseUser, Scenario, Transaction, TransactionResult};
use hdrhistogram::Histogram;
use rand::Rng;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use workers::{CpuList, Workers};

/// Why the engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("goose could not start the load: {0}")]
    Goose(String),
    #[error("request `{name}`: `{method}` is not an HTTP method")]
    Method { name: String, method: String },
    #[error("request `{name}`: {why}")]
    Request { name: String, why: String },
    #[error("target URL `{url}`: {why}")]
    Url { url: String, why: String },
    #[error(transparent)]
    Workers(#[from] workers::WorkerError),
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
    /// Worker threads (≥ 1; never more than `users`, so every worker has a user to start with).
    pub generator_threads: usize,
    /// Pin the workers to these CPUs.
    pub generator_cpus: Option<CpuList>,
    /// Open model: the schedule; closed model: only its warm-up and end offset are used.
    pub schedule: SchedulePlan,
    pub think_time: Duration,
    pub request_timeout: Duration,
    pub seed: u64,
    pub requests: Arc<Vec<RequestSpec>>,
    /// The units the weighted pick chooses from (requests, then flows) and the data files;
    /// empty units: one per request ([`FlowSet::for_requests`]).
    pub flows: Arc<FlowSet>,
    pub templates: Arc<SharedTemplateState>,
    /// Start the schedule at this instant instead of when the first user is ready (`--start-at`:
    /// shards on several machines begin together). Users connect before it and wait.
    pub start_at: Option<Instant>,
    /// `run --serve`: where the users busy are published, four times a second.
    pub live: Option<Arc<crate::live::LiveState>>,
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
    /// One timerfd per worker ([`GridPacer`](crate::pacer::GridPacer)): tens of microseconds.
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
    /// The most users busy with a request at once (the sum of each worker's peak: an upper
    /// bound when there are several workers).
    pub peak_users_busy: usize,
    pub max_users: usize,
    /// Worker threads that ran the users.
    pub generator_threads: usize,
    /// How late the runtime probes woke from their 1 ms sleeps after the warm-up, µs (every
    /// worker's probe in one histogram).
    pub probe_lag: Histogram<u64>,
    /// How late the phase's first send left after its due time, µs (a `--start-at` start's
    /// own error on this machine).
    pub first_send_late_us: Option<u64>,
    /// Why the users stopped before the schedule's end (`data file accounts exhausted after N
    /// rows`); `None`: they did not.
    pub stopped_early: Option<String>,
    /// Flow steps not sent after the warm-up because an earlier step of their iteration failed.
    pub flow_steps_skipped: u64,
    /// A scenario with flows: the units (slots) started after the warm-up, so that a rate of
    /// iterations can be compared with the requests they sent. `None` without flows (one
    /// request per slot).
    pub iterations_measured: Option<u64>,
}

/// How long after the schedule's end overdue slots are still sent: the request timeout, at least
/// 2 s. Slots still unsent then are dropped and reported as such.
pub fn drain_grace(request_timeout: Duration) -> Duration {
    request_timeout.max(Duration::from_secs(2))
}

/// The probe's sleep: short enough to sample the runtime ~1000 times a second.
const PROBE_PERIOD: Duration = Duration::from_millis(1);

/// The worker count a plan gets: at least one, at most one per user.
pub fn effective_threads(requested: usize, users: usize) -> usize {
    requested.clamp(1, users.max(1))
}

/// Users `0..total` are dealt round-robin to `workers`: how many worker `worker` gets.
fn dealt(total: usize, worker: usize, workers: usize) -> usize {
    if total > worker {
        (total - worker - 1) / workers + 1
    } else {
        0
    }
}

struct Shared {
    plan: LoadPlan,
    endpoint: http::Endpoint,
    requests: Vec<http::PreparedRequest>,
    /// Over the units of `flows`.
    cumulative_weights: Vec<u64>,
    flows: Arc<FlowSet>,
    /// This phase's data-file row counters.
    feeds: DataFeeds,
    /// Flow steps skipped after a failed step (after the warm-up).
    steps_skipped: AtomicU64,
    /// Per request: a failed check or extraction was logged once already.
    step_failure_warned: Vec<std::sync::atomic::AtomicBool>,
    schedule: Schedule,
    next_user: AtomicU64,
    /// One per worker thread.
    lanes: Vec<WorkerLane>,
    /// Goose users (by `weighted_users_index`) whose life is over.
    finished_users: std::sync::Mutex<std::collections::HashSet<usize>>,
    /// The first send's lateness after its due time, µs: set once, read once per request.
    first_send_late_us: std::sync::OnceLock<u64>,
}

/// What the users of one worker share: written by that worker's thread only.
struct WorkerLane {
    /// Users allowed to run on this worker (the open model grows it up to `max_users`); `done`
    /// releases the rest.
    growth: watch::Sender<Growth>,
    /// The users this worker starts with, and shrinks back to once a backlog is gone.
    base_users: usize,
    /// Per user of this worker: how [`WorkerLane::grow`] wakes it (and only it) when it is
    /// dormant. The end of the schedule is broadcast on `growth` instead (once).
    dormant: Box<[tokio::sync::Notify]>,
    /// The most users this worker may have.
    max_users: usize,
    busy_users: AtomicUsize,
    peak_busy_users: AtomicUsize,
    /// Flows only: units started after the warm-up by this worker's users.
    iterations_measured: AtomicU64,
    /// This worker's copy of the cancellation (a worker-local waiter list).
    cancel: watch::Sender<bool>,
    /// The worker's one timerfd for every precise wait on it (made on the worker's runtime by
    /// the first wait; `None` inside: no timerfd, tokio's timer instead).
    pacer: std::sync::OnceLock<Option<Arc<GridPacer>>>,
    /// The worker's recording: its users record inline (only this worker's thread locks it);
    /// taken and handed to the collector when the phase ends.
    recorder: std::sync::Mutex<Option<WorkerRecorder>>,
}

impl WorkerLane {
    /// One more user, up to the cap (the users ran out: a slot is overdue while every active
    /// user of this worker is in a request). Only the new user is woken: a broadcast would poll
    /// every dormant user on each growth — ~1 000 task polls per added user in a burst, just
    /// when the worker is busiest.
    fn grow(&self, now: Instant) {
        let mut woken = None;
        self.growth.send_if_modified(|g| {
            if g.active < self.max_users {
                woken = Some(g.active);
                g.active += 1;
                g.peak = g.peak.max(g.active);
                g.grown_at = Some(now);
            }
            false
        });
        if let Some(wake) = woken.and_then(|local| self.dormant.get(local)) {
            wake.notify_one();
        }
    }

    /// Gives back users a backlog made this worker grow, once it is gone: when a user takes a
    /// slot with time to spare, the worker has not grown for [`SHRINK_AFTER`] and not shrunk
    /// for [`SHRINK_EVERY`], half of the users above `max(base_users, 2 × busy + 1)` retire
    /// (the highest-numbered ones, each after the request it has in hand). Without it every
    /// stall of the server ratchets the worker up to `max_users` for the rest of the run, and
    /// slots go round-robin over all of them: measured here at 60 000/s, 12.9–14.0 µs of the
    /// generator's CPU per request on 341–1 024 grown users against 10.2–10.3 µs with the shrink
    /// (152–153 users at most, far fewer in between): cold sockets, cold user state. Retired users keep their connection and wake when the load grows again. Nobody
    /// is notified of a shrink: no dormant user's wait can end by it.
    fn maybe_shrink(&self, now: Instant, active: usize) {
        if active <= self.base_users {
            return;
        }
        let busy = self.busy_users.load(Ordering::Relaxed);
        let floor = self.base_users.max(2 * busy + 1);
        self.growth.send_if_modified(|g| {
            let calm = g
                .grown_at
                .is_none_or(|at| now.saturating_duration_since(at) >= SHRINK_AFTER);
            let rested = g
                .shrunk_at
                .is_none_or(|at| now.saturating_duration_since(at) >= SHRINK_EVERY);
            if g.active > floor && calm && rested {
                g.active -= (g.active - floor).div_ceil(2);
                g.shrunk_at = Some(now);
            }
            false
        });
    }

    /// Waits until `due` with the plan's timer (call on this lane's worker).
    async fn sleep_until(&self, timer: Timer, due: Instant) {
        let pacer = match timer {
            Timer::Precise => self.pacer.get_or_init(GridPacer::start).as_ref(),
            Timer::Tokio => None,
        };
        match pacer {
            Some(pacer) => pacer.sleep_until(due).await,
            None => tokio::time::sleep_until(due.into()).await,
        }
    }
}

/// Runs one load phase against `base_url` until the plan is done or `cancel` turns true.
/// Each worker records into its own recorder from `sink`; they (and `sink`) are handed back to
/// the collector when every user has finished.
pub async fn run(
    plan: LoadPlan,
    base_url: &str,
    sink: Sink,
    cancel: watch::Receiver<bool>,
    schedule_started: Option<tokio::sync::oneshot::Sender<Instant>>,
) -> Result<EngineOutcome, EngineError> {
    let endpoint = http::Endpoint::resolve(base_url).await?;
    let requests = plan
        .requests
        .iter()
        .map(|r| http::PreparedRequest::new(r, &endpoint, plan.accept_encoding.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let flows = if plan.flows.units.is_empty() {
        Arc::new(FlowSet::for_requests(&plan.requests))
    } else {
        Arc::clone(&plan.flows)
    };
    let mut total = 0u64;
    let cumulative_weights = flows
        .units
        .iter()
        .map(|u| {
            total += u64::from(u.weight);
            total
        })
        .collect();
    let feeds = DataFeeds::new(&flows.data_files, plan.schedule.shard_slice());
    let step_failure_warned = plan
        .requests
        .iter()
        .map(|_| std::sync::atomic::AtomicBool::new(false))
        .collect();
    let users = plan.users.max(1);
    let max_users = match plan.model {
        LoadModel::Open => plan.max_users.max(users),
        LoadModel::Closed => users,
    };
    let threads = effective_threads(plan.generator_threads, users);
    let workers = Workers::start(threads, plan.generator_cpus.as_ref())?;
    let lanes = (0..threads)
        .map(|w| {
            let (base_users, max_users) = (dealt(users, w, threads), dealt(max_users, w, threads));
            WorkerLane {
                growth: watch::channel(Growth::new(base_users)).0,
                base_users,
                dormant: (0..max_users).map(|_| tokio::sync::Notify::new()).collect(),
                max_users,
                busy_users: AtomicUsize::new(0),
                peak_busy_users: AtomicUsize::new(0),
                iterations_measured: AtomicU64::new(0),
                cancel: watch::channel(false).0,
                pacer: std::sync::OnceLock::new(),
                recorder: std::sync::Mutex::new(Some(sink.worker_recorder())),
            }
        })
        .collect();
    let schedule = Schedule::with_lanes(plan.schedule.clone(), threads);
    let start_delay = plan.start_at.map_or(Duration::ZERO, |at| {
        at.saturating_duration_since(Instant::now())
    });
    if let Some(at) = plan.start_at {
        schedule.set_start(at);
    }
    let shared = Arc::new(Shared {
        schedule,
        endpoint,
        requests,
        lanes,
        plan,
        cumulative_weights,
        flows,
        feeds,
        steps_skipped: AtomicU64::new(0),
        step_failure_warned,
        next_user: AtomicU64::new(0),
        finished_users: std::sync::Mutex::new(std::collections::HashSet::new()),
        first_send_late_us: std::sync::OnceLock::new(),
    });

    // Ctrl-C reaches each worker's own channel (a dropped sender is not a cancellation).
    let forward = {
        let shared = Arc::clone(&shared);
        let mut cancel = cancel.clone();
        tokio::spawn(async move {
            if cancel.wait_for(|c| *c).await.is_ok() {
                for lane in &shared.lanes {
                    lane.cancel.send_replace(true);
                }
            }
        })
    };

    let workers = Arc::new(workers);
    let for_users = Arc::clone(&shared);
    let for_spawn = Arc::clone(&workers);
    let transaction = Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let shared = Arc::clone(&for_users);
        let workers = Arc::clone(&for_spawn);
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
                // The user's life runs on its worker; goose's task only waits for it to end.
                let user_index = shared.next_user.fetch_add(1, Ordering::Relaxed);
                let worker = usize::try_from(user_index).unwrap_or(0) % workers.len();
                let life = user_life(Arc::clone(&shared), user_index);
                let _ = workers.handle(worker).spawn(life).await;
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
    configuration.host = Some(base_url.trim_end_matches('/').to_string());
    configuration.users = Some(max_users);
    // All users within ~100 ms; the schedule, not goose, decides when requests go out.
    configuration.increase_rate = Some(format!("{}", (max_users * 10).max(100)));
    // A safety net only: the users end the attack when the schedule is done.
    let safety = start_delay
        + shared.plan.schedule.end_offset()
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

    // One reqwest client shared by every goose user (it never sends: the users send on their own
    // connections). Goose's default builds one per user, and each build parses the system's
    // root certificates: ~4–5 ms of CPU per user, over a second per phase at 256 users, spent on
    // the generator's CPUs while the schedule starts.
    let attack = GooseAttack::initialize_with_config(configuration)
        .and_then(|attack| {
            attack.set_client_builder_without_cookies(
                goose::client::GooseClientBuilder::new().without_cookies(),
            )
        })
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
    let probes: Vec<_> = (0..threads)
        .map(|w| {
            workers
                .handle(w)
                .spawn(probe_runtime(Arc::clone(&shared), w))
        })
        .collect();
    // `run --serve`: the users busy now, summed over the lanes every 250 ms (reads only; the
    // users' path is unchanged).
    let publish_busy = shared.plan.live.clone().map(|live| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let busy = shared
                    .lanes
                    .iter()
                    .map(|lane| lane.busy_users.load(Ordering::Relaxed));
                live.set_users_busy(busy.sum());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    });
    let result = attack.execute().await;
    if let Some(task) = publish_busy {
        task.abort();
    }
    if let Some(live) = &shared.plan.live {
        live.set_users_busy(0);
    }
    notify.abort();
    forward.abort();
    for lane in &shared.lanes {
        lane.growth.send_modify(|g| g.done = true);
    }
    let mut probe_lag = new_histogram();
    for probe in probes {
        if let Ok(lag) = probe.await {
            let _ = probe_lag.add(&lag);
        }
    }
    // Every user has returned: each worker's recording goes to the collector, and with the
    // last sender gone it can finish.
    for lane in &shared.lanes {
        if let Ok(mut recorder) = lane.recorder.lock() {
            recorder.take();
        }
    }
    drop(sink);
    // The workers' tasks are all done: stopping them is joining idle threads.
    if let Ok(workers) = Arc::try_unwrap(workers) {
        let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    }
    result.map_err(|e| EngineError::Goose(e.to_string()))?;
    let ended_at = Instant::now();
    let (users_started, peak_users_busy) = shared.lanes.iter().fold((0, 0), |(s, p), lane| {
        (
            s + lane.growth.borrow().peak.min(lane.max_users),
            p + lane.peak_busy_users.load(Ordering::Relaxed),
        )
    });
    Ok(EngineOutcome {
        started_at: shared.schedule.started_at().unwrap_or(ended_at),
        ended_at,
        cancelled: *cancel.borrow(),
        users_started,
        peak_users_busy,
        max_users,
        generator_threads: threads,
        probe_lag,
        first_send_late_us: shared.first_send_late_us.get().copied(),
        stopped_early: shared.feeds.exhausted_note(),
        flow_steps_skipped: shared.steps_skipped.load(Ordering::Relaxed),
        iterations_measured: (shared.flows.flows > 0).then(|| {
            shared
                .lanes
                .iter()
                .map(|lane| lane.iterations_measured.load(Ordering::Relaxed))
                .sum()
        }),
    })
}

impl Shared {
    /// No user takes another slot: the schedule hands out nothing more and dormant users leave.
    fn stop_taking_slots(&self) {
        self.schedule.exhaust();
        for lane in &self.lanes {
            lane.growth.send_modify(|g| g.done = true);
        }
    }
}

/// Users allowed to run, and whether the schedule is over (dormant users then leave).
#[derive(Debug, Clone, Copy)]
struct Growth {
    active: usize,
    done: bool,
    /// The most users that were active at once (what the phase reports as started).
    peak: usize,
    /// When the load last grew, and when it last shrank (see [`WorkerLane::maybe_shrink`]).
    grown_at: Option<Instant>,
    shrunk_at: Option<Instant>,
}

impl Growth {
    fn new(active: usize) -> Growth {
        Growth {
            active,
            done: false,
            peak: active,
            grown_at: None,
            shrunk_at: None,
        }
    }
}

/// How long after the load last grew before it may shrink again.
const SHRINK_AFTER: Duration = Duration::from_millis(100);
/// The least time between two shrinks (each halves the excess over what is needed).
const SHRINK_EVERY: Duration = Duration::from_millis(10);

/// The runtime probe of worker `worker`: sleeps [`PROBE_PERIOD`] at a time on the worker's own
/// pacer (the path every send waits on) and records how late it wakes, after the warm-up, until the users are done.
async fn probe_runtime(shared: Arc<Shared>, worker: usize) -> Histogram<u64> {
    let mut lag = new_histogram();
    let Some(lane) = shared.lanes.get(worker) else {
        return lag;
    };
    let mut done = lane.growth.subscribe();
    let warmup = shared.plan.schedule.warmup();
    let mut due = Instant::now() + PROBE_PERIOD;
    let mut shipped_second = 0u64;
    loop {
        tokio::select! {
            () = lane.sleep_until(Timer::Precise, due) => {}
            _ = done.wait_for(|g| g.done) => break,
        }
        let now = Instant::now();
        // The first user fixes the schedule's start; until then nothing is measured.
        if let Some(start) = shared.schedule.started_at() {
            if due >= start + warmup {
                record_clamped(&mut lag, micros(now.saturating_duration_since(due)));
            }
            // An idle worker still ships its closed intervals, once a second (see the recorder).
            let second = now.saturating_duration_since(start).as_secs();
            if second > shipped_second {
                shipped_second = second;
                if let Ok(mut recorder) = lane.recorder.lock()
                    && let Some(recorder) = recorder.as_mut()
                {
                    recorder.tick(micros(now.saturating_duration_since(start)));
                }
            }
        }
        // The next appointment from now: a late wake-up is not compounded.
        due = now + PROBE_PERIOD;
    }
    lag
}

/// How a request's wait for its answer ended.
enum Answer {
    Done(http::ExchangeResult),
    TimedOut,
}

/// One send's outcome, recorded by the caller once checks and extractions have run.
struct Sent {
    sample: Sample,
    status: u16,
    failed: bool,
}

/// What one user keeps from its first request to its last (all on its worker's thread).
struct User<'a> {
    shared: &'a Shared,
    lane: &'a WorkerLane,
    /// The schedule's start: offsets are from it.
    start: Instant,
    render: RenderContext,
    buffers: http::RenderBuffers,
    connection: Option<http::Connection>,
    /// When the user's previous request completed (free from the schedule's start at first).
    user_free_at: Instant,
    /// A flow step's answer, for its checks and extractions (reused: no allocation per step).
    captured: Captured,
    scratch: String,
    /// Per flow: its setup has run for this user.
    setup_done: Vec<bool>,
}

/// Waits until the worker's load has grown to user `local` (`true`), or the schedule is over or
/// Ctrl-C came first (`false`: the user's life ends).
async fn wait_until_active<C: Future<Output = ()>>(
    lane: &WorkerLane,
    growth: &mut watch::Receiver<Growth>,
    local: usize,
    mut cancelled: Pin<&mut C>,
) -> bool {
    let Some(wake) = lane.dormant.get(local) else {
        return false;
    };
    loop {
        let notified = wake.notified();
        {
            let g = growth.borrow_and_update();
            if g.done {
                return false;
            }
            if g.active > local {
                return true;
            }
        }
        tokio::select! {
            biased;
            () = cancelled.as_mut() => return false,
            () = notified => {}
            changed = growth.changed() => {
                if changed.is_err() {
                    return false;
                }
            }
        }
    }
}

/// One user (global index `user_index`), from its first request to its last, on its worker.
async fn user_life(shared: Arc<Shared>, user_index: u64) {
    let workers = shared.lanes.len();
    let worker = usize::try_from(user_index).unwrap_or(usize::MAX) % workers;
    let local = usize::try_from(user_index).unwrap_or(usize::MAX) / workers;
    let Some(lane) = shared.lanes.get(worker) else {
        return;
    };
    // A dormant user (beyond `users`) waits until the load grows to it, or the schedule ends.
    if local >= lane.max_users {
        return;
    }
    let cancel = lane.cancel.subscribe();
    let mut growth = lane.growth.subscribe();
    // Created once, polled by every wait below: no registration per request.
    let cancelled = async move {
        let mut cancel = cancel;
        let _ = cancel.wait_for(|c| *c).await;
    };
    let mut cancelled = pin!(cancelled);
    if !wait_until_active(lane, &mut growth, local, cancelled.as_mut()).await {
        return;
    }
    let plan = &shared.plan;
    let start = shared.schedule.start();
    let warmup_end = start + plan.schedule.warmup();
    let closed_deadline = start + plan.schedule.end_offset();
    let give_up_at = closed_deadline + drain_grace(plan.request_timeout);
    let mut render = RenderContext::new(plan.seed, user_index, Arc::clone(&plan.templates));
    render.vars = vec![String::new(); shared.flows.variable_slots];
    render.rows = vec![0; shared.flows.data_files.len()];
    let mut user = User {
        shared: &shared,
        lane,
        start,
        render,
        buffers: http::RenderBuffers::new(),
        connection: None,
        // Free from the schedule's start (later than now only with `--start-at`).
        user_free_at: Instant::now().max(start),
        captured: Captured::default(),
        scratch: String::new(),
        setup_done: vec![false; shared.flows.flows],
    };
    // The request timeout, checked lazily: this sleep is re-armed only when it fires, to the
    // current request's deadline — one timer operation per `timeout`, not one per request.
    let mut deadline_timer = pin!(tokio::time::sleep_until(
        (Instant::now() + plan.request_timeout).into()
    ));
    let mut first = true;
    let has_flows = shared.flows.flows > 0;

    loop {
        // A unique data file ran out: no user takes a new iteration.
        if shared.feeds.is_exhausted() {
            break;
        }
        // Open model: the users this worker has now (read once per slot; only this thread
        // changes it). A user the worker shrank away rests until the load grows to it again.
        let mut active = 0;
        if plan.model == LoadModel::Open {
            active = lane.growth.borrow().active;
            if active <= local {
                if !wait_until_active(lane, &mut growth, local, cancelled.as_mut()).await {
                    break;
                }
                active = lane.growth.borrow().active;
            }
        }
        // When this request (or flow iteration) should go out, and from when its latency counts.
        let (due, in_warmup, recorded_unit) = match plan.model {
            LoadModel::Open => match shared.schedule.take_from(worker) {
                Some(slot) => {
                    let now = Instant::now();
                    // Past the schedule's end by more than the grace: the rest of the backlog is
                    // dropped (counted as such), so an overloaded run still stops by itself.
                    if now > give_up_at {
                        shared.stop_taking_slots();
                        break;
                    }
                    // Overdue already, and every other active user of this worker is in a
                    // request: the users ran out. Grow, up to the cap. An overdue slot while
                    // other users are free means the worker itself is late (they are queued to
                    // run, or asleep on slots it has not woken in time): another user would
                    // only add a connection to a worker that is already behind — which, with
                    // growth on lateness alone, snowballed into 1 024 users and 30 ms bursts.
                    if schedule::is_backlogged(slot.due, now) {
                        if lane.busy_users.load(Ordering::Relaxed) + 1 >= active {
                            lane.grow(now);
                        }
                    } else if slot.due > now {
                        lane.maybe_shrink(now, active);
                    }
                    (slot.due, slot.in_warmup, slot.request)
                }
                None => {
                    lane.growth.send_modify(|g| g.done = true);
                    break;
                }
            },
            LoadModel::Closed => {
                let due = if first {
                    user.user_free_at
                } else {
                    user.user_free_at + plan.think_time
                };
                if due >= closed_deadline {
                    break;
                }
                (due, due < warmup_end, None)
            }
        };
        first = false;
        if due > Instant::now() {
            tokio::select! {
                biased;
                () = &mut cancelled => break,
                () = lane.sleep_until(plan.timer, due) => {}
            }
        }

        // Unit i: top-level request i, then the flows.
        // A replay's slot carries its recorded request (a top-level request is unit i).
        let unit_index =
            recorded_unit.unwrap_or_else(|| pick(&shared.cumulative_weights, &mut user.render));
        let Some(unit) = shared.flows.units.get(unit_index) else {
            break;
        };
        if !unit.data_files.is_empty()
            && shared
                .feeds
                .draw(&unit.data_files, &mut user.render)
                .is_err()
        {
            shared.stop_taking_slots();
            break;
        }
        if has_flows && !in_warmup {
            lane.iterations_measured.fetch_add(1, Ordering::Relaxed);
        }
        let carried_on = user
            .run_unit(
                unit,
                due,
                in_warmup,
                deadline_timer.as_mut(),
                cancelled.as_mut(),
            )
            .await;
        if !carried_on {
            break;
        }
    }
}

impl User<'_> {
    /// One iteration of `unit`: its setup first if this user has not run it yet, then its
    /// steps, each sent when the previous one completed (the first at `due`). A failed step
    /// (error, timeout, check, extraction) ends the iteration: the steps after it are skipped
    /// and counted. `false` when Ctrl-C stopped it.
    async fn run_unit<C: Future<Output = ()>>(
        &mut self,
        unit: &UnitSpec,
        mut due: Instant,
        in_warmup: bool,
        mut deadline_timer: Pin<&mut tokio::time::Sleep>,
        mut cancelled: Pin<&mut C>,
    ) -> bool {
        let shared = self.shared;
        let needs_setup = unit
            .flow
            .is_some_and(|f| !self.setup_done.get(f).copied().unwrap_or(true));
        let setup: &[usize] = if needs_setup { &unit.setup } else { &[] };
        let total = setup.len() + unit.steps.len();
        for k in 0..total {
            let Some(&request_index) = setup.get(k).or_else(|| unit.steps.get(k - setup.len()))
            else {
                return false;
            };
            let Some(spec) = shared.plan.requests.get(request_index) else {
                return false;
            };
            // Only a step that checks or extracts keeps its answer; the rest read and drop it.
            let capture = spec.step.captures();
            if capture {
                self.captured.reset(spec.step.captures_body());
            }
            let Some(mut sent) = self
                .send(
                    request_index,
                    due,
                    in_warmup,
                    capture,
                    deadline_timer.as_mut(),
                    cancelled.as_mut(),
                )
                .await
            else {
                return false;
            };
            if !sent.failed
                && !spec.step.is_plain()
                && let Err(failure) = flow::evaluate(
                    &spec.step,
                    sent.status,
                    &self.captured,
                    &mut self.render,
                    &mut self.scratch,
                )
            {
                sent.failed = true;
                sent.sample.error = true;
                let warned = shared
                    .step_failure_warned
                    .get(request_index)
                    .is_none_or(|w| w.swap(true, Ordering::Relaxed));
                if !warned {
                    tracing::warn!(
                        request = %spec.name,
                        "{} (counted as an error; later failures of this step are not logged)",
                        failure.describe(&spec.step)
                    );
                }
            }
            if let Ok(mut recorder) = self.lane.recorder.lock()
                && let Some(recorder) = recorder.as_mut()
            {
                recorder.record(&sent.sample);
            }
            if sent.failed {
                let skipped = (total - k - 1) as u64;
                if skipped > 0 && !in_warmup {
                    shared.steps_skipped.fetch_add(skipped, Ordering::Relaxed);
                }
                return true;
            }
            if needs_setup
                && k + 1 == setup.len()
                && let Some(done) = unit.flow.and_then(|f| self.setup_done.get_mut(f))
            {
                *done = true;
            }
            // The next step's intended send time: this one's completion.
            due = self.user_free_at;
        }
        true
    }

    /// Sends request `request_index` (intended at `due`) on the user's connection, waits for
    /// its whole answer (kept in `self.captured` when `capture`), and times it. `None` when
    /// Ctrl-C dropped it.
    async fn send<C: Future<Output = ()>>(
        &mut self,
        request_index: usize,
        due: Instant,
        in_warmup: bool,
        capture: bool,
        mut deadline_timer: Pin<&mut tokio::time::Sleep>,
        mut cancelled: Pin<&mut C>,
    ) -> Option<Sent> {
        let shared = self.shared;
        let plan = &shared.plan;
        let lane = self.lane;
        let prepared = shared.requests.get(request_index)?;
        let spec = plan.requests.get(request_index)?;
        let sent_at = Instant::now();
        if shared.first_send_late_us.get().is_none() {
            let late = sent_at.saturating_duration_since(due).as_micros();
            let _ = shared
                .first_send_late_us
                .set(u64::try_from(late).unwrap_or(u64::MAX));
        }
        let user_free_at = self.user_free_at;
        let send_lag = schedule::send_lag(due, user_free_at, sent_at);
        let generator_late = send_lag > schedule::LATE_THRESHOLD;
        let backlogged =
            plan.model == LoadModel::Open && schedule::is_backlogged(due, user_free_at);
        let backlogged_at_cap = backlogged && lane.growth.borrow().active >= lane.max_users;
        let busy = lane.busy_users.fetch_add(1, Ordering::Relaxed) + 1;
        lane.peak_busy_users.fetch_max(busy, Ordering::Relaxed);

        // Latency counts from the due time (open: a backlog behind a busy server is the
        // server's) or the actual send (closed) — never the generator's own send lag.
        let latency_origin = match plan.model {
            LoadModel::Open => due + send_lag,
            LoadModel::Closed => sent_at,
        };
        let mut headers_at = None;
        let answer = match prepared.build(&shared.endpoint, &mut self.buffers, &mut self.render) {
            Err(e) => {
                tracing::warn!(request = %spec.name, "{e}");
                Some(Answer::Done(Ok(0)))
            }
            Ok(()) => {
                let deadline = sent_at + plan.request_timeout;
                let exchange = http::exchange(
                    &mut self.connection,
                    &shared.endpoint,
                    self.buffers.request(),
                    prepared.answer_has_no_body(),
                    &mut headers_at,
                    capture.then_some(&mut self.captured),
                );
                let mut exchange = pin!(exchange);
                loop {
                    tokio::select! {
                        biased;
                        result = &mut exchange => break Some(Answer::Done(result)),
                        () = &mut deadline_timer => {
                            if Instant::now() >= deadline {
                                break Some(Answer::TimedOut);
                            }
                            deadline_timer.as_mut().reset(deadline.into());
                        }
                        // Ctrl-C: drop the in-flight request; what completed so far is kept.
                        () = &mut cancelled => break None,
                    }
                }
            }
        };
        lane.busy_users.fetch_sub(1, Ordering::Relaxed);
        let answer = answer?;
        let completed_at = Instant::now();
        let (status, failed, timed_out) = match answer {
            Answer::Done(Ok(status)) => {
                let ok = match spec.expect_status {
                    Some(expected) => status == expected,
                    None => (200..300).contains(&status),
                };
                (status, !ok, false)
            }
            Answer::Done(Err(e)) => {
                tracing::debug!(request = %spec.name, "{e}");
                (0, true, false)
            }
            Answer::TimedOut => {
                // A request is still in flight on it: the connection cannot be reused.
                self.connection = None;
                (0, true, true)
            }
        };
        let start = self.start;
        let sample = Sample {
            request: u16::try_from(request_index).unwrap_or(u16::MAX),
            latency_us: micros(completed_at.saturating_duration_since(latency_origin)),
            ttfb_us: headers_at.map(|at| micros(at.saturating_duration_since(latency_origin))),
            completed_offset_us: micros(completed_at.saturating_duration_since(start)),
            sent_offset_us: micros(sent_at.saturating_duration_since(start)),
            status,
            error: failed,
            timed_out,
            in_warmup,
            generator_late,
            backlogged,
            backlogged_at_cap,
            send_lag_us: micros(send_lag),
            service_us: micros(completed_at.saturating_duration_since(sent_at)),
        };
        self.user_free_at = completed_at;
        Some(Sent {
            sample,
            status,
            failed,
        })
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Weighted pick of a unit index (unit i < the top-level request count is request i).
fn pick(cumulative_weights: &[u64], render: &mut RenderContext) -> usize {
    let total = cumulative_weights.last().copied().unwrap_or(1).max(1);
    if cumulative_weights.len() <= 1 {
        return 0;
    }
    let x = render.rng.gen_range(0..total);
    cumulative_weights.partition_point(|w| *w <= x)
}
