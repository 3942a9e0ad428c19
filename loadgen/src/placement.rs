//! `[cpus]` applied: each process tree (the target, PostgreSQL) gets the scenario's affinity mask
//! on every thread of every process in it; the generator's own workers are pinned by
//! `engine::workers`. What was applied — and what could not be — is recorded in run.json, so every
//! report can say where each process ran.
//!
//! Processes forked later inherit the mask (a Node cluster's workers, PostgreSQL's backends). A
//! tree that is replaced is pinned again by whoever replaces it: a target at every spawn
//! (`target.rs`, so a `target_kill` fault's restart too), a `pg_restart`'s new postmaster by the
//! fault (`faults::actions`). This module never starts or stops a process.

use crate::engine::workers::{CpuList, affinity, cpu_set};
use crate::scenario::CpuPlacement;
use nix::sched::sched_setaffinity;
use nix::unistd::Pid;

/// Where each process tree ran, for run.json and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlacementInfo {
    /// The scenario's `[cpus]` (what was asked).
    #[serde(flatten)]
    pub cpus: CpuPlacement,
    /// The CPUs apibench itself was allowed when the run started (its affinity mask).
    pub allowed: String,
    /// One line per tree that was not pinned as asked, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl PlacementInfo {
    /// "target on CPU 1, PostgreSQL on CPU 0, generator on CPU 1" (unpinned trees say "any").
    pub fn describe(&self) -> String {
        let one = |what: &str, cpus: &Option<CpuList>| match cpus {
            Some(c) if c.len() == 1 => format!("{what} on CPU {c}"),
            Some(c) => format!("{what} on CPUs {c}"),
            None => format!("{what} on any of {}", self.allowed),
        };
        format!(
            "{}, {}, {}",
            one("target", &self.cpus.target),
            one("PostgreSQL", &self.cpus.postgres),
            one("generator", &self.cpus.generator)
        )
    }
}

/// The CPUs this thread may run on (its affinity mask), else every CPU the machine has.
pub fn allowed_cpus() -> CpuList {
    affinity(Pid::this()).unwrap_or_else(|| {
        let n = std::thread::available_parallelism().map_or(1, usize::from);
        CpuList::new((0..n).collect())
    })
}

/// Refuses a `[cpus]` entry naming a CPU this process may not use; the message names the field.
pub fn check(placement: &CpuPlacement, allowed: &CpuList) -> Result<(), String> {
    for (field, cpus) in [
        ("target", &placement.target),
        ("postgres", &placement.postgres),
        ("generator", &placement.generator),
    ] {
        if let Some(cpus) = cpus
            && let Some(bad) = cpus.cpus().iter().find(|c| !allowed.cpus().contains(c))
        {
            return Err(format!(
                "[cpus] {field} = \"{cpus}\": CPU {bad} is not one this process may use \
                 (allowed: {allowed})"
            ));
        }
    }
    Ok(())
}

/// Pins every thread of every process in `root`'s tree to `cpus`; returns how many threads were
/// pinned. Two passes, so a thread or child born during the first is caught by the second.
pub fn pin_tree(root: u32, cpus: &CpuList) -> Result<usize, String> {
    let set = cpu_set(cpus)?;
    let mut pinned = 0;
    for _ in 0..2 {
        pinned = 0;
        for pid in crate::sampler::tree_pids(root) {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for tid in tasks.filter_map(|t| t.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
                match sched_setaffinity(Pid::from_raw(tid), &set) {
                    Ok(()) => pinned += 1,
                    // The thread ended between the listing and the call.
                    Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => {
                        return Err(format!(
                            "cannot pin thread {tid} of pid {pid} to {cpus}: {e}"
                        ));
                    }
                }
            }
        }
    }
    if pinned == 0 {
        return Err(format!("process {root} is gone; nothing was pinned"));
    }
    Ok(pinned)
}

/// Pins every thread of this process to `cpus` (threads started later inherit it from the
/// thread that starts them); returns how many were pinned. Children already running keep their
/// own masks; children started later inherit it — the runner gives targets and PostgreSQL their
/// own mask explicitly.
pub fn pin_own_threads(cpus: &CpuList) -> Result<usize, String> {
    let set = cpu_set(cpus)?;
    let tasks = std::fs::read_dir("/proc/self/task")
        .map_err(|e| format!("cannot list this process's threads: {e}"))?;
    let mut pinned = 0;
    for tid in tasks.filter_map(|t| t.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        match sched_setaffinity(Pid::from_raw(tid), &set) {
            Ok(()) => pinned += 1,
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(format!("cannot pin thread {tid} to {cpus}: {e}")),
        }
    }
    Ok(pinned)
}

/// The CPUs thread `tid` may run on (for tests and diagnostics).
pub fn affinity_of(tid: u32) -> Option<CpuList> {
    affinity(Pid::from_raw(i32::try_from(tid).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_tree_is_pinned_on_every_thread_and_the_record_describes_it() {
        let allowed = allowed_cpus();
        let first = *allowed.cpus().first().expect("at least one CPU");
        // A shell with a child: both must end up on `first`.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & wait"])
            .spawn()
            .expect("sh starts");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let only = CpuList::new(vec![first]);
        let pinned = pin_tree(child.id(), &only).expect("pinned");
        assert!(pinned >= 2, "the shell and its sleep: {pinned}");
        for pid in crate::sampler::tree_pids(child.id()) {
            assert_eq!(affinity_of(pid), Some(only.clone()), "pid {pid}");
        }
        let _ = child.kill();
        let _ = child.wait();

        let info = PlacementInfo {
            cpus: CpuPlacement {
                target: Some(only.clone()),
                postgres: None,
                generator: Some(CpuList::new(vec![0, 1])),
            },
            allowed: "0-1".into(),
            notes: Vec::new(),
        };
        assert_eq!(
            info.describe(),
            format!("target on CPU {first}, PostgreSQL on any of 0-1, generator on CPUs 0-1")
        );
    }

    #[test]
    fn a_cpu_outside_the_mask_is_refused_by_field() {
        let allowed = CpuList::new(vec![0, 1]);
        let placement = CpuPlacement {
            target: None,
            postgres: Some(CpuList::new(vec![7])),
            generator: None,
        };
        let err = check(&placement, &allowed).unwrap_err();
        assert!(err.contains("[cpus] postgres = \"7\""), "{err}");
        assert!(err.contains("allowed: 0-1"), "{err}");
        assert!(check(&CpuPlacement::default(), &allowed).is_ok());
    }

    #[test]
    fn a_gone_process_is_an_error_not_a_panic() {
        let err = pin_tree(u32::MAX - 7, &CpuList::new(vec![0])).unwrap_err();
        assert!(err.contains("gone"), "{err}");
    }
}
