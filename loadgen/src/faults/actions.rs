//! Running a phase's faults beside its load: wait for the schedule's start, fire each fault at
//! its time, record when its injection started and ended; when the load ends first, whatever is
//! still going is dropped — and a dropped pause resumes ([`PauseGuard`]).

use super::{FaultAction, FaultSpec};
use crate::database::Databases;
use crate::target::RunningTarget;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// What the faults act on.
pub struct FaultHost<'a> {
    pub target: &'a RunningTarget,
    pub databases: Option<&'a Databases>,
    /// The variant's database copy: the sessions `pg_terminate` ends.
    pub database_name: String,
    /// `[cpus] postgres`: a restarted postmaster and its children are pinned here again.
    pub postgres_cpus: Option<&'a crate::engine::workers::CpuList>,
}

/// The load's timing, as the faults need it.
pub struct LoadClock {
    /// The schedule's start on the wall clock, set when the load starts (the interval log's
    /// StartTime).
    pub schedule_start: Arc<OnceLock<SystemTime>>,
    pub warmup: Duration,
    /// The schedule's end, from its start: no fault starts at or after it.
    pub end: Duration,
}

/// One fault's injection, µs from the schedule's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub started_us: u64,
    /// `None`: still going when the load ended.
    pub ended_us: Option<u64>,
    pub detail: Option<String>,
    /// Why the injection failed.
    pub error: Option<String>,
}

/// Runs `load` to its end with `faults` injected beside it, and returns its output with each
/// fault's injection (`None`: the load ended before its time). Without faults, just `load`.
pub async fn beside_load<F: Future>(
    load: F,
    faults: &[FaultSpec],
    host: &FaultHost<'_>,
    clock: &LoadClock,
) -> (F::Output, Vec<Option<Injection>>) {
    let mut injections = vec![None; faults.len()];
    if faults.is_empty() {
        return (load.await, injections);
    }
    let output = {
        let injecting = inject_all(faults, host, clock, &mut injections);
        tokio::pin!(load);
        tokio::pin!(injecting);
        let mut injecting_done = false;
        loop {
            tokio::select! {
                output = &mut load => break output,
                () = &mut injecting, if !injecting_done => injecting_done = true,
            }
        }
        // `injecting` is dropped here: a pause still going resumes now.
    };
    (output, injections)
}

async fn inject_all(
    faults: &[FaultSpec],
    host: &FaultHost<'_>,
    clock: &LoadClock,
    injections: &mut [Option<Injection>],
) {
    let start = schedule_start(&clock.schedule_start).await;
    let since_start = || micros(start.elapsed());
    for (fault, slot) in faults.iter().zip(injections.iter_mut()) {
        let due = clock.warmup.saturating_add(fault.at);
        if due >= clock.end {
            // `apibench run --duration` made the load shorter than the scenario's faults.
            return;
        }
        tokio::time::sleep_until((start + due).into()).await;
        let injection = slot.insert(Injection {
            started_us: since_start(),
            ended_us: None,
            detail: None,
            error: None,
        });
        tracing::info!("fault {} injected", fault.action);
        match inject(fault, host).await {
            Ok(detail) => injection.detail = Some(detail),
            Err(error) => {
                tracing::warn!("fault {} failed: {error}", fault.action);
                injection.error = Some(error);
            }
        }
        injection.ended_us = Some(since_start());
    }
}

