//! Writing to stdout and stderr without ever panicking.
//!
//! The invariant: a closed pipe (`jobwarden schema | head -1`) is not an
//! error and never a panic. Once a stream's reader has gone, writes to it
//! are skipped quietly, as cargo and ripgrep do; the command still does all
//! its work and exits with the code that work earned (`check` still checks
//! every file). Any other write error is said once on stderr. `run` adds
//! what a pipeline would do to the job (see `run.rs`).

use std::fmt;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Which of the CLI's own streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Std {
    Out,
    Err,
}

impl Std {
    fn closed(self) -> &'static AtomicBool {
        match self {
            Std::Out => &STDOUT_CLOSED,
            Std::Err => &STDERR_CLOSED,
        }
    }

    /// Whether writes to this stream have stopped (its reader is gone, or
    /// it failed otherwise).
    pub fn is_closed(self) -> bool {
        self.closed().load(Ordering::Relaxed)
    }

    /// Records a failed write: quiet for a closed pipe, said once on stderr
    /// for anything else.
    pub fn failed(self, error: &std::io::Error) {
        if self.closed().swap(true, Ordering::Relaxed) {
            return;
        }
        if error.kind() != ErrorKind::BrokenPipe && self == Std::Out {
            write(
                Std::Err,
                format_args!("jobwarden: cannot write to stdout: {error}\n"),
            );
        }
    }
}

/// Writes to `stream` unless it is closed; a failure closes it.
pub(crate) fn write(stream: Std, args: fmt::Arguments<'_>) {
    if stream.is_closed() {
        return;
    }
    let result = match stream {
        Std::Out => std::io::stdout().lock().write_fmt(args),
        Std::Err => std::io::stderr().lock().write_fmt(args),
    };
    if let Err(e) = result {
        stream.failed(&e);
    }
}

/// `println!` that never panics (see the module doc).
macro_rules! outln {
    () => { $crate::cli::output::write($crate::cli::output::Std::Out, format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::output::write($crate::cli::output::Std::Out, format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write($crate::cli::output::Std::Out, format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    () => { $crate::cli::output::write($crate::cli::output::Std::Err, format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::cli::output::write($crate::cli::output::Std::Err, format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::cli::output::write($crate::cli::output::Std::Err, format_args!($($arg)*))
    };
}
