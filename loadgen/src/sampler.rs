//! Resource sampling from `/proc` every 250 ms: RSS and CPU of the target's process tree (Node may
//! fork; children count), of Postgres (the postmaster and its backends, when its pid is known —
//! not for a container), and of apibench itself. Written to `resources.csv` as it goes.
//!
//! RSS is the sum over the tree's processes, so pages shared between Postgres backends
//! (shared_buffers) are counted once per process that touched them: read it as an upper bound.
//! CPU% is of one core (200 % = two cores busy). This module only reads `/proc`; it never signals.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub const SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// The CSV header; units are in the column names.
pub const CSV_HEADER: &str = "elapsed_ms,target_rss_bytes,target_cpu_percent,target_processes,postgres_rss_bytes,postgres_cpu_percent,postgres_processes,generator_rss_bytes,generator_cpu_percent";

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
    pub postgres_rss_peak_bytes: Option<u64>,
    pub postgres_cpu_mean_percent: Option<f64>,
    pub generator_rss_peak_bytes: Option<u64>,
    pub generator_cpu_mean_percent: Option<f64>,
}

#[derive(Default)]
struct Accumulator {
    rss_peak: u64,
    cpu_sum: f64,
    n: u64,
}

impl Accumulator {
    fn add(&mut self, s: &TreeSample) {
        self.rss_peak = self.rss_peak.max(s.rss_bytes);
        self.cpu_sum += s.cpu_percent;
        self.n += 1;
    }
    fn peak(&self) -> Option<u64> {
        (self.n > 0).then_some(self.rss_peak)
    }
    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.cpu_sum / self.n as f64)
    }
}

/// CPU ticks per pid from the previous sample, to turn totals into rates.
#[derive(Default)]
pub struct TreeTracker {
    previous: HashMap<u32, u64>,
    previous_reaped: u64,
    previous_at: Option<Instant>,
}

struct ProcStat {
    ppid: u32,
    ticks: u64,
    reaped_children_ticks: u64,
    rss_pages: u64,
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ')': state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14) ... rss(21)
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        ppid: u32::try_from(num(1)?).ok()?,
        ticks: num(11)? + num(12)?,
        reaped_children_ticks: num(13)? + num(14)?,
        rss_pages: num(21)?,
    })
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The root and its descendants, from a (pid, ppid) listing.
pub fn descendants(root: u32, parents: &[(u32, u32)]) -> HashSet<u32> {
    let mut tree = HashSet::from([root]);
    loop {
        let before = tree.len();
        for (pid, ppid) in parents {
            if tree.contains(ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
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

impl TreeTracker {
    /// Samples the tree rooted at `root` given this round's stats.
    fn sample(
        &mut self,
        root: u32,
        stats: &HashMap<u32, ProcStat>,
        parents: &[(u32, u32)],
        now: Instant,
        ticks_per_sec: f64,
        page_bytes: u64,
    ) -> Option<TreeSample> {
        let root_stat = stats.get(&root)?;
        let tree = descendants(root, parents);
        let mut rss_pages = 0;
        let mut delta_ticks = 0u64;
        let mut current = HashMap::with_capacity(tree.len());
        for pid in &tree {
            if let Some(stat) = stats.get(pid) {
                rss_pages += stat.rss_pages;
                let before = self.previous.get(pid).copied().unwrap_or(0);
                delta_ticks += stat.ticks.saturating_sub(before);
                current.insert(*pid, stat.ticks);
            }
        }
        // Children that exited and were reaped hand their time to the root's cutime/cstime.
        delta_ticks += root_stat
            .reaped_children_ticks
            .saturating_sub(self.previous_reaped);
        let cpu_percent = match self.previous_at {
            Some(at) if now > at => {
                delta_ticks as f64 / ticks_per_sec / (now - at).as_secs_f64() * 100.0
            }
            _ => 0.0,
        };
        let first = self.previous_at.is_none();
        self.previous = current;
        self.previous_reaped = root_stat.reaped_children_ticks;
        self.previous_at = Some(now);
        if first {
            // No rate yet; the next sample has one.
            return None;
        }
        Some(TreeSample {
            rss_bytes: rss_pages * page_bytes,
            cpu_percent,
            processes: u32::try_from(tree.len()).unwrap_or(u32::MAX),
        })
    }
}

/// Which processes to watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    pub target_pid: Option<u32>,
    pub postgres_pid: Option<u32>,
}

/// Samples until `stop` turns true, writing `csv_path`; returns the aggregates.
pub async fn run(
    watched: Watched,
    csv_path: &Path,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<ResourceSummary> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(csv_path)?);
    writeln!(file, "{CSV_HEADER}")?;
    let started = Instant::now();
    let self_pid = std::process::id();
    let ticks_per_sec = clock_ticks_per_sec();
    let page_bytes = page_size_bytes();
    let (mut target, mut postgres, mut generator) = (
        TreeTracker::default(),
        TreeTracker::default(),
        TreeTracker::default(),
    );
    let (mut target_acc, mut postgres_acc, mut generator_acc) = (
        Accumulator::default(),
        Accumulator::default(),
        Accumulator::default(),
    );
    let mut interval = tokio::time::interval(SAMPLE_PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let now = Instant::now();
        let pids = all_pids();
        let mut stats = HashMap::with_capacity(pids.len());
        let mut parents = Vec::with_capacity(pids.len());
        for pid in pids {
            if let Some(stat) = read_stat(pid) {
                parents.push((pid, stat.ppid));
                stats.insert(pid, stat);
            }
        }
        let t = watched
            .target_pid
            .and_then(|pid| target.sample(pid, &stats, &parents, now, ticks_per_sec, page_bytes));
        let p = watched
            .postgres_pid
            .and_then(|pid| postgres.sample(pid, &stats, &parents, now, ticks_per_sec, page_bytes));
        // apibench itself: just this process (its threads are in its own stat line).
        let g = generator.sample(self_pid, &stats, &[], now, ticks_per_sec, page_bytes);
        let Some(g) = g else { continue };
        let cell = |s: Option<TreeSample>| match s {
            Some(s) => (
                s.rss_bytes.to_string(),
                format!("{:.1}", s.cpu_percent),
                s.processes.to_string(),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let (tr, tc, tn) = cell(t);
        let (pr, pc, pn) = cell(p);
        writeln!(
            file,
            "{},{tr},{tc},{tn},{pr},{pc},{pn},{},{:.1}",
            started.elapsed().as_millis(),
            g.rss_bytes,
            g.cpu_percent
        )?;
        if let Some(t) = t {
            target_acc.add(&t);
        }
        if let Some(p) = p {
            postgres_acc.add(&p);
        }
        generator_acc.add(&g);
    }
    file.flush()?;
    Ok(ResourceSummary {
        samples: generator_acc.n,
        target_rss_peak_bytes: target_acc.peak(),
        target_cpu_mean_percent: target_acc.mean(),
        postgres_rss_peak_bytes: postgres_acc.peak(),
        postgres_cpu_mean_percent: postgres_acc.mean(),
        generator_rss_peak_bytes: generator_acc.peak(),
        generator_cpu_mean_percent: generator_acc.mean(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
