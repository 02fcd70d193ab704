//! How many live transactions a store bench fills its store with, shared
//! by the benches that take `WAYBILL_BENCH_LIVE` (the machine is shared:
//! a smaller store fills faster; a small one stays in the cache).

/// `WAYBILL_BENCH_LIVE` when it is a positive number, else `default`.
pub fn live(default: usize) -> usize {
    std::env::var("WAYBILL_BENCH_LIVE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}
