//! Resource sampling from `/proc` every [`SAMPLE_PERIOD`]: memory and CPU of the target's process
//! tree (Node may fork; children count), of Postgres (the postmaster and its backends, when its pid
//! is known — not for a container), and of apibench itself. Written to `resources.csv` as it goes;
//! [`Sampler::stop`] returns the aggregates that summary.json carries.
//!
//! **It never touches the users' runtime.** [`Sampler::start`] spawns one OS thread
//! (`apibench-sampler`) that does all the blocking `/proc` reads; a late or slow sample delays only
//! that thread, never a user's request. It walks only the watched trees: from each root, down the
//! kernel's `/proc/PID/task/TID/children` lists. Only when that file does not exist (a kernel
//! without `CONFIG_PROC_CHILDREN`) does it fall back to one scan of `/proc` per sample, shared by
//! both trees. The generator is this process alone (its threads are in its own stat line).
//!
//! What a sample holds, per tree:
//! - **RSS**: the sum of the processes' resident set. Pages shared between processes are counted
//!   once per process, so for a tree read it as an upper bound.
//! - **Peak RSS (`VmHWM`)**, for the target and the generator: the largest per-process high-water
//!   mark the kernel keeps, so a spike between two samples is not missed. It is the process's
//!   lifetime peak: for the generator it includes anything earlier in the same apibench process.
//! - **PSS** for Postgres (`Pss:` of `/proc/PID/smaps_rollup`): each shared page is divided among
//!   the processes that map it, so shared_buffers count once for the whole server instead of once
//!   per backend — RSS of a busy Postgres overstates its memory several times. Reading another
//!   user's `smaps_rollup` needs ptrace rights; when it is unreadable the summary falls back to RSS
//!   and says so (`postgres_memory_is_pss`).
//! - **CPU%** of one core (200 % = two cores busy): the change in each live process's utime+stime,
//!   plus the time of children that were reaped inside the tree. A reaped child's whole lifetime
//!   lands in its reaping parent's cutime+cstime (any process of the tree, not only the root), but
//!   part of it was already counted while the child was alive. So the reaped credit is the change
//!   in cutime+cstime summed over the tree, minus what was last seen of the processes that vanished
//!   (their utime+stime+cutime+cstime), never below zero. A process that leaves the tree without
//!   being reaped inside it (orphaned, or a parent that ignores SIGCHLD) makes that interval an
//!   undercount, never an overcount. The generator does not count its reaped children: those are
//!   the target or helper commands, not apibench's load.
//!
//! This module only reads `/proc`; it never signals or writes to a process.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// The CSV header; units are in the column names. Columns are read by name elsewhere: new ones go
/// at the end. `postgres_rss_bytes` stays RSS; PSS is `postgres_pss_bytes`.
pub const CSV_HEADER: &str = "elapsed_ms,target_rss_bytes,target_cpu_percent,target_processes,postgres_rss_bytes,postgres_cpu_percent,postgres_processes,generator_rss_bytes,generator_cpu_percent,target_rss_hwm_bytes,postgres_pss_bytes,generator_rss_hwm_bytes";

/// One sample of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeSample {
    pub rss_bytes: u64,
    pub cpu_percent: f64,
    pub processes: u32,
}

/// Aggregates over the sampling period.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceSummary {
    pub samples: u64,
    pub target_rss_peak_bytes: Option<u64>,
    pub target_cpu_mean_percent: Option<f64>,
    /// Postgres memory at its peak sample: the PSS sum when `postgres_memory_is_pss`, else RSS.
    pub postgres_rss_peak_bytes: Option<u64>,
    pub postgres_cpu_mean_percent: Option<f64>,
    pub generator_rss_peak_bytes: Option<u64>,
    pub generator_cpu_mean_percent: Option<f64>,
    /// The largest `VmHWM` (kernel-kept peak RSS) of any process of the target's tree.
    #[serde(default)]
    pub target_rss_hwm_bytes: Option<u64>,
    /// The peak over samples of the summed `Pss:` of the postmaster's tree.
    #[serde(default)]
    pub postgres_pss_peak_bytes: Option<u64>,
    /// Whether `postgres_rss_peak_bytes` is PSS (every Postgres sample could read smaps_rollup).
    #[serde(default)]
    pub postgres_memory_is_pss: bool,
    /// apibench's own `VmHWM`: its lifetime peak RSS, so it includes earlier runs in the process.
    #[serde(default)]
    pub generator_rss_hwm_bytes: Option<u64>,
}

/// Which processes to watch.
#[derive(Debug, Clone, Default)]
pub struct Watched {
    pub target_pid: Option<u32>,
    pub postgres_pid: Option<u32>,
    /// Where the sampler thread itself runs: off the generator's workers when the generator is
    /// pinned (reading PostgreSQL's tree costs ~10 % of a core, and beside a worker it delays the
    /// worker's wake-ups by milliseconds); `None`: the thread that starts it decides.
    pub cpus: Option<crate::engine::workers::CpuList>,
}

/// A running sampler: its own OS thread, stopped by [`Sampler::stop`].
#[derive(Debug)]
pub struct Sampler {
    stop_tx: mpsc::Sender<Control>,
    thread: JoinHandle<ResourceSummary>,
}

