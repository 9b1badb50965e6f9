//! SIGTERM and SIGINT for the binary: the first asks for a graceful stop,
//! a second one exits at once.
//!
//! The handler only counts (an atomic add) and, on the second signal,
//! calls `_exit`, both async-signal-safe. The loop sees the count after
//! its poll: a signal that lands on the loop's thread interrupts
//! `epoll_wait`; one that lands elsewhere (a Redis thread) or just before
//! the poll is seen at the next timer, within half a second.
//! Declared here rather than pulled from the `libc` crate for two calls.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Signals received so far.
static RECEIVED: AtomicUsize = AtomicUsize::new(0);

#[cfg(unix)]
const SIGINT: i32 = 2;
#[cfg(unix)]
const SIGTERM: i32 = 15;

#[cfg(unix)]
#[allow(unsafe_code)]
mod ffi {
    extern "C" {
        pub fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        pub fn _exit(status: i32) -> !;
    }
}

#[cfg(unix)]
extern "C" fn on_signal(_signum: i32) {
    if RECEIVED.fetch_add(1, Ordering::SeqCst) >= 1 {
        // SAFETY: _exit is async-signal-safe and takes no pointers.
        #[allow(unsafe_code)]
        unsafe {
            ffi::_exit(0)
        }
    }
}

/// Installs the handlers for SIGTERM and SIGINT.
#[cfg(unix)]
pub fn install() {
    for signum in [SIGTERM, SIGINT] {
        // SAFETY: `on_signal` is an `extern "C" fn(i32)` that only does
        // async-signal-safe work; `signal` stores the pointer.
        #[allow(unsafe_code)]
        unsafe {
            ffi::signal(signum, on_signal);
        }
    }
}

#[cfg(not(unix))]
pub fn install() {}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    RECEIVED.load(Ordering::SeqCst) > 0
}
