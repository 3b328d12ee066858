//! jobwarden's benchmarks. Every figure is printed with a baseline measured
//! in the same run (these machines are noisy; absolute times alone mean
//! little) and the ratio between them.
//!
//! ```sh
//! cargo bench --bench jobwarden            # the full run (a few minutes)
//! cargo bench --bench jobwarden -- --quick # CI: small sizes, < 1 minute
//! ```
//!
//! Quick mode checks that every benchmark *runs*; it never fails on a
//! timing. `benches/peers.sh` adds the hyperfine comparison with bwrap and
//! firejail.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod observe;

#[cfg(target_os = "linux")]
fn main() {
    linux::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("jobwarden's benchmarks measure the Linux host; run them on Linux");
}
