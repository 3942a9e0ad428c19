//! The hello server as a child process (`apibench hello-server`), so that the generator's CPU
//! figures (the sampler reads this process's `/proc` entry) never include the server's.
//!
//! The child must never outlive the calibration: [`HelloChild`] kills and reaps it on drop
//! (every return, every error, the first Ctrl-C), and the child watches its stdin, a pipe only
//! this process holds, so even a second Ctrl-C's immediate `exit` (no destructors) or a SIGKILL
//! of apibench closes the pipe and ends it. Its own process group keeps the terminal's Ctrl-C
//! for apibench, which decides when the server stops.

use super::CalibrateError;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the child may take to print its address.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The line the hello server prints once bound (its address follows).
pub const LISTENING_PREFIX: &str = "listening on http://";

/// A running hello-server child; killed and reaped on drop.
#[derive(Debug)]
pub struct HelloChild {
    child: Child,
    /// Held open: the child exits when it closes.
    _stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
}

impl HelloChild {
    /// Starts `program hello-server --listen 127.0.0.1:0 --exit-with-stdin [--cpu N]` and waits
    /// (blocking, at most [`START_TIMEOUT`]) for its address.
    pub fn start(program: &Path, cpu: Option<usize>) -> Result<HelloChild, CalibrateError> {
        let mut command = Command::new(program);
        command
            .args([
                "hello-server",
                "--listen",
                "127.0.0.1:0",
                "--exit-with-stdin",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(cpu) = cpu {
            command.args(["--cpu", &cpu.to_string()]);
        }
        let mut child = command.spawn().map_err(|e| {
            CalibrateError::Server(format!(
                "cannot start the hello server ({} hello-server): {e}",
                program.display()
            ))
        })?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        // From here on, every early return kills the child through the guard's drop.
        let mut guard = HelloChild {
            child,
            _stdin: stdin,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let Some(stderr) = stderr else {
            return Err(CalibrateError::Server(
                "the hello server's stderr was not captured".into(),
            ));
        };
        // The reader thread reports the address (or, at EOF, everything the child said), then
        // keeps draining stderr so the child never blocks on a full pipe.
        let (tx, rx) = mpsc::channel::<Result<SocketAddr, String>>();
        let spawned = std::thread::Builder::new()
            .name("apibench-hello-stderr".into())
            .spawn(move || {
                let mut said = Vec::new();
                let mut reported = false;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if !reported && let Some(addr) = parse_listening_line(&line) {
                        let _ = tx.send(Ok(addr));
                        reported = true;
                    } else if !reported && said.len() < 20 {
                        said.push(line);
                    }
                }
                if !reported {
                    let _ = tx.send(Err(said.join("\n")));
                }
            });
        if let Err(e) = spawned {
            return Err(CalibrateError::Server(format!(
                "cannot start a thread to read the hello server's output: {e}"
            )));
        }
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addr)) => {
                guard.addr = addr;
                Ok(guard)
            }
            Ok(Err(said)) => {
                let status = guard
                    .child
                    .wait()
                    .map_or_else(|e| e.to_string(), |s| s.to_string());
                Err(CalibrateError::Server(format!(
                    "the hello server exited before it listened ({status}){}{said}",
                    if said.is_empty() { "" } else { ": " }
                )))
            }
            Err(_) => Err(CalibrateError::Server(format!(
                "the hello server did not print its address within {} s",
                START_TIMEOUT.as_secs()
            ))),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for HelloChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a `listening on http://ADDR` line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.split(LISTENING_PREFIX).nth(1)?;
    rest.split_whitespace()
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_read_from_the_listening_line() {
        assert_eq!(
            parse_listening_line("listening on http://127.0.0.1:41234"),
            Some(SocketAddr::from(([127, 0, 0, 1], 41234)))
        );
        assert_eq!(
            parse_listening_line("hello: listening on http://[::1]:8099/ (pid 7)"),
            "[::1]:8099".parse().ok()
        );
        assert_eq!(parse_listening_line("listening on http://nowhere"), None);
        assert_eq!(parse_listening_line("starting"), None);
    }

    #[test]
    fn a_program_that_is_not_there_is_a_server_error_naming_it() {
        let err =
            HelloChild::start(Path::new("/nonexistent/apibench"), None).expect_err("cannot start");
        assert!(err.to_string().contains("/nonexistent/apibench"), "{err}");
    }
}
