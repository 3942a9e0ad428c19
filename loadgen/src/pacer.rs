//! Precise waits for the generator: a send is due at an exact instant, and tokio's timer wheel
//! cannot keep it — it rounds every sleep *up* to the next millisecond tick, which measured here
//! put ~1.2 ms of the generator's own lag into every latency at 20 000 req/s.
//!
//! [`Pacer`] owns one OS thread ("apibench-pacer") with its timer slack lowered to 1 ns
//! (`prctl(PR_SET_TIMERSLACK)`; the default 50 µs would be added to every wake-up). Futures
//! register `(due, waker)` in a min-heap; the thread sleeps on a condition variable until the
//! earliest due instant, then wakes every task whose instant has passed. A woken task is polled
//! by the runtime a few tens of microseconds later; that remainder is what the engine records as
//! send lag, apart from latency.
//!
//! Nothing is ever woken early, and nothing spins: the thread costs one futex round trip per
//! distinct due instant, and entries that fell due together are woken in one batch. A future
//! that is dropped leaves a stale entry behind, which wakes a finished task harmlessly.
//!
//! This module knows nothing about schedules or HTTP; it only keeps appointments.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

struct Entry {
    due: Instant,
    id: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.id) == (other.due, other.id)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.id).cmp(&(other.due, other.id))
    }
}

#[derive(Default)]
struct State {
    heap: BinaryHeap<Reverse<Entry>>,
    next_id: u64,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    wake_thread: Condvar,
}

/// The precise-wait service of one load phase. Cloning shares it; the thread stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Pacer {
    inner: Arc<Inner>,
    _guard: Arc<ThreadGuard>,
}

/// Stops the thread when the last [`Pacer`] goes.
struct ThreadGuard {
    inner: Arc<Inner>,
    handle: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if let Ok(mut state) = self.inner.state.lock() {
            state.shutdown = true;
        }
        self.inner.wake_thread.notify_all();
        if let Some(handle) = self.handle.lock().ok().and_then(|mut h| h.take()) {
            let _ = handle.join();
        }
    }
}

impl Pacer {
    /// Starts the pacer thread. If the thread cannot be spawned (the process is out of
    /// resources), waits fall back to tokio's millisecond timer and the send lag shows it.
    pub fn start() -> Pacer {
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            wake_thread: Condvar::new(),
        });
        let for_thread = Arc::clone(&inner);
        let handle = std::thread::Builder::new()
            .name("apibench-pacer".into())
            .spawn(move || pacer_thread(&for_thread))
            .map_err(|e| tracing::error!("cannot start the pacer thread: {e}"))
            .ok();
        let running = handle.is_some();
        let pacer = Pacer {
            inner: Arc::clone(&inner),
            _guard: Arc::new(ThreadGuard {
                inner,
                handle: Mutex::new(handle),
            }),
        };
        if !running && let Ok(mut state) = pacer.inner.state.lock() {
            state.shutdown = true;
        }
        pacer
    }

    /// Completes at `due` (at once when it has passed).
    pub fn sleep_until(&self, due: Instant) -> PreciseSleep {
        PreciseSleep {
            pacer: self.clone(),
            due,
            fallback: None,
        }
    }

    /// Registers a waker; false when the thread is gone.
    fn register(&self, due: Instant, waker: &Waker) -> bool {
        let Ok(mut state) = self.inner.state.lock() else {
            return false;
        };
        if state.shutdown {
            return false;
        }
        let earliest_before = state.heap.peek().map(|Reverse(e)| e.due);
        let id = state.next_id;
        state.next_id += 1;
        state.heap.push(Reverse(Entry {
            due,
            id,
            waker: waker.clone(),
        }));
        drop(state);
        // Only a new earliest appointment changes how long the thread should sleep.
        if earliest_before.is_none_or(|e| due < e) {
            self.inner.wake_thread.notify_one();
        }
        true
    }
}

fn pacer_thread(inner: &Inner) {
    // 1 ns of slack: the kernel fires the timer when asked, not up to 50 µs later.
    if let Err(e) = nix::sys::prctl::set_timerslack(1) {
        tracing::debug!("cannot lower the pacer's timer slack: {e}");
    }
    let mut due_now: Vec<Waker> = Vec::with_capacity(64);
    let Ok(mut state) = inner.state.lock() else {
        return;
    };
    loop {
        if state.shutdown {
            return;
        }
        let now = Instant::now();
        while let Some(Reverse(top)) = state.heap.peek() {
            if top.due > now {
                break;
            }
            if let Some(Reverse(entry)) = state.heap.pop() {
                due_now.push(entry.waker);
            }
        }
        if !due_now.is_empty() {
            drop(state);
            for waker in due_now.drain(..) {
                waker.wake();
            }
            state = match inner.state.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
            continue;
        }
        let next = state.heap.peek().map(|Reverse(e)| e.due);
        state = match next {
            None => match inner.wake_thread.wait(state) {
                Ok(s) => s,
                Err(_) => return,
            },
            Some(due) => match inner
                .wake_thread
                .wait_timeout(state, due.saturating_duration_since(now))
            {
                Ok((s, _)) => s,
                Err(_) => return,
            },
        };
    }
}

/// A wait that completes at its instant, to within the pacer thread's wake-up latency.
pub struct PreciseSleep {
    pacer: Pacer,
    due: Instant,
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.due {
            return Poll::Ready(());
        }
        if let Some(sleep) = self.fallback.as_mut() {
            return sleep.as_mut().poll(cx);
        }
        if !self.pacer.register(self.due, cx.waker()) {
            let mut sleep = Box::pin(tokio::time::sleep_until(self.due.into()));
            let ready = sleep.as_mut().poll(cx);
            self.fallback = Some(sleep);
            return ready;
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn never_wakes_before_its_instant() {
        let pacer = Pacer::start();
        for step_us in [0u64, 50, 300, 1_500] {
            let due = Instant::now() + Duration::from_micros(step_us);
            pacer.sleep_until(due).await;
            assert!(Instant::now() >= due, "woke before {step_us} µs");
        }
    }

    #[tokio::test]
    async fn many_waiters_all_complete_in_order_of_their_instants() {
        let pacer = Pacer::start();
        let start = Instant::now();
        let mut tasks = Vec::new();
        // Registered in reverse order: the heap, not the order of registration, decides.
        for i in (0..50u64).rev() {
            let pacer = pacer.clone();
            let due = start + Duration::from_micros(200 * i + 500);
            tasks.push(tokio::spawn(async move {
                pacer.sleep_until(due).await;
                (due, Instant::now())
            }));
        }
        for task in tasks {
            let (due, woke) = task.await.expect("task ran");
            assert!(woke >= due);
        }
    }

    #[tokio::test]
    async fn a_dropped_wait_does_not_stop_the_others() {
        let pacer = Pacer::start();
        let early = pacer.sleep_until(Instant::now() + Duration::from_millis(1));
        drop(early);
        let due = Instant::now() + Duration::from_millis(2);
        pacer.sleep_until(due).await;
        assert!(Instant::now() >= due);
    }
}
