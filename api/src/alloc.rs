//! The `allocator` knob: a global allocator that is either the system's or mimalloc, chosen once
//! per process from the environment variable `API_ALLOCATOR`.
//!
//! Why a runtime choice and not a cargo feature: a scenario compares `allocator = "system"` with
//! `allocator = "mimalloc"` on the *same* binary (only the environment differs between variants),
//! so both allocators are linked and [`Selectable`] forwards every call to one of them.
//!
//! Why the choice is made on the first allocation, from the environment, and never changes: a
//! block must be freed by the allocator that allocated it, and the Rust runtime allocates before
//! `main` (the arguments, thread names, stdio buffers) — so a flag set by `main` after parsing
//! its arguments would hand earlier blocks to the wrong allocator. The first call reads
//! `API_ALLOCATOR` with `getenv` (which does not allocate) and fixes the choice for the life of
//! the process; `main` then checks that the parsed knob agrees with [`active`] (a `--allocator`
//! flag alone cannot change it, and saying so beats silently measuring the other one).
//!
//! This is the only module of the crate with `unsafe` code (the workspace denies it elsewhere):
//! implementing [`GlobalAlloc`] is `unsafe impl` by definition, and reading the environment
//! without allocating needs libc's `getenv`. Each `unsafe` block only forwards the caller's
//! obligations to an allocator that has the same contract. It must never allocate itself.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

use mimalloc::MiMalloc;

use crate::config::Allocator;

const UNDECIDED: u8 = 0;
const SYSTEM: u8 = 1;
const MIMALLOC: u8 = 2;

/// The choice, fixed by the first allocation of the process.
static CHOICE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// A [`GlobalAlloc`] that forwards to [`System`] or [`MiMalloc`] per `API_ALLOCATOR`. Install it
/// in a binary with `#[global_allocator] static ALLOCATOR: Selectable = Selectable;` — the `api`
/// binary does; tests and benches keep Rust's default.
pub struct Selectable;

/// The allocator this process uses (the system's when no [`Selectable`] is installed).
pub fn active() -> Allocator {
    match CHOICE.load(Ordering::Relaxed) {
        MIMALLOC => Allocator::Mimalloc,
        _ => Allocator::System,
    }
}

/// Reads `API_ALLOCATOR` without allocating. Anything but exactly `mimalloc` is the system
/// allocator; an invalid value is then reported by the knob parser, which names it.
fn choose() -> u8 {
    // SAFETY: the name is a NUL-terminated literal. `getenv` is only unsound against a concurrent
    // `setenv`; the first allocation happens before `main`, while the process has one thread.
    let value = unsafe { libc::getenv(c"API_ALLOCATOR".as_ptr()) };
    if value.is_null() {
        return SYSTEM;
    }
    // SAFETY: a non-null `getenv` result is a NUL-terminated string owned by the environment.
    let value = unsafe { std::ffi::CStr::from_ptr(value) };
    if value.to_bytes() == b"mimalloc" {
        MIMALLOC
    } else {
        SYSTEM
    }
}

#[inline]
fn use_mimalloc() -> bool {
    match CHOICE.load(Ordering::Relaxed) {
        MIMALLOC => true,
        SYSTEM => false,
        _ => {
            // First allocation: decide once. A racing first call (impossible before `main`, but
            // harmless) loses the exchange and takes the winner's choice.
            let choice = choose();
            match CHOICE.compare_exchange(UNDECIDED, choice, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => choice == MIMALLOC,
                Err(winner) => winner == MIMALLOC,
            }
        }
    }
}

// SAFETY: every method forwards to `MiMalloc` or `System` with the caller's arguments unchanged,
// and the same one serves every call of the process (the choice never changes once made), so a
// block is always reallocated and freed by the allocator that returned it.
unsafe impl GlobalAlloc for Selectable {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which both share.
        unsafe {
            if use_mimalloc() {
                MiMalloc.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe {
            if use_mimalloc() {
                MiMalloc.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from the one the fixed choice names.
        unsafe {
            if use_mimalloc() {
                MiMalloc.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s size contract.
        unsafe {
            if use_mimalloc() {
                MiMalloc.realloc(ptr, layout, new_size)
            } else {
                System.realloc(ptr, layout, new_size)
            }
        }
    }
}
