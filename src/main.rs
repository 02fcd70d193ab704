//! The `waybill` binary: parses arguments, installs logging, turns signals
//! into a shutdown token and maps errors to exit codes.

fn main() {}
