//! `[output]`: how a job's output reaches the plugin, and how much of it may
//! wait undrained.

use crate::policy::model::{Sourced, choice};
use crate::policy::section::Section;

choice! {
    /// How output reaches the plugin.
    pub enum OutputMode {
        /// One `JobLogLine` per line.
        Lines = "lines",
        /// `JobOutputChunk`s of bytes as read.
        Chunks = "chunks",
    }
}

choice! {
    /// What escape sequences survive on their way to the plugin.
    pub enum Sanitize {
        /// Keep SGR colour sequences; remove every other escape and control sequence.
        Colors = "colors",
        /// Remove every escape and control sequence.
        Strip = "strip",
        /// Pass bytes through untouched (lines are still lossily decoded as UTF-8).
        Raw = "raw",
    }
}

choice! {
    /// What happens when a plugin's event queue is full.
    pub enum WhenFull {
        /// Drop the oldest output events and say how many in a `system` line:
        /// a render loop that falls behind sees the latest output.
        DropOldest = "drop_oldest",
        /// Stop reading the job's pipes until the plugin drains: the job
        /// blocks in `write` and no output is lost.
        Wait = "wait",
    }
}

/// Output settings of one level.
#[derive(Debug, Clone, Default)]
pub struct OutputLayer {
    /// `output.mode`: lines or byte chunks; `None` when this level leaves it.
    pub mode: Option<Sourced<OutputMode>>,
    /// `output.sanitize`: which escape sequences are removed.
    pub sanitize: Option<Sourced<Sanitize>>,
    /// `output.max_line_bytes`: longer lines are split, in bytes.
    pub max_line_bytes: Option<Sourced<u64>>,
    /// `output.tail_bytes`: bytes of the end of stdout the completion event
    /// carries.
    pub tail_bytes: Option<Sourced<u64>>,
    /// Top level and plugins only: the queue belongs to a plugin.
    pub max_queued_events: Option<Sourced<u64>>,
    /// Top level and plugins only.
    pub max_queued_bytes: Option<Sourced<u64>>,
    /// Top level and plugins only: what a full queue does.
    pub when_full: Option<Sourced<WhenFull>>,
}

impl OutputLayer {
    pub(crate) fn read(s: &mut Section<'_, '_, '_>) -> Self {
        Self {
            mode: s.choice("mode"),
            sanitize: s.choice("sanitize"),
            max_line_bytes: s.size("max_line_bytes"),
            tail_bytes: s.size("tail_bytes"),
            max_queued_events: s.integer("max_queued_events"),
            max_queued_bytes: s.size("max_queued_bytes"),
            when_full: s.choice("when_full"),
        }
    }
}
