//! The generator's worker threads: each a single-threaded tokio runtime (its own reactor, its own
//! timers, no work stealing), optionally pinned to one of the `--generator-cpus`.
//!
//! A user's whole life runs on one worker: its timerfd, its connection and its sample buffer never
//! cross threads, and the only thing workers share on the hot path is read-only (the plan, the
//! schedule's start). Worker `w` owns the schedule's slots `w, w + N, w + 2N, …`.

use std::fmt;
use std::str::FromStr;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Most CPUs a list may name (well above any machine this runs on).
const MAX_CPU: usize = 4096;

/// A set of CPU numbers, as `taskset -c` writes them: `1`, `0,2`, `4-7`, `0-1,6`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct CpuList(Vec<usize>);

impl CpuList {
    pub fn new(mut cpus: Vec<usize>) -> CpuList {
        cpus.sort_unstable();
        cpus.dedup();
        CpuList(cpus)
    }

    pub fn cpus(&self) -> &[usize] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs are written back as ranges: 0,1,2,5 → 0-2,5.
        let mut first = true;
        let mut i = 0;
        while i < self.0.len() {
            let start = self.0[i];
            let mut end = start;
            while i + 1 < self.0.len() && self.0[i + 1] == end + 1 {
                i += 1;
                end = self.0[i];
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end > start {
                write!(f, "{start}-{end}")?;
            } else {
                write!(f, "{start}")?;
            }
            i += 1;
        }
        Ok(())
    }
}

impl From<CpuList> for String {
    fn from(list: CpuList) -> String {
        list.to_string()
    }
}

impl TryFrom<String> for CpuList {
    type Error = String;
    fn try_from(text: String) -> Result<CpuList, String> {
        parse_cpu_list(&text)
    }
}

impl FromStr for CpuList {
    type Err = String;
    fn from_str(text: &str) -> Result<CpuList, String> {
        parse_cpu_list(text)
    }
}

/// Parses a CPU list (`1`, `0,2`, `4-7`); the error says which part is wrong.
pub fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!(
                "`{text}`: an empty entry (write e.g. `1`, `0,2` or `4-7`)"
            ));
        }
        let number = |s: &str| -> Result<usize, String> {
            let n: usize = s
                .trim()
                .parse()
                .map_err(|_| format!("`{s}` in `{text}` is not a CPU number"))?;
            if n >= MAX_CPU {
                return Err(format!("CPU {n} in `{text}` is out of range (< {MAX_CPU})"));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("`{part}` in `{text}`: the range runs backwards"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(number(part)?),
        }
    }
    Ok(CpuList::new(cpus))
}

/// `cpus` as the kernel's affinity mask.
pub fn cpu_set(cpus: &CpuList) -> Result<nix::sched::CpuSet, String> {
    let mut set = nix::sched::CpuSet::new();
    for &cpu in cpus.cpus() {
        set.set(cpu)
            .map_err(|e| format!("CPU {cpu} cannot be used: {e}"))?;
    }
    Ok(set)
}

/// The CPUs thread (or process) `pid` may run on; `None` when the kernel will not say.
pub fn affinity(pid: nix::unistd::Pid) -> Option<CpuList> {
    let set = nix::sched::sched_getaffinity(pid).ok()?;
    Some(CpuList::new(
        (0..nix::sched::CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
    ))
}

/// Pins the calling thread to `cpus` (`sched_setaffinity` on thread id 0 = this thread).
pub fn pin_current_thread(cpus: &CpuList) -> Result<(), String> {
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpu_set(cpus)?)
        .map_err(|e| format!("cannot pin to CPUs {cpus}: {e}"))
}

/// Why the workers did not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("generator worker {index}: {message}")]
    Start { index: usize, message: String },
}