/// What the sampler thread is told.
enum Control {
    Stop,
    /// CPU means count from here on (the warm-up is over); RSS peaks keep every sample.
    MeasureFromNow,
}

/// Tells a running sampler that the measured window starts now (clonable, cheap).
#[derive(Clone)]
pub struct MeasuredWindow(mpsc::Sender<Control>);

impl MeasuredWindow {
    /// CPU means from here on: start-up and warm-up (connections, users launched) are not the
    /// load's steady cost. A sampler already gone ignores it.
    pub fn starts_now(&self) {
        let _ = self.0.send(Control::MeasureFromNow);
    }
}

impl Sampler {
    /// Starts sampling on its own OS thread (named "apibench-sampler"); writes `csv_path` as it
    /// goes when given. Fails when the CSV cannot be created or the thread cannot be spawned.
    pub fn start(watched: Watched, csv_path: Option<&Path>) -> std::io::Result<Sampler> {
        Sampler::start_live(watched, csv_path, None)
    }

    /// [`Sampler::start`], also handing each reading to `apibench run --serve`'s live state.
    pub fn start_live(
        watched: Watched,
        csv_path: Option<&Path>,
        live: Option<crate::live::LiveFeed>,
    ) -> std::io::Result<Sampler> {
        let csv = csv_path.map(CsvSink::create).transpose()?;
        let (stop_tx, stop_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("apibench-sampler".into())
            .spawn(move || {
                if let Some(cpus) = &watched.cpus
                    && let Err(e) = crate::engine::workers::pin_current_thread(cpus)
                {
                    tracing::warn!("the sampler stays on the generator's CPUs: {e}");
                }
                sampling_loop(watched, csv, &stop_rx, live.as_ref())
            })?;
        Ok(Sampler { stop_tx, thread })
    }

    /// A handle that restarts the CPU means when the measured window begins.
    pub fn measured_window(&self) -> MeasuredWindow {
        MeasuredWindow(self.stop_tx.clone())
    }

    /// Stops the thread (promptly, not after a full period) and returns the aggregates. Blocks the
    /// caller only for a sample already in progress.
    pub fn stop(self) -> ResourceSummary {
        // A send can only fail when the thread is already gone; join tells what happened.
        let _ = self.stop_tx.send(Control::Stop);
        match self.thread.join() {
            Ok(summary) => summary,
            Err(_) => {
                tracing::warn!("the resource sampler thread panicked; no resource figures");
                ResourceSummary::default()
            }
        }
    }
}

/// The CPUs this process may run on (its affinity mask, e.g. from `taskset` or a cpuset), falling
/// back to `available_parallelism`. A CPU quota (cgroup `cpu.max`) is not an affinity and is not
/// reflected here.
pub fn cpus_allowed() -> u32 {
    use nix::sched::{CpuSet, sched_getaffinity};
    let from_affinity = sched_getaffinity(nix::unistd::Pid::this()).ok().map(|set| {
        (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .count()
    });
    let count = match from_affinity {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(1, usize::from),
    };
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// `root` and every process below it now (empty when `root` is gone).
pub fn tree_pids(root: u32) -> Vec<u32> {
    if read_stat(root).is_none() {
        return Vec::new();
    }
    match TreeWalk::detect() {
        TreeWalk::ChildrenFiles => walk_tree(root, children_from_proc),
        TreeWalk::ProcScan => tree_from_scan(root, &scan_all())
            .into_iter()
            .map(|s| s.pid)
            .collect(),
    }
}

/// The root and its descendants, from a (pid, ppid) listing.
pub fn descendants(root: u32, parents: &[(u32, u32)]) -> HashSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for &(pid, ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    walk_tree(root, |pid| children.get(&pid).cloned().unwrap_or_default())
        .into_iter()
        .collect()
}

/// Breadth-first from `root`, each pid once (pid reuse cannot make it loop).
fn walk_tree(root: u32, mut children_of: impl FnMut(u32) -> Vec<u32>) -> Vec<u32> {
    let mut seen = HashSet::from([root]);
    let mut order = vec![root];
    let mut next = 0;
    while let Some(&pid) = order.get(next) {
        next += 1;
        for child in children_of(pid) {
            if seen.insert(child) {
                order.push(child);
            }
        }
    }
    order
}

/// One process as the CPU and RSS maths need it: a snapshot of `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcStat {
    pid: u32,
    ppid: u32,
    /// utime + stime, in clock ticks.
    ticks: u64,
    /// cutime + cstime: the ticks of children this process has reaped.
    reaped_children_ticks: u64,
    rss_pages: u64,
}

/// Parses `/proc/PID/stat`; `None` on anything unexpected.
fn parse_stat(pid: u32, text: &str) -> Option<ProcStat> {
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let after = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21).
    // cutime, cstime and rss are signed in the kernel's format; a negative one counts as 0.
    let num = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<i64>().ok())
            .map(|v| u64::try_from(v).unwrap_or(0))
    };
    Some(ProcStat {
        pid,
        ppid: u32::try_from(num(1)?).ok()?,
        ticks: num(11)?.saturating_add(num(12)?),
        reaped_children_ticks: num(13)?.saturating_add(num(14)?),
        rss_pages: num(21)?,
    })
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// A `Name:   1234 kB` line of a `/proc` file, in bytes.
fn parse_kb_line(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        let mut words = rest.split_whitespace();
        let kb = words.next()?.parse::<u64>().ok()?;
        (words.next() == Some("kB")).then(|| kb.saturating_mul(1024))
    })
}

