//! Policy tests for CI: `jobwarden test FILE...`.
//!
//! A test file names a policy and holds cases: static ones, checked by the
//! decision alone, and live ones, run as real jobs under the real sandbox.
//! The format is documented in `policy/README.md`.

mod cases;
pub mod report;
mod runner;

pub use cases::{
    Case, CaseKind, Decision, Home, KilledBy, LiveExpectation, MAX_TEST_FILE_BYTES, PolicyRef,
    TestFile, TestFileError,
};
pub use runner::{CaseResult, FileResult, RunOptions, Verdict, run_file};
