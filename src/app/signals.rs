//! Ctrl-C and SIGTERM: the first of either ends decoding after the current token or beam step
//! (the output so far is flushed and the stats line printed); a second one exits at once.
//! Ctrl-C exits 130, SIGTERM 143, as a shell reports a process killed by them.

use crate::engine::Interrupt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The flag both handlers set (shared with the [`Interrupt`] the engine reads).
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
/// Whether the stop came from SIGTERM.
static TERMINATED: AtomicBool = AtomicBool::new(false);

/// Whether SIGTERM ended the run (exit status 143 instead of Ctrl-C's 130).
pub fn terminated() -> bool {
    TERMINATED.load(Ordering::SeqCst)
}

/// Installs the handlers and returns the flag they set; `None` when they could not be
/// installed (then a signal ends the process as by default).
pub(super) fn interrupt_on_ctrl_c() -> Option<Interrupt> {
    let flag = FLAG
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    let f = flag.clone();
    ctrlc::set_handler(move || {
        if f.swap(true, Ordering::SeqCst) {
            std::process::exit(if terminated() { 143 } else { 130 });
        }
    })
    .ok()?;
    on_sigterm();
    Some(Interrupt::from(flag))
}

/// The SIGTERM handler: only atomic operations and `_exit`, which are async-signal-safe.
extern "C" fn handle_sigterm(_: libc::c_int) {
    let Some(flag) = FLAG.get() else {
        // SAFETY: `_exit` is async-signal-safe.
        unsafe { libc::_exit(143) }
    };
    if TERMINATED.swap(true, Ordering::SeqCst) || flag.swap(true, Ordering::SeqCst) {
        // SAFETY: as above.
        unsafe { libc::_exit(143) }
    }
}

fn on_sigterm() {
    let handler: extern "C" fn(libc::c_int) = handle_sigterm;
    // SAFETY: installs a handler that touches only atomics and calls `_exit`; `signal` has no
    // other effect on this process's memory.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}