/// `VmHWM` (peak resident set) from a `/proc/PID/status` text.
fn parse_vm_hwm_bytes(status: &str) -> Option<u64> {
    parse_kb_line(status, "VmHWM")
}

/// `Pss` from a `/proc/PID/smaps_rollup` text (not `Pss_Anon` and the like).
fn parse_pss_bytes(smaps_rollup: &str) -> Option<u64> {
    parse_kb_line(smaps_rollup, "Pss")
}

fn read_vm_hwm_bytes(pid: u32) -> Option<u64> {
    parse_vm_hwm_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The largest `VmHWM` among `pids`; `None` when none could be read.
fn max_vm_hwm_bytes(pids: impl IntoIterator<Item = u32>) -> Option<u64> {
    pids.into_iter().filter_map(read_vm_hwm_bytes).max()
}

/// The summed PSS of `pids`. `None` when any process denies the read (a partial sum would
/// understate) or when no process had a `Pss:` line at all (no smaps_rollup on this kernel).
/// Processes that vanished meanwhile are skipped.
fn tree_pss_bytes(pids: impl IntoIterator<Item = u32>) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for pid in pids {
        match std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            // A zombie or a process mid-exit has no memory map and no Pss line.
            Ok(text) => {
                if let Some(bytes) = parse_pss_bytes(&text) {
                    total = total.saturating_add(bytes);
                    any = true;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return None,
            Err(_) => {}
        }
    }
    any.then_some(total)
}

/// How a tree's members are found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TreeWalk {
    /// `/proc/PID/task/TID/children`, from the root down.
    ChildrenFiles,
    /// One scan of every `/proc/PID/stat` per sample (no `CONFIG_PROC_CHILDREN`).
    ProcScan,
}

impl TreeWalk {
    fn detect() -> TreeWalk {
        let pid = std::process::id();
        if std::fs::metadata(format!("/proc/{pid}/task/{pid}/children")).is_ok() {
            TreeWalk::ChildrenFiles
        } else {
            tracing::debug!("no /proc/PID/task/TID/children here: scanning /proc for each sample");
            TreeWalk::ProcScan
        }
    }
}

