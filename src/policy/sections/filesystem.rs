//! `[filesystem]`: the paths a job may read, write and execute.

use crate::policy::model::Sourced;
use crate::policy::section::Section;
use crate::policy::template::PathTemplate;

/// Filesystem rules of one level.
#[derive(Debug, Clone, Default)]
pub struct FilesystemLayer {
    pub read: Vec<Sourced<PathTemplate>>,
    pub read_write: Vec<Sourced<PathTemplate>>,
    pub execute: Vec<Sourced<PathTemplate>>,
}

impl FilesystemLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        Self {
            read: s.paths("read"),
            read_write: s.paths("read_write"),
            execute: s.paths("execute"),
        }
    }
}
