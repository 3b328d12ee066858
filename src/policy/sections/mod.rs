//! The policy's sections, each read beside the settings it fills.
//!
//! The invariant: a section reads only the keys its specification in
//! `schema.rs` lists, through [`Section`](super::section::Section), so type,
//! minimum, choices and place are checked as declared there; a section adds
//! only the checks that are about what its keys mean. Every problem is
//! collected and the walk goes on, so an admin fixes a whole file in one
//! round.
//!
//! The top level, each binary and each plugin hold the same settings
//! sections, which together make a [`Layer`]; `binaries.rs` and `plugins.rs`
//! read the tables that own a layer.

mod args;
mod binaries;
mod env;
mod filesystem;
mod limits;
mod network;
mod output;
mod plugins;
mod progress;
mod seccomp;

pub use args::{ArgElement, ArgPattern, Difference, REST_MARKER};
pub use binaries::{ArgRules, BinaryRule, valid_binary_name};
pub use env::{EnvLayer, OnDisallowed, check_env_name};
pub use filesystem::{FilesystemLayer, GitAccess};
pub use limits::{LimitsLayer, OnLongTimeout};
pub use network::NetworkLayer;
pub use output::{OutputLayer, OutputMode, Sanitize, WhenFull};
pub use plugins::{PluginArgs, PluginRule, valid_plugin_name};
pub use progress::{ProgressLayer, ProgressPattern};
pub use seccomp::SeccompLayer;

pub(crate) use args::read_allow;
pub(crate) use binaries::read_binaries;
pub(crate) use plugins::read_plugins;

use super::section::Section;

/// A set of settings contributed by one level of the policy: the top level,
/// one binary, or one plugin. Lists add to the levels below; scalars replace.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    /// `[env]` at this level.
    pub env: EnvLayer,
    /// `[filesystem]` at this level.
    pub filesystem: FilesystemLayer,
    /// `[network]` at this level.
    pub network: NetworkLayer,
    /// `[limits]` at this level.
    pub limits: LimitsLayer,
    /// `[output]` at this level.
    pub output: OutputLayer,
    /// `[progress]` at this level.
    pub progress: ProgressLayer,
    /// `[seccomp]` at this level.
    pub seccomp: SeccompLayer,
}

impl Layer {
    /// Reads the settings sections of a top-level, binary or plugin table.
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        Self {
            env: s.table("env", EnvLayer::read).unwrap_or_default(),
            filesystem: s
                .table("filesystem", FilesystemLayer::read)
                .unwrap_or_default(),
            network: s.table("network", NetworkLayer::read).unwrap_or_default(),
            limits: s.table("limits", LimitsLayer::read).unwrap_or_default(),
            output: s.table("output", OutputLayer::read).unwrap_or_default(),
            progress: s.table("progress", ProgressLayer::read).unwrap_or_default(),
            seccomp: s.table("seccomp", SeccompLayer::read).unwrap_or_default(),
        }
    }
}