/// The children of every thread of `pid`, from the kernel's lists.
fn children_from_proc(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for task in tasks.flatten() {
        let mut path = task.path();
        path.push("children");
        if let Ok(text) = std::fs::read_to_string(&path) {
            children.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    children
}

/// The stats of the tree rooted at `root`, walking the children files; empty when the root is gone.
fn tree_from_children_files(root: u32) -> Vec<ProcStat> {
    if read_stat(root).is_none() {
        return Vec::new();
    }
    walk_tree(root, children_from_proc)
        .into_iter()
        .filter_map(read_stat)
        .collect()
}

/// Every process's stat, for the fallback.
fn scan_all() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// The members of `root`'s tree in a full scan.
fn tree_from_scan(root: u32, all: &[ProcStat]) -> Vec<ProcStat> {
    let parents: Vec<(u32, u32)> = all.iter().map(|s| (s.pid, s.ppid)).collect();
    let members = descendants(root, &parents);
    all.iter()
        .filter(|s| members.contains(&s.pid))
        .copied()
        .collect()
}

/// What was last seen of one process, to turn totals into interval figures.
#[derive(Debug, Clone, Copy)]
struct LastSeen {
    ticks: u64,
    reaped_children_ticks: u64,
}

/// Per-tree state between samples: what each process had used when last seen.
#[derive(Debug, Default)]
pub struct TreeTracker {
    previous: HashMap<u32, LastSeen>,
    previous_at: Option<Instant>,
}

impl TreeTracker {
    /// The CPU ticks the tree used since the previous call, given this round's snapshot of the
    /// tree's members; `None` on the first call (no interval yet) and when `root` is missing
    /// (then the state is kept, and the next interval spans the gap).
    fn interval_ticks(&mut self, root: u32, tree: &[ProcStat]) -> Option<u64> {
        if !tree.iter().any(|s| s.pid == root) {
            return None;
        }
        let mut own_ticks = 0u64;
        let mut reaped_growth = 0u64;
        let mut current = HashMap::with_capacity(tree.len());
        for stat in tree {
            let before = self.previous.get(&stat.pid);
            // A process first seen now was born after the previous sample: all of it is new.
            own_ticks =
                own_ticks.saturating_add(stat.ticks.saturating_sub(before.map_or(0, |b| b.ticks)));
            reaped_growth = reaped_growth.saturating_add(
                stat.reaped_children_ticks
                    .saturating_sub(before.map_or(0, |b| b.reaped_children_ticks)),
            );
            current.insert(
                stat.pid,
                LastSeen {
                    ticks: stat.ticks,
                    reaped_children_ticks: stat.reaped_children_ticks,
                },
            );
        }
        // A reaped child's whole life lands in its parent's cutime+cstime; what was last seen of
        // it was already counted (or was the baseline), so only the rest is new.
        let already_counted: u64 = self
            .previous
            .iter()
            .filter(|(pid, _)| !current.contains_key(pid))
            .map(|(_, seen)| seen.ticks.saturating_add(seen.reaped_children_ticks))
            .fold(0, u64::saturating_add);
        let reaped_credit = reaped_growth.saturating_sub(already_counted);
        // After a first call `previous` always holds at least the root.
        let first = self.previous.is_empty();
        self.previous = current;
        (!first).then(|| own_ticks.saturating_add(reaped_credit))
    }

    /// Samples the tree rooted at `root` from this round's snapshot of its members.
    fn sample(
        &mut self,
        root: u32,
        tree: &[ProcStat],
        now: Instant,
        ticks_per_sec: f64,
        page_bytes: u64,
    ) -> Option<TreeSample> {
        let previous_at = self.previous_at;
        let ticks = self.interval_ticks(root, tree);
        if tree.iter().any(|s| s.pid == root) {
            self.previous_at = Some(now);
        }
        let ticks = ticks?;
        let seconds = now.saturating_duration_since(previous_at?).as_secs_f64();
        let cpu_percent = if seconds > 0.0 && ticks_per_sec > 0.0 {
            ticks as f64 / ticks_per_sec / seconds * 100.0
        } else {
            0.0
        };
        let rss_pages = tree
            .iter()
            .map(|s| s.rss_pages)
            .fold(0, u64::saturating_add);
        Some(TreeSample {
            rss_bytes: rss_pages.saturating_mul(page_bytes),
            cpu_percent,
            processes: u32::try_from(tree.len()).unwrap_or(u32::MAX),
        })
    }
}

fn clock_ticks_per_sec() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn page_size_bytes() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(4096)
}

/// One row of the CSV.
#[derive(Debug, Clone, Copy)]
struct Round {
    target: Option<TreeSample>,
    target_rss_hwm_bytes: Option<u64>,
    postgres: Option<TreeSample>,
    postgres_pss_bytes: Option<u64>,
    generator: TreeSample,
    generator_rss_hwm_bytes: Option<u64>,
}

impl Round {
    /// What `apibench run --serve` shows of this round.
    fn live_reading(&self) -> crate::live::ResourceReading {
        crate::live::ResourceReading {
            target_rss_bytes: self.target.map(|t| t.rss_bytes),
            target_cpu_percent: self.target.map(|t| t.cpu_percent),
            target_processes: self.target.map(|t| t.processes),
            postgres_rss_bytes: self.postgres.map(|p| p.rss_bytes),
            postgres_pss_bytes: self.postgres_pss_bytes,
            postgres_cpu_percent: self.postgres.map(|p| p.cpu_percent),
            generator_rss_bytes: self.generator.rss_bytes,
            generator_cpu_percent: self.generator.cpu_percent,
        }
    }
}

/// The sampler thread's state: trackers and the units of `/proc`.
struct Trees {
    watched: Watched,
    walk: TreeWalk,
    self_pid: u32,
    ticks_per_sec: f64,
    page_bytes: u64,
    target: TreeTracker,
    postgres: TreeTracker,
    generator: TreeTracker,
}

impl Trees {
    fn new(watched: Watched) -> Trees {
        Trees {
            watched,
            walk: TreeWalk::detect(),
            self_pid: std::process::id(),
            ticks_per_sec: clock_ticks_per_sec(),
            page_bytes: page_size_bytes(),
            target: TreeTracker::default(),
            postgres: TreeTracker::default(),
            generator: TreeTracker::default(),
        }
    }

    /// Reads `/proc` once; `None` on the first round (the baseline) or if apibench's own stat is
    /// unreadable.
    fn round(&mut self, now: Instant) -> Option<Round> {
        let roots = [self.watched.target_pid, self.watched.postgres_pid];
        let scan =
            (self.walk == TreeWalk::ProcScan && roots.iter().any(Option::is_some)).then(scan_all);
        let tree_of = |root: u32| match &scan {
            Some(all) => tree_from_scan(root, all),
            None => tree_from_children_files(root),
        };
        let units = (self.ticks_per_sec, self.page_bytes);
        let (target, target_rss_hwm_bytes) = sample_watched(
            &mut self.target,
            self.watched.target_pid,
            &tree_of,
            |tree| max_vm_hwm_bytes(tree.iter().map(|s| s.pid)),
            now,
            units,
        );
        let (postgres, postgres_pss_bytes) = sample_watched(
            &mut self.postgres,
            self.watched.postgres_pid,
            &tree_of,
            |tree| tree_pss_bytes(tree.iter().map(|s| s.pid)),
            now,
            units,
        );
        // apibench alone. Its reaped children (the target, helper commands) are not its load.
        let own = read_stat(self.self_pid).map(|s| ProcStat {
            reaped_children_ticks: 0,
            ..s
        });
        let generator =
            self.generator
                .sample(self.self_pid, own.as_slice(), now, units.0, units.1)?;
        Some(Round {
            target,
            target_rss_hwm_bytes,
            postgres,
            postgres_pss_bytes,
            generator,
            generator_rss_hwm_bytes: read_vm_hwm_bytes(self.self_pid),
        })
    }
}

/// Samples one watched tree (when there is a root) and one memory figure of its members; the
/// memory figure is only read when there is a sample to go with it.
fn sample_watched(
    tracker: &mut TreeTracker,
    root: Option<u32>,
    tree_of: &dyn Fn(u32) -> Vec<ProcStat>,
    memory_bytes: fn(&[ProcStat]) -> Option<u64>,
    now: Instant,
    (ticks_per_sec, page_bytes): (f64, u64),
) -> (Option<TreeSample>, Option<u64>) {
    let Some(root) = root else {
        return (None, None);
    };
    let tree = tree_of(root);
    let sample = tracker.sample(root, &tree, now, ticks_per_sec, page_bytes);
    let memory = sample.and_then(|_| memory_bytes(&tree));
    (sample, memory)
}

/// `resources.csv`, written a row at a time; after a write error it warns once and stops writing.
struct CsvSink {
    file: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    failed: bool,
}

impl CsvSink {
    fn create(path: &Path) -> std::io::Result<CsvSink> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(file, "{CSV_HEADER}")?;
        file.flush()?;
        Ok(CsvSink {
            file,
            path: path.to_path_buf(),
            failed: false,
        })
    }

    fn write(&mut self, elapsed: Duration, round: &Round) {
        if self.failed {
            return;
        }
        let written =
            writeln!(self.file, "{}", csv_row(elapsed, round)).and_then(|()| self.file.flush());
        if let Err(e) = written {
            tracing::warn!(
                "writing {}: {e}; resource samples are still summarised",
                self.path.display()
            );
            self.failed = true;
        }
    }
}

