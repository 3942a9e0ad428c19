//! Precise waits for the generator: a send is due at an exact instant, and tokio's timer wheel
//! cannot keep it — it rounds every sleep *up* to the next millisecond tick, which measured here
//! put ~1.1 ms of the generator's own lag into every send at 20 000 req/s.
//!
//! A [`GridPacer`] is one Linux `timerfd` per generator worker (`CLOCK_MONOTONIC`, an hrtimer the
//! kernel fires without timer slack) registered with the worker's own reactor (`AsyncFd`), shared
//! by every wait on that worker: a wait is an entry in an ordered map, the timerfd is armed for
//! the earliest one, and a driver task wakes whatever is due. No extra thread, no cross-thread
//! wake-up, no spinning, and no syscall per send (one `timerfd_settime` + one `read` per grid
//! step that fires).
//!
//! Designs measured and dropped: one pacer *thread* with a heap of wakers (a context switch per
//! send: 100 % of a core at 20 000 req/s where tokio's timer took 73 %), and one timerfd per user
//! (three syscalls and an `epoll` entry per send; README, "The generator's own error").
//!
//! Expiries are rounded *up* to a [`TIMER_GRID`] of 250 µs on the monotonic clock: waits due
//! in the same 250 µs fire together and one wake-up serves them all, so a worker wakes at most
//! 4 000 times a second whatever the rate. A send is then at most 250 µs late by design
//! (≈ 125 µs on average), recorded as send lag, never charged to the server. Why not finer: on
//! the development VM every wake-up from idle costs ~50 µs of CPU; a 100 µs grid took the
//! generator from 37 % (tokio's timer) to 77 % of a core at 10 000 req/s (README).
//!
//! When a timerfd cannot be made (file descriptors exhausted), waits fall back to tokio's
//! timer and the send lag, recorded by the engine, shows what that cost. Nothing here ever
//! completes before its instant.

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;

/// Expiries are rounded up to a multiple of this since the process's first timer.
pub const TIMER_GRID: Duration = Duration::from_micros(250);

/// The grid's origin.
fn grid_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// `due` rounded up to the grid: never earlier than `due`, at most [`TIMER_GRID`] later.
pub fn on_grid(due: Instant) -> Instant {
    let origin = grid_origin();
    let since = due.saturating_duration_since(origin).as_nanos();
    let grid = TIMER_GRID.as_nanos();
    let rounded = since.div_ceil(grid) * grid;
    origin + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// A timerfd as the reactor wants it.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// One timerfd per worker thread, shared by every wait on it: a wait is an entry in an ordered
/// map (due on the grid → the waiting task's waker), and the timerfd is armed for the earliest
/// entry only. A driver task on the same runtime reads each expiry and wakes every entry that is
/// due. Per send that is a map insert and a local wake — no syscall; per grid step that fires,
/// one `timerfd_settime` and one `read`. (A timerfd per user cost three syscalls per send and an
/// `epoll` entry per user: 90 % of a core at 50 000 sends/s against 84 % with this, 74 % against
/// 70 % at 30 000/s, measured side by side on the 2-core development VM.)
///
/// The lock is only ever taken by the one thread the worker runs on: it is uncontended.
pub struct GridPacer {
    fd: AsyncFd<Fd>,
    state: std::sync::Mutex<GridState>,
}

#[derive(Default)]
struct GridState {
    /// (expiry on the grid, ticket) → the waiting task.
    waiting: std::collections::BTreeMap<(Instant, u64), std::task::Waker>,
    /// The expiry the timerfd is armed for (`None`: disarmed or already fired).
    armed_for: Option<Instant>,
    next_ticket: u64,
}

impl GridPacer {
    /// A pacer on the current runtime (call from inside it): its timerfd is registered with this
    /// runtime's reactor and its driver task spawned here. `None` when no timerfd can be made.
    // `AsyncFd::new` is deprecated for I/O safety in favour of the `unsafe` `register`, which
    // this workspace forbids. The contract holds here: `Fd` owns its `OwnedFd` for the whole
    // life of the `AsyncFd` and always returns that same descriptor.
    #[allow(deprecated)]
    pub fn start() -> Option<std::sync::Arc<GridPacer>> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(std::io::Error::from)
        .and_then(|t| AsyncFd::new(Fd(t)));
        let fd = match fd {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!("no timerfd ({e}); sends wait on tokio's 1 ms timer");
                return None;
            }
        };
        let pacer = std::sync::Arc::new(GridPacer {
            fd,
            state: std::sync::Mutex::new(GridState::default()),
        });
        tokio::spawn(drive(std::sync::Arc::clone(&pacer)));
        Some(pacer)
    }

    /// Completes at `due` (at once when it has passed), never before it.
    pub fn sleep_until(self: &std::sync::Arc<Self>, due: Instant) -> GridSleep {
        GridSleep {
            pacer: std::sync::Arc::clone(self),
            due,
            ticket: None,
        }
    }

    /// Arms the timerfd for `at` (at least 1 ns from now: a zero expiry would disarm it).
    fn arm(&self, at: Instant, now: Instant) -> bool {
        let after = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        self.fd
            .get_ref()
            .0
            .set(
                Expiration::OneShot(TimeSpec::from_duration(after)),
                TimerSetTimeFlags::empty(),
            )
            .is_ok()
    }
}

