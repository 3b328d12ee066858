//! `[filesystem]`: the paths a job may read, write and execute, and what
//! stays read-only inside the writable ones.

use crate::policy::model::{Sourced, choice};
use crate::policy::section::Section;
use crate::policy::template::PathTemplate;

choice! {
    /// How much of the repository's `.git` (and nested repositories') a job
    /// may write when the repository is writable.
    pub enum GitAccess {
        /// All of `.git` is read-only: git can read, not commit.
        ReadOnly = "read_only",
        /// git can commit: only what runs code or changes git's
        /// configuration stays read-only (`hooks`, `config`, `info`, and the
        /// same in `modules/*`).
        Commit = "commit",
        /// `.git` is as writable as the rest of the repository (a plugin
        /// that installs hooks on purpose).
        Writable = "writable",
    }
}

/// Filesystem rules of one level.
#[derive(Debug, Clone, Default)]
pub struct FilesystemLayer {
    /// Trees the job may read (and map, but not execute).
    pub read: Vec<Sourced<PathTemplate>>,
    /// Trees the job may read and write, never execute.
    pub read_write: Vec<Sourced<PathTemplate>>,
    /// Trees whose files the job may execute and map as code.
    pub execute: Vec<Sourced<PathTemplate>>,
    /// Kept read-only inside writable roots, added to the built-in list.
    pub protected: Vec<Sourced<PathTemplate>>,
    /// What the job may do to the repository's `.git`.
    pub git: Option<Sourced<GitAccess>>,
}

impl FilesystemLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        Self {
            read: s.paths("read"),
            read_write: s.paths("read_write"),
            execute: s.paths("execute"),
            protected: s.paths("protected"),
            git: s.choice("git"),
        }
    }
}
