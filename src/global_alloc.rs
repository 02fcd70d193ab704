//! The process-wide allocator of the `waybill` binary and of the benches,
//! chosen by cargo feature (`mimalloc` or `jemalloc`; the system's malloc
//! without either). Not part of the library: an embedder's allocator is
//! its own. Included with `mod` by `src/main.rs` and with `#[path]` by the
//! benches, so both measure the same allocator.

#[cfg(all(feature = "mimalloc", feature = "jemalloc"))]
compile_error!("features `mimalloc` and `jemalloc` pick the same global allocator: enable one");

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
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