/// A CSV row in [`CSV_HEADER`]'s order; unknown values are empty cells.
fn csv_row(elapsed: Duration, round: &Round) -> String {
    let tree = |s: Option<TreeSample>| match s {
        Some(s) => format!("{},{:.1},{}", s.rss_bytes, s.cpu_percent, s.processes),
        None => ",,".to_string(),
    };
    let bytes = |b: Option<u64>| b.map(|b| b.to_string()).unwrap_or_default();
    format!(
        "{},{},{},{},{:.1},{},{},{}",
        elapsed.as_millis(),
        tree(round.target),
        tree(round.postgres),
        round.generator.rss_bytes,
        round.generator.cpu_percent,
        bytes(round.target_rss_hwm_bytes),
        bytes(round.postgres_pss_bytes),
        bytes(round.generator_rss_hwm_bytes),
    )
}

#[derive(Debug, Default)]
struct Accumulator {
    rss_peak: u64,
    cpu_sum: f64,
    n: u64,
    /// Samples in `cpu_sum` (since the measured window began, when it was marked).
    cpu_n: u64,
}

impl Accumulator {
    fn add(&mut self, s: &TreeSample) {
        self.rss_peak = self.rss_peak.max(s.rss_bytes);
        self.cpu_sum += s.cpu_percent;
        self.n += 1;
        self.cpu_n += 1;
    }
    fn peak(&self) -> Option<u64> {
        (self.n > 0).then_some(self.rss_peak)
    }
    fn mean(&self) -> Option<f64> {
        (self.cpu_n > 0).then(|| self.cpu_sum / self.cpu_n as f64)
    }
}

/// The aggregates of all rounds.
#[derive(Debug, Default)]
struct Totals {
    target: Accumulator,
    postgres: Accumulator,
    generator: Accumulator,
    target_rss_hwm_bytes: Option<u64>,
    postgres_pss_peak_bytes: Option<u64>,
    postgres_samples_without_pss: u64,
    generator_rss_hwm_bytes: Option<u64>,
}

impl Totals {
    /// Forgets the CPU samples so far (the means then cover the measured window only).
    fn restart_cpu_means(&mut self) {
        for accumulator in [&mut self.target, &mut self.postgres, &mut self.generator] {
            accumulator.cpu_sum = 0.0;
            accumulator.cpu_n = 0;
        }
    }

    fn add(&mut self, round: &Round) {
        if let Some(t) = &round.target {
            self.target.add(t);
        }
        if let Some(p) = &round.postgres {
            self.postgres.add(p);
            if round.postgres_pss_bytes.is_none() {
                self.postgres_samples_without_pss += 1;
            }
        }
        self.generator.add(&round.generator);
        self.target_rss_hwm_bytes = self.target_rss_hwm_bytes.max(round.target_rss_hwm_bytes);
        self.postgres_pss_peak_bytes = self.postgres_pss_peak_bytes.max(round.postgres_pss_bytes);
        self.generator_rss_hwm_bytes = self
            .generator_rss_hwm_bytes
            .max(round.generator_rss_hwm_bytes);
    }

    fn summary(&self) -> ResourceSummary {
        let postgres_memory_is_pss = self.postgres.n > 0 && self.postgres_samples_without_pss == 0;
        ResourceSummary {
            samples: self.generator.n,
            target_rss_peak_bytes: self.target.peak(),
            target_cpu_mean_percent: self.target.mean(),
            postgres_rss_peak_bytes: if postgres_memory_is_pss {
                self.postgres_pss_peak_bytes
            } else {
                self.postgres.peak()
            },
            postgres_cpu_mean_percent: self.postgres.mean(),
            generator_rss_peak_bytes: self.generator.peak(),
            generator_cpu_mean_percent: self.generator.mean(),
            target_rss_hwm_bytes: self.target_rss_hwm_bytes,
            postgres_pss_peak_bytes: self.postgres_pss_peak_bytes,
            postgres_memory_is_pss,
            // The kernel's high-water mark is by definition at least any RSS seen; its per-thread
            // RSS counters can lag a sample taken a moment earlier, so never report it below one.
            generator_rss_hwm_bytes: self
                .generator_rss_hwm_bytes
                .map(|hwm| hwm.max(self.generator.peak().unwrap_or(0))),
        }
    }
}

