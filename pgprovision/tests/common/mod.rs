//! Process and connection helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};

/// The state letter of `/proc/<pid>/stat` (R, S, Z, …), or `None` if there is no such process.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(") ")? + 2..].chars().next()
}

/// True if `pid` exists and is not a zombie (a dead process its parent has not reaped yet).
pub fn process_running(pid: u32) -> bool {
    matches!(process_state(pid), Some(state) if state != 'Z' && state != 'X')
}

/// The pids whose parent is `parent` (the postmaster's backends and auxiliary processes).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let fields = &stat[stat.rfind(") ")? + 2..];
                    fields.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// Waits up to `patience` for `pids` to stop running and `dir` to disappear; returns what is
/// still there (empty when all is clean).
pub fn wait_until_gone(pids: &[u32], dir: &Path, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        let mut left: Vec<String> = pids
            .iter()
            .filter(|pid| process_running(**pid))
            .map(|pid| format!("process {pid}"))
            .collect();
        if dir.exists() {
            left.push(format!("directory {}", dir.display()));
        }
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `SELECT <n>::int4` on `url` and returns the value.
pub async fn select_int(url: &str, n: i32) -> i32 {
    let mut connection = PgConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let value: i32 = sqlx::query_scalar("SELECT $1::int4")
        .bind(n)
        .fetch_one(&mut connection)
        .await
        .unwrap_or_else(|e| panic!("SELECT on {url}: {e}"));
    let _ = connection.close().await;
    value
}