/// One worker thread and the handle to spawn on its runtime.
struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// The generator's worker threads; stopped (their tasks dropped, threads joined) on drop.
pub struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Starts `count` (≥ 1) workers. With `cpus`, worker `w` is pinned to `cpus[w mod len]`
    /// (one CPU each when there are as many CPUs as workers, else shared).
    pub fn start(count: usize, cpus: Option<&CpuList>) -> Result<Workers, WorkerError> {
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let pin = cpus.filter(|c| !c.is_empty()).map(|c| {
                if c.len() >= count {
                    CpuList::new(vec![c.cpus()[index % c.len()]])
                } else {
                    c.clone()
                }
            });
            let (handle_tx, handle_rx) = mpsc::channel::<Result<Handle, String>>();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("apibench-gen-{index}"))
                .spawn(move || {
                    if let Some(pin) = &pin
                        && let Err(message) = pin_current_thread(pin)
                    {
                        let _ = handle_tx.send(Err(message));
                        return;
                    }
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = handle_tx.send(Err(format!("tokio runtime: {e}")));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                    // Dropping the runtime drops every task still on it (cancelled users).
                    drop(runtime);
                })
                .map_err(|e| WorkerError::Start {
                    index,
                    message: format!("cannot start the thread: {e}"),
                })?;
            let handle = match handle_rx.recv() {
                Ok(Ok(handle)) => handle,
                Ok(Err(message)) => {
                    let _ = thread.join();
                    return Err(WorkerError::Start { index, message });
                }
                Err(_) => {
                    let _ = thread.join();
                    return Err(WorkerError::Start {
                        index,
                        message: "the thread ended before its runtime started".into(),
                    });
                }
            };
            workers.push(Worker {
                handle,
                stop: Some(stop_tx),
                thread: Some(thread),
            });
        }
        Ok(Workers { workers })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// The runtime of worker `index mod len`.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.workers[index % self.workers.len()].handle
    }

    /// Stops every worker and waits for its thread (blocking: call off the async runtime, or
    /// when every task on the workers is done, which makes it immediate).
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_like_taskset() {
        assert_eq!(parse_cpu_list("1").map(|c| c.cpus().to_vec()), Ok(vec![1]));
        assert_eq!(
            parse_cpu_list("0-2,5, 7").map(|c| c.cpus().to_vec()),
            Ok(vec![0, 1, 2, 5, 7])
        );
        assert_eq!(
            parse_cpu_list("3,1,1").map(|c| c.to_string()),
            Ok("1,3".into())
        );
        assert_eq!(
            parse_cpu_list("0-2,5").map(|c| c.to_string()),
            Ok("0-2,5".into())
        );
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("a").is_err_and(|e| e.contains("`a`")));
        assert!(parse_cpu_list("5-2").is_err_and(|e| e.contains("backwards")));
        assert!(parse_cpu_list("99999").is_err());
    }

    #[test]
    fn workers_run_tasks_on_their_own_threads_and_stop() {
        let workers = Workers::start(2, None).expect("workers start");
        let names: Vec<String> = (0..2)
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                workers.handle(i).spawn(async move {
                    let _ = tx.send(
                        std::thread::current()
                            .name()
                            .unwrap_or_default()
                            .to_string(),
                    );
                });
                rx.recv().expect("the task ran")
            })
            .collect();
        assert_eq!(names, ["apibench-gen-0", "apibench-gen-1"]);
        workers.stop();
    }

    #[test]
    fn pinned_workers_run_on_their_cpu() {
        // The first CPU this process may use (not necessarily 0 under `taskset`).
        let mine = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
        let first = (0..MAX_CPU)
            .find(|c| mine.is_set(*c).unwrap_or(false))
            .expect("some CPU is allowed");
        let list = CpuList::new(vec![first]);
        let workers = Workers::start(1, Some(&list)).expect("pinned worker starts");
        let (tx, rx) = mpsc::channel();
        workers.handle(0).spawn(async move {
            let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0));
            let _ = tx.send(set.map(|s| {
                (0..MAX_CPU)
                    .filter(|c| s.is_set(*c).unwrap_or(false))
                    .collect::<Vec<_>>()
            }));
        });
        assert_eq!(rx.recv().expect("ran").ok(), Some(vec![first]));
    }
}
