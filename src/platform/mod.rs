//! Facts about the platform that every part of jobwarden may rely on: how
//! environment names compare, what counts as an executable file, signal
//! names, private files and directories, file identity for the hash cache,
//! reading small files in bounded time and memory.
//!
//! This is the bottom of the module graph: the decision, the sandbox, the
//! host and the CLI may all import it, and it imports none of them. The
//! platform split is the one `imp` module chosen below; both files have the
//! same items with the same signatures.

#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod imp;
mod small_file;

pub use imp::{
    ENV_IGNORE_CASE, FileIdentity, SIGNALS, copy_symlink, create_private_dir, file_identity,
    is_executable_file, is_own_directory, is_superuser, open_private_append, platform_description,
    process_is_running, process_start, signal_name,
};
pub use small_file::{FileKind, SmallFileError, read_small_file};

/// Signals whose meaning jobwarden explains, where the platform has them.
#[derive(Debug, Clone, Copy)]
pub struct Signals {
    /// The signal a whole-tree kill sends (and the OOM killer uses).
    pub kill: Option<i32>,
    /// The signal RLIMIT_CPU sends at the soft limit.
    pub cpu_limit: Option<i32>,
    /// The signal RLIMIT_FSIZE sends when a file would grow past it.
    pub file_size_limit: Option<i32>,
}