/// The sampler thread: a round now (the baseline), then one every period until told to stop.
fn sampling_loop(
    watched: Watched,
    mut csv: Option<CsvSink>,
    stop_rx: &mpsc::Receiver<Control>,
    live: Option<&crate::live::LiveFeed>,
) -> ResourceSummary {
    let started = Instant::now();
    let mut trees = Trees::new(watched);
    let mut totals = Totals::default();
    let mut next_round = started;
    loop {
        // Waiting on the channel, not sleeping, is what makes `stop` prompt.
        let wait = next_round.saturating_duration_since(Instant::now());
        match stop_rx.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Control::MeasureFromNow) => {
                totals.restart_cpu_means();
                continue;
            }
            // Told to stop, or the `Sampler` was dropped.
            Ok(Control::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let now = Instant::now();
        if let Some(round) = trees.round(now) {
            if let Some(csv) = &mut csv {
                csv.write(now.saturating_duration_since(started), &round);
            }
            totals.add(&round);
            if let Some(live) = live {
                live.set_resources(round.live_reading());
            }
        }
        // A late round pushes the schedule back rather than bunching samples up.
        next_round += SAMPLE_PERIOD;
        let after = Instant::now();
        if next_round <= after {
            next_round = after + SAMPLE_PERIOD;
        }
    }
    totals.summary()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_means_cover_the_measured_window_and_rss_peaks_every_sample() {
        let sample = |rss_bytes, cpu_percent| TreeSample {
            rss_bytes,
            cpu_percent,
            processes: 1,
        };
        let round = |rss, cpu| Round {
            target: None,
            target_rss_hwm_bytes: None,
            postgres: None,
            postgres_pss_bytes: None,
            generator: sample(rss, cpu),
            generator_rss_hwm_bytes: None,
        };
        let mut totals = Totals::default();
        // Start-up: users launched, connections opened — busy, and the biggest RSS.
        totals.add(&round(900, 100.0));
        totals.add(&round(500, 80.0));
        totals.restart_cpu_means();
        totals.add(&round(400, 20.0));
        totals.add(&round(400, 40.0));
        let summary = totals.summary();
        assert_eq!(summary.generator_cpu_mean_percent, Some(30.0));
        assert_eq!(summary.generator_rss_peak_bytes, Some(900));
        assert_eq!(summary.samples, 4);
    }

    fn stat(pid: u32, ppid: u32, ticks: u64, reaped_children_ticks: u64) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            ticks,
            reaped_children_ticks,
            rss_pages: 1,
        }
    }

    /// Feeds `rounds` one second apart at 100 ticks/s; returns each interval's CPU% (= ticks).
    fn cpu_per_round(root: u32, rounds: &[Vec<ProcStat>]) -> Vec<f64> {
        let mut tracker = TreeTracker::default();
        let start = Instant::now();
        rounds
            .iter()
            .enumerate()
            .filter_map(|(i, tree)| {
                let at = start + Duration::from_secs(i as u64);
                tracker.sample(root, tree, at, 100.0, 4096)
            })
            .map(|s| s.cpu_percent)
            .collect()
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-9, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn descendants_include_grandchildren_only() {
        let parents = [(2, 1), (3, 2), (4, 3), (5, 1), (6, 99)];
        let tree = descendants(2, &parents);
        assert_eq!(tree, HashSet::from([2, 3, 4]));
    }

    #[test]
    fn own_process_reads_from_proc() {
        let stat = read_stat(std::process::id()).expect("own /proc/self/stat parses");
        assert!(stat.rss_pages > 0);
    }

    #[test]
    fn own_process_peak_and_pss_read_from_proc() {
        let pid = std::process::id();
        // Read in this order, each later figure bounds the earlier: PSS <= RSS <= the peak since.
        let pss = tree_pss_bytes([pid]).expect("own smaps_rollup is readable");
        let rss_bytes = read_stat(pid).expect("own stat").rss_pages * page_size_bytes();
        let hwm = read_vm_hwm_bytes(pid).expect("own VmHWM");
        assert!(pss > 0, "PSS {pss}");
        assert!(
            pss <= hwm && rss_bytes <= hwm,
            "PSS {pss}, RSS {rss_bytes}, VmHWM {hwm}"
        );
    }

    #[test]
    fn reaped_child_is_not_counted_twice() {
        // Root 1 and child 2. The child is seen at 30 then 40 ticks, then exits having used 50
        // and is reaped: +50 in the root's cutime. The last interval is 10 ticks, not 60.
        let rounds = [
            vec![stat(1, 0, 100, 0), stat(2, 1, 30, 0)],
            vec![stat(1, 0, 100, 0), stat(2, 1, 40, 0)],
            vec![stat(1, 0, 100, 50)],
        ];
        assert_close(&cpu_per_round(1, &rounds), &[10.0, 10.0]);
    }

    #[test]
    fn reaped_time_counts_in_whichever_tree_process_reaped_it() {
        // 1 → 2 → 3: the grandchild is reaped by 2, not by the root; 2 also works 5 ticks.
        let rounds = [
            vec![stat(1, 0, 10, 0), stat(2, 1, 10, 0), stat(3, 2, 20, 0)],
            vec![stat(1, 0, 10, 0), stat(2, 1, 15, 25)],
        ];
        assert_close(&cpu_per_round(1, &rounds), &[5.0 + 5.0]);
    }

    #[test]
    fn a_child_born_and_reaped_between_samples_counts_in_full() {
        let rounds = [vec![stat(1, 0, 10, 0)], vec![stat(1, 0, 12, 30)]];
        assert_close(&cpu_per_round(1, &rounds), &[2.0 + 30.0]);
    }

    #[test]
    fn a_reaped_chain_is_counted_once() {
        // 1 → 2 → 3, both 2 (seen at 8 ticks) and 3 (seen at 20) end in one interval: 2 reaps 3
        // (3 used 25 in all), then 1 reaps 2 (2 used 10 itself): 1's cutime grows by 10 + 25.
        let rounds = [
            vec![stat(1, 0, 10, 0), stat(2, 1, 8, 0), stat(3, 2, 20, 0)],
            vec![stat(1, 0, 10, 35)],
        ];
        assert_close(
            &cpu_per_round(1, &rounds),
            &[(10 - 8) as f64 + (25 - 20) as f64],
        );
    }

    #[test]
    fn a_child_that_leaves_without_being_reaped_inside_never_makes_cpu_negative() {
        // 2 is orphaned out of the tree (reaped by init): no cutime in the tree; the root's own
        // 3 ticks still count.
        let rounds = [
            vec![stat(1, 0, 10, 0), stat(2, 1, 40, 0)],
            vec![stat(1, 0, 13, 0)],
        ];
        assert_close(&cpu_per_round(1, &rounds), &[3.0]);
    }

    #[test]
    fn a_missing_root_gives_no_sample_and_the_next_interval_spans_the_gap() {
        let rounds = [vec![stat(1, 0, 10, 0)], vec![], vec![stat(1, 0, 50, 0)]];
        // 40 ticks over 2 s at 100 ticks/s.
        assert_close(&cpu_per_round(1, &rounds), &[20.0]);
    }

    #[test]
    fn stat_parsing_survives_odd_names_and_odd_content() {
        let line = "42 (we ird) )name) S 7 42 42 0 -1 4194560 100 0 0 0 11 4 6 3 20 0 1 0 \
                    1234 10000 250 18446744073709551615";
        let s = parse_stat(42, line).expect("parses");
        assert_eq!(
            (s.ppid, s.ticks, s.reaped_children_ticks, s.rss_pages),
            (7, 15, 9, 250)
        );
        assert_eq!(parse_stat(42, ""), None);
        assert_eq!(parse_stat(42, "42 (x) S 7 1 2"), None);
        assert_eq!(parse_stat(42, "42 (x) S notapid"), None);
        // A negative signed field counts as zero rather than dropping the process.
        let negative = line.replace(" 6 3 ", " -6 3 ");
        assert_eq!(
            parse_stat(42, &negative).map(|s| s.reaped_children_ticks),
            Some(3)
        );
    }

    #[test]
    fn pss_and_peak_parse_from_literal_proc_text() {
        let rollup = "55cecc504000-7ffee3a11000 ---p 00000000 00:00 0    [rollup]\n\
                      Rss:                1728 kB\n\
                      Pss:                 336 kB\n\
                      Pss_Dirty:           112 kB\n\
                      Pss_Anon:            112 kB\n\
                      Shared_Clean:       1576 kB\n";
        assert_eq!(parse_pss_bytes(rollup), Some(336 * 1024));
        // Only Pss_ lines, or garbage: unknown, not zero.
        assert_eq!(parse_pss_bytes("Pss_Anon: 112 kB\n"), None);
        assert_eq!(parse_pss_bytes("Pss: lots kB\n"), None);
        assert_eq!(parse_pss_bytes(""), None);
        let status =
            "Name:\tpostgres\nVmPeak:\t  300000 kB\nVmHWM:\t    2064 kB\nVmRSS:\t 1900 kB\n";
        assert_eq!(parse_vm_hwm_bytes(status), Some(2064 * 1024));
        assert_eq!(parse_vm_hwm_bytes("VmHWM:\t2064\n"), None);
    }

    #[test]
    fn sampler_on_own_process_summarises_and_writes_the_csv() {
        let dir = tempfile::tempdir().expect("tempdir");
        let csv_path = dir.path().join("resources.csv");
        let own = Some(std::process::id());
        let watched = Watched {
            target_pid: own,
            postgres_pid: own,
            cpus: None,
        };
        let sampler = Sampler::start(watched, Some(&csv_path)).expect("starts");
        std::thread::sleep(Duration::from_millis(600));
        let summary = sampler.stop();

        assert!(summary.samples >= 1, "{summary:?}");
        let generator_peak = summary.generator_rss_peak_bytes.expect("generator RSS");
        assert!(generator_peak > 0);
        assert!(
            summary.generator_rss_hwm_bytes >= Some(generator_peak),
            "{summary:?}"
        );
        assert!(summary.target_rss_hwm_bytes.is_some(), "{summary:?}");
        // Our own smaps_rollup is readable, so the "Postgres" memory figure is PSS.
        assert!(summary.postgres_memory_is_pss, "{summary:?}");
        assert_eq!(
            summary.postgres_rss_peak_bytes,
            summary.postgres_pss_peak_bytes
        );

        let text = std::fs::read_to_string(&csv_path).expect("csv written");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        let columns = CSV_HEADER.split(',').count();
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len() as u64, summary.samples, "{text}");
        for row in rows {
            let cells: Vec<&str> = row.split(',').collect();
            assert_eq!(cells.len(), columns, "{row}");
            assert!(
                cells.iter().all(|c| !c.is_empty()),
                "every figure known: {row}"
            );
        }
    }

    #[test]
    fn stop_returns_promptly_and_without_a_csv() {
        let sampler = Sampler::start(Watched::default(), None).expect("starts");
        std::thread::sleep(Duration::from_millis(50));
        // Stopped from another thread so that a sampler that never stops fails here, not hangs.
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The receiver is gone only if the test already failed.
            let _ = done_tx.send(sampler.stop());
        });
        // Generous: the goal (well under a period) is not a wall-clock assert; this catches a
        // sampler that ignores the request or sleeps through it.
        let summary = done_rx
            .recv_timeout(Duration::from_secs(2))
            .expect("stop() returned within 2 s");
        assert_eq!(summary.target_rss_peak_bytes, None);
        assert_eq!(summary.postgres_rss_peak_bytes, None);
        assert!(!summary.postgres_memory_is_pss);
    }

    #[test]
    fn the_tree_walk_finds_a_spawned_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        let has_child =
            |tree: &[ProcStat]| tree.iter().any(|s| s.pid == child.id() && s.ppid == me);
        let in_scan = has_child(&tree_from_scan(me, &scan_all()));
        // Kernels without CONFIG_PROC_CHILDREN (like some CI VMs) only have the scan.
        let in_children_files = (TreeWalk::detect() == TreeWalk::ChildrenFiles)
            .then(|| has_child(&tree_from_children_files(me)));
        let _ = child.kill();
        let _ = child.wait();
        assert!(in_scan);
        assert_ne!(in_children_files, Some(false));
    }

    #[test]
    fn cpus_allowed_is_at_least_one() {
        assert!(cpus_allowed() >= 1);
    }

    /// Ends the real-process test's children whatever happens: the stop file lets the busy child
    /// finish, and the outer shell (ours) is killed by its id.
    struct ShellGuard {
        outer: std::process::Child,
        stop_file: std::path::PathBuf,
    }

    impl Drop for ShellGuard {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.stop_file, b"");
            let _ = self.outer.kill();
            let _ = self.outer.wait();
        }
    }

    #[test]
    fn a_real_reaped_child_is_counted_once() {
        // An outer shell runs a busy inner shell until told to stop, reaps it, then waits on
        // stdin. Sampled through /proc while the inner one is seen working, then after the reap,
        // the counted ticks must match what the kernel says the two used in that time.
        let dir = tempfile::tempdir().expect("tempdir");
        let stop_file = dir.path().join("stop");
        let outer = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"sh -c 'while [ ! -e "$STOP_FILE" ]; do :; done'; read _"#)
            .env("STOP_FILE", &stop_file)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let root = outer.id();
        let mut guard = ShellGuard { outer, stop_file };
        let walk = TreeWalk::detect();
        let tree_now = || match walk {
            TreeWalk::ChildrenFiles => tree_from_children_files(root),
            TreeWalk::ProcScan => tree_from_scan(root, &scan_all()),
        };
        let total = |tree: &[ProcStat]| {
            tree.iter()
                .map(|s| s.ticks + s.reaped_children_ticks)
                .sum::<u64>()
        };
        let deadline = Instant::now() + Duration::from_secs(30);

        // Baseline once the inner shell exists.
        let mut tracker = TreeTracker::default();
        let baseline = loop {
            let tree = tree_now();
            if tree.len() == 2 {
                break tree;
            }
            assert!(Instant::now() < deadline, "inner shell never appeared");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(tracker.interval_ticks(root, &baseline), None);
        let mut counted = 0;
        let mut inner_last_seen = 0;
        // Watch it work until it has visibly used 20 ticks.
        while inner_last_seen < 20 {
            assert!(Instant::now() < deadline, "inner shell never got 20 ticks");
            std::thread::sleep(Duration::from_millis(20));
            let tree = tree_now();
            if let Some(inner) = tree.iter().find(|s| s.pid != root) {
                inner_last_seen = inner.ticks;
            }
            counted += tracker.interval_ticks(root, &tree).expect("root alive");
        }
        std::fs::write(&guard.stop_file, b"").expect("stop file");
        // The reap: the outer shell alone, with the inner one's time in its cutime.
        let after = loop {
            let tree = tree_now();
            if tree.len() == 1 && tree[0].reaped_children_ticks > 0 {
                break tree;
            }
            assert!(Instant::now() < deadline, "inner shell never reaped");
            std::thread::sleep(Duration::from_millis(10));
        };
        counted += tracker.interval_ticks(root, &after).expect("root alive");
        let truth = total(&after).saturating_sub(total(&baseline));
        // Ticks are rounded separately for live and reaped time: allow a few either way. Counting
        // the reaped child twice would be off by about `inner_last_seen` (≥ 20).
        assert!(
            counted.abs_diff(truth) <= 3,
            "counted {counted} ticks, the kernel says {truth} (inner last seen at {inner_last_seen})"
        );
        drop(guard.outer.stdin.take());
    }
}
