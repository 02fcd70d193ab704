//! The process-wide allocator of the `waybill` binary and of the benches,
//! chosen by cargo feature (`jemalloc`, the default, or `mimalloc`; the
//! system's malloc with `--no-default-features`). Not part of the library:
//! an embedder's allocator is its own. Included with `mod` by `src/main.rs` and with `#[path]` by the
//! benches, so both measure the same allocator.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// `mimalloc` wins when both are enabled (jemalloc is on by default).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator this build uses, for benchmark output.
#[allow(dead_code)] // the binary does not print it
pub const NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else if cfg!(feature = "jemalloc") {
    "jemalloc"
} else {
    "system malloc"
};
