//! Returning freed heap to the operating system.
//!
//! glibc keeps memory freed by a thread in that thread's arena; after a
//! burst of connections (a DHT join, a finished transfer) an idle node would
//! otherwise hold several MiB it no longer uses. Many idle nodes share a
//! machine in testnets, so a long-lived node trims every few seconds (a
//! trim of a small heap costs microseconds).

/// Gives free heap pages back to the OS (glibc's `malloc_trim`); a no-op elsewhere.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas and may be called at any time
    // from any thread; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}
