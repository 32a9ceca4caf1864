//! How the process's allocator treats the large buffers of a forward pass.
//!
//! A prefill allocates and frees activations of megabytes per product. glibc's malloc serves
//! such blocks with fresh `mmap`s, or from the heap top that it returns to the kernel as soon
//! as a free leaves more than its trim threshold there; either way every pass faults its
//! pages in again and zeroes them. Kept in the heap instead, the kernel time of a prefill
//! mostly goes, for a few MB more peak memory (figures in docs/PERFORMANCE.md). llama.cpp
//! gets the same by allocating its compute buffers once.

/// Blocks from this size on are still mapped on their own (and unmapped when freed): glibc's
/// largest dynamic mmap threshold on 64-bit targets.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_FROM: libc::c_int = 32 << 20;

/// Free memory at the heap top up to this much stays with the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_PAST: libc::c_int = 512 << 20;

/// Sets the thresholds above, once, before the first forward pass. A no-op off glibc; a
/// failed `mallopt` only leaves glibc's defaults (slower, never wrong).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called before the kernel
    // threads start allocating, and glibc serialises it with allocations anyway.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_FROM);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_PAST);
    }
}