/// The driver: reads each expiry, wakes every wait that is due, re-arms for the next one. Ends
/// with its runtime (the engine's workers live for one load phase) or when the timerfd fails.
async fn drive(strong: std::sync::Arc<GridPacer>) {
    loop {
        let fired = {
            let Ok(mut guard) = strong.fd.readable().await else {
                return;
            };
            match guard.try_io(|inner| inner.get_ref().0.wait().map_err(std::io::Error::from)) {
                Ok(Ok(())) => true,
                Ok(Err(_)) => return,
                Err(_would_block) => false,
            }
        };
        if !fired {
            continue;
        }
        let now = Instant::now();
        let Ok(mut state) = strong.state.lock() else {
            return;
        };
        state.armed_for = None;
        while let Some(entry) = state.waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
        }
        if let Some(&(next, _)) = state.waiting.keys().next()
            && strong.arm(next, now)
        {
            state.armed_for = Some(next);
        }
    }
}

/// A wait on a [`GridPacer`]; dropping it withdraws the entry.
pub struct GridSleep {
    pacer: std::sync::Arc<GridPacer>,
    due: Instant,
    ticket: Option<(Instant, u64)>,
}

impl std::future::Future for GridSleep {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let now = Instant::now();
        let this = &mut *self;
        let Ok(mut state) = this.pacer.state.lock() else {
            return std::task::Poll::Ready(());
        };
        if now >= this.due {
            if let Some(ticket) = this.ticket.take() {
                state.waiting.remove(&ticket);
            }
            return std::task::Poll::Ready(());
        }
        match this.ticket {
            // Still waiting: keep the newest waker.
            Some(ticket) => {
                if let Some(waker) = state.waiting.get_mut(&ticket) {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                } else {
                    // Woken early by the driver (its expiry was rounded): wait again.
                    state.waiting.insert(ticket, cx.waker().clone());
                    rearm_if_earlier(&this.pacer, &mut state, ticket.0, now);
                }
            }
            None => {
                let fire_at = on_grid(this.due);
                let ticket = (fire_at, state.next_ticket);
                state.next_ticket += 1;
                state.waiting.insert(ticket, cx.waker().clone());
                this.ticket = Some(ticket);
                rearm_if_earlier(&this.pacer, &mut state, fire_at, now);
            }
        }
        std::task::Poll::Pending
    }
}

/// Arms the timerfd for `fire_at` when nothing earlier is armed.
fn rearm_if_earlier(pacer: &GridPacer, state: &mut GridState, fire_at: Instant, now: Instant) {
    let earlier = match state.armed_for {
        None => true,
        Some(armed) => fire_at < armed,
    };
    if earlier && pacer.arm(fire_at, now) {
        state.armed_for = Some(fire_at);
    }
}

impl Drop for GridSleep {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take()
            && let Ok(mut state) = self.pacer.state.lock()
        {
            state.waiting.remove(&ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn grid_sleeps_never_wake_early_and_dropped_ones_leave_no_entry() {
        let pacer = GridPacer::start().expect("timerfd works on Linux");
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in (0..40u64).rev() {
            let due = start + Duration::from_micros(170 * i + 300);
            let pacer = std::sync::Arc::clone(&pacer);
            tasks.push(tokio::spawn(async move {
                pacer.sleep_until(due).await;
                (due, Instant::now())
            }));
        }
        for task in tasks {
            let (due, woke) = task.await.expect("task ran");
            assert!(woke >= due, "woke {:?} early", due - woke);
        }
        // A wait abandoned half-way withdraws its entry; the next one still waits.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(1),
            pacer.sleep_until(Instant::now() + Duration::from_millis(20)),
        )
        .await;
        assert!(abandoned.is_err());
        assert!(pacer.state.lock().expect("lock").waiting.is_empty());
        let due = Instant::now() + Duration::from_millis(2);
        pacer.sleep_until(due).await;
        assert!(Instant::now() >= due);
        // Already due: completes at once.
        pacer.sleep_until(Instant::now()).await;
    }

    #[test]
    fn the_grid_never_rounds_down_and_adds_at_most_one_step() {
        let base = Instant::now();
        for offset_ns in [0u64, 1, 99_999, 249_999, 250_000, 250_001, 1_234_567] {
            let due = base + Duration::from_nanos(offset_ns);
            let fire = on_grid(due);
            assert!(fire >= due);
            assert!(fire - due <= TIMER_GRID);
        }
        // On the grid already: unchanged, so instants in one step share one expiry.
        let a = on_grid(base + Duration::from_micros(1_010));
        assert_eq!(on_grid(a), a);
        assert_eq!(on_grid(a - Duration::from_micros(1)), a);
    }
}
