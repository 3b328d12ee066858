//! Sandbox tests: real jobs under the real Linux sandbox, asserting what the
//! kernel refused. One file per behaviour; `harness.rs` holds the helpers.
//!
//! These run as root on Landlock ABI 7 in CI; nothing here is mocked. A test
//! that needs a kernel feature this machine lacks says so and skips with
//! `skip!` (counted by `.ci/run`, which fails when the CI machine has what
//! the test said was missing).

// Linux only: the Linux sandbox.
#![cfg(target_os = "linux")]

#[macro_use]
#[path = "../support/skip.rs"]
mod skip;

mod harness;

mod audit;
mod capabilities;
mod cleanup;
mod cwd_swap;
mod degraded;
mod descriptors;
mod environment;
mod events;
mod exec_allowlist;
mod filesystem;
mod host_death;
mod learn;
mod limits;
mod network;
mod observation;
mod pinned_binary;
mod privileges;
mod progress;
mod protected_paths;
mod refusals;
mod reload;
mod seccomp;
mod setuid;
mod signals;
mod sockets;
mod why;
mod write_xor_execute;
