//! tandem-bench (in progress)
fn main() {}