/// The schedule's start as an `Instant`, once the load has marked it.
async fn schedule_start(cell: &OnceLock<SystemTime>) -> Instant {
    loop {
        if let Some(wall) = cell.get() {
            let now = Instant::now();
            // A sharded run's start may be a moment ahead (`--start-at`).
            return match SystemTime::now().duration_since(*wall) {
                Ok(behind) => now.checked_sub(behind).unwrap_or(now),
                Err(ahead) => now + ahead.duration(),
            };
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Injects one fault; what it did, or why it could not.
async fn inject(fault: &FaultSpec, host: &FaultHost<'_>) -> Result<String, String> {
    let database = || {
        host.databases
            .ok_or_else(|| "this variant has no database apibench provisioned".to_string())
    };
    let pause_for = fault.duration.unwrap_or(Duration::ZERO);
    match fault.action {
        FaultAction::PgTerminate => {
            let terminated = database()?
                .terminate_connections(&host.database_name)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!(
                "{terminated} session{} of {} terminated",
                if terminated == 1 { "" } else { "s" },
                host.database_name
            ))
        }
        FaultAction::PgRestart => {
            let began = Instant::now();
            let databases = database()?;
            databases
                .restart_server()
                .await
                .map_err(|e| e.to_string())?;
            let back_after_ms = began.elapsed().as_millis();
            // The new postmaster is a new process tree: without this it would run wherever the
            // kernel puts it, e.g. on the generator's CPUs.
            let pinned = match (host.postgres_cpus, databases.postmaster_pid()) {
                (Some(cpus), Some(pid)) => match crate::placement::pin_tree(pid, cpus) {
                    Ok(_) => format!("; pinned to CPUs {cpus} again"),
                    Err(e) => format!("; NOT pinned to CPUs {cpus} again: {e}"),
                },
                _ => String::new(),
            };
            Ok(format!(
                "fast restart: PostgreSQL accepted connections again after {back_after_ms} ms{pinned}"
            ))
        }
        FaultAction::PgPause => {
            let postmaster = database()?.postmaster_pid().ok_or_else(|| {
                "no postmaster pid: not a local cluster apibench started".to_string()
            })?;
            let guard = PauseGuard::process_tree(postmaster)?;
            let stopped = guard.stopped.len();
            tokio::time::sleep(pause_for).await;
            drop(guard);
            Ok(format!(
                "postmaster and {} other processes stopped for {} ms",
                stopped.saturating_sub(1),
                pause_for.as_millis()
            ))
        }
        FaultAction::TargetPause => {
            let group = host
                .target
                .process_group()
                .ok_or_else(|| format!("{} has no process apibench started", host.target.what))?;
            let guard = PauseGuard::group(group)?;
            tokio::time::sleep(pause_for).await;
            drop(guard);
            Ok(format!(
                "process group {group} stopped for {} ms",
                pause_for.as_millis()
            ))
        }
        FaultAction::TargetKill => {
            let restarted = host
                .target
                .kill_and_restart()
                .await
                .map_err(|e| e.to_string())?;
            let pid = |p: Option<u32>| p.map_or("?".to_string(), |p| p.to_string());
            Ok(format!(
                "pid {} killed; pid {} ready after {} ms",
                pid(restarted.killed_pid),
                pid(restarted.new_pid),
                restarted.took.as_millis()
            ))
        }
    }
}

/// Something a fault stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Group(i32),
    Process(i32),
}

impl Stopped {
    fn signal(self, signal: Signal) -> nix::Result<()> {
        match self {
            Stopped::Group(pgid) => killpg(Pid::from_raw(pgid), signal),
            Stopped::Process(pid) => kill(Pid::from_raw(pid), signal),
        }
    }
}

/// Everything stopped right now, for [`resume_all_paused`].
static PAUSED: Mutex<Vec<Stopped>> = Mutex::new(Vec::new());

/// SIGCONTs whatever a fault still holds stopped: the emergency exit's last act
/// ([`crate::target::kill_all_now`]), as no guard will be dropped after it.
pub fn resume_all_paused() {
    let paused = PAUSED.lock().unwrap_or_else(PoisonError::into_inner);
    for stopped in paused.iter() {
        let _ = stopped.signal(Signal::SIGCONT);
    }
}

/// Processes stopped with SIGSTOP; dropping the guard sends SIGCONT (the pause's end, the load
/// ending, Ctrl-C, an error or a panic alike). Each is registered before it is stopped, so
/// [`resume_all_paused`] covers it too.
pub(crate) struct PauseGuard {
    stopped: Vec<Stopped>,
}

impl PauseGuard {
    /// Stops a process group (a target's tree).
    fn group(pgid: i32) -> Result<PauseGuard, String> {
        let mut guard = PauseGuard {
            stopped: Vec::new(),
        };
        guard
            .stop(Stopped::Group(pgid))
            .map_err(|e| format!("SIGSTOP to process group {pgid}: {e}"))?;
        Ok(guard)
    }

    /// Stops `root` and then its descendants (the postmaster first: stopped, it forks no new
    /// backend while the others are listed). A descendant that exited meanwhile is skipped.
    fn process_tree(root: u32) -> Result<PauseGuard, String> {
        let mut guard = PauseGuard {
            stopped: Vec::new(),
        };
        let as_pid = |pid: u32| i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"));
        guard
            .stop(Stopped::Process(as_pid(root)?))
            .map_err(|e| format!("SIGSTOP to pid {root}: {e}"))?;
        let parents = process_parents();
        for pid in crate::sampler::descendants(root, &parents) {
            if pid != root {
                let _ = guard.stop(Stopped::Process(as_pid(pid)?));
            }
        }
        Ok(guard)
    }

    fn stop(&mut self, what: Stopped) -> nix::Result<()> {
        PAUSED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(what);
        self.stopped.push(what);
        what.signal(Signal::SIGSTOP)
    }
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        for stopped in self.stopped.iter().rev() {
            let _ = stopped.signal(Signal::SIGCONT);
        }
        let mut paused = PAUSED.lock().unwrap_or_else(PoisonError::into_inner);
        for stopped in &self.stopped {
            if let Some(at) = paused.iter().position(|p| p == stopped) {
                paused.swap_remove(at);
            }
        }
    }
}

/// (pid, parent pid) of every process, from `/proc/PID/stat`.
fn process_parents() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name's closing parenthesis: state, then the parent pid.
        let ppid = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((pid, ppid))
    })
    .collect()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state letter of a process (`T` = stopped).
    fn state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .next()?
            .chars()
            .next()
    }

    fn wait_for_state(pid: u32, wanted: impl Fn(char) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if state(pid).is_some_and(&wanted) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn a_dropped_pause_resumes_the_tree_and_the_emergency_path_resumes_a_forgotten_one() {
        // sh with a child: both stop, both resume.
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .expect("sh starts");
        let root = parent.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        let child = loop {
            if let Some((pid, _)) = process_parents().into_iter().find(|(_, pp)| *pp == root) {
                break pid;
            }
            assert!(Instant::now() < deadline, "sh started no child");
            std::thread::sleep(Duration::from_millis(10));
        };
        let guard = PauseGuard::process_tree(root).expect("stops");
        assert!(wait_for_state(root, |s| s == 'T'), "the root stopped");
        assert!(wait_for_state(child, |s| s == 'T'), "its child stopped");
        drop(guard);
        assert!(wait_for_state(root, |s| s != 'T'), "the root resumed");
        assert!(wait_for_state(child, |s| s != 'T'), "its child resumed");
        assert!(PAUSED.lock().expect("lock").is_empty());

        let forgotten = PauseGuard::process_tree(root).expect("stops");
        std::mem::forget(forgotten);
        assert!(wait_for_state(root, |s| s == 'T'));
        resume_all_paused();
        assert!(
            wait_for_state(root, |s| s != 'T'),
            "resumed by the emergency path"
        );
        PAUSED.lock().expect("lock").clear();

        let _ = kill(Pid::from_raw(child as i32), Signal::SIGKILL);
        let _ = parent.kill();
        let _ = parent.wait();
    }
}
