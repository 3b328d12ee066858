//! From a job's raw stdout and stderr bytes to contract events.
//!
//! Per job and stream: bytes are split into lines of bounded length (line
//! mode) or passed as chunks (chunk mode), decoded as UTF-8 (lossily) and
//! sanitised as the policy says. Memory per job is bounded by the line limit,
//! the tail size and a few small buffers, whatever the job prints.

pub mod lines;
pub mod progress;
pub mod queue;
pub mod sanitize;

use crate::contract::{
    JobEvent, JobId, JobLogLineData, JobOutputChunkData, STREAM_STDERR, STREAM_STDOUT,
};
use crate::decision::OutputPlan;
use crate::policy::{OutputMode, Sanitize};
use lines::{LineEnd, LineSplitter};
use progress::ProgressTracker;
use sanitize::{Sanitizer, Utf8Stream};

/// Which pipe bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => STREAM_STDOUT,
            Stream::Stderr => STREAM_STDERR,
        }
    }
}

struct StreamState {
    splitter: LineSplitter,
    sanitizer: Sanitizer,
    utf8: Utf8Stream,
}

/// Turns one job's output into events.
pub struct JobOutput {
    job_id: JobId,
    mode: OutputMode,
    sanitize: Sanitize,
    stdout: StreamState,
    stderr: StreamState,
    tail: Tail,
    /// Declared progress seen in the output.
    pub progress: ProgressTracker,
    /// Bytes read per stream, for accounting.
    pub bytes_read: [u64; 2],
}

impl JobOutput {
    pub fn new(job_id: JobId, plan: &OutputPlan, progress: ProgressTracker) -> Self {
        let stream = || StreamState {
            splitter: LineSplitter::new(plan.max_line_bytes.value as usize),
            sanitizer: Sanitizer::new(plan.sanitize.value, plan.mode.value == OutputMode::Chunks),
            utf8: Utf8Stream::default(),
        };
        Self {
            job_id,
            mode: plan.mode.value,
            sanitize: plan.sanitize.value,
            stdout: stream(),
            stderr: stream(),
            tail: Tail::new(plan.tail_bytes.value as usize),
            progress,
            bytes_read: [0, 0],
        }
    }

    /// Handles bytes read from `stream`, appending events to `out`.
    pub fn feed(&mut self, stream: Stream, bytes: &[u8], out: &mut Vec<JobEvent>) {
        if stream == Stream::Stdout {
            self.tail.push(bytes);
        }
        self.bytes_read[stream as usize] += bytes.len() as u64;
        let job_id = &self.job_id;
        let progress = &mut self.progress;
        let state = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        match self.mode {
            OutputMode::Lines => {
                let sanitizer = &mut state.sanitizer;
                state.splitter.push(bytes, |line, end| {
                    emit_line(job_id, stream, line, end, sanitizer, progress, out);
                });
            }
            OutputMode::Chunks => {
                let data = if self.sanitize == Sanitize::Raw
                    || (state.utf8.is_empty()
                        && sanitize::is_printable_ascii(bytes, true)
                        && state.sanitizer.is_idle())
                {
                    bytes.to_vec()
                } else {
                    let mut text = String::with_capacity(bytes.len());
                    let mut clean = String::with_capacity(bytes.len());
                    state.utf8.push(bytes, &mut text);
                    state.sanitizer.push(&text, &mut clean);
                    clean.into_bytes()
                };
                if !data.is_empty() {
                    out.push(JobEvent::JobOutputChunk {
                        job_id: job_id.clone(),
                        data: JobOutputChunkData {
                            bytes: data,
                            stream: stream.name().to_string(),
                        },
                    });
                }
            }
        }
    }

    /// Flushes what is left of `stream` when its pipe closes.
    pub fn finish(&mut self, stream: Stream, out: &mut Vec<JobEvent>) {
        let job_id = &self.job_id;
        let progress = &mut self.progress;
        let state = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        match self.mode {
            OutputMode::Lines => {
                let sanitizer = &mut state.sanitizer;
                state.splitter.finish(|line, end| {
                    emit_line(job_id, stream, line, end, sanitizer, progress, out);
                });
            }
            OutputMode::Chunks if self.sanitize != Sanitize::Raw => {
                let mut text = String::new();
                state.utf8.finish(&mut text);
                let mut clean = String::new();
                state.sanitizer.push(&text, &mut clean);
                if !clean.is_empty() {
                    out.push(JobEvent::JobOutputChunk {
                        job_id: job_id.clone(),
                        data: JobOutputChunkData {
                            bytes: clean.into_bytes(),
                            stream: stream.name().to_string(),
                        },
                    });
                }
            }
            OutputMode::Chunks => {}
        }
    }

    /// The end of stdout, sanitised, for `JobCompleted.output_tail`.
    pub fn tail(&self) -> Option<String> {
        self.tail.text(self.sanitize)
    }
}

fn emit_line(
    job_id: &JobId,
    stream: Stream,
    bytes: &[u8],
    end: LineEnd,
    sanitizer: &mut Sanitizer,
    progress: &mut ProgressTracker,
    out: &mut Vec<JobEvent>,
) {
    if bytes.is_empty() && end == LineEnd::Cr {
        // A redraw that starts with `\r` leaves an empty piece: not a line.
        return;
    }
    // The common case: printable ASCII is valid UTF-8 with nothing to
    // sanitise, so one scan and one copy make the line.
    if sanitize::is_printable_ascii(bytes, false) && !progress.may_use_bytes(bytes) {
        // SAFETY: `is_printable_ascii` just checked every byte is ASCII,
        // and ASCII is valid UTF-8.
        let line = unsafe { String::from_utf8_unchecked(bytes.to_vec()) };
        out.push(JobEvent::JobLogLine {
            job_id: job_id.clone(),
            data: JobLogLineData {
                line,
                stream: stream.name().to_string(),
            },
        });
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    // Progress is read from the text without escape sequences, so a
    // pattern need not know about colours or line clearing. Most lines
    // cannot be progress: skip the work for them.
    if progress.may_use(&text) {
        let plain = if sanitize::is_plain(&text, false) {
            std::borrow::Cow::Borrowed(&*text)
        } else {
            std::borrow::Cow::Owned(Sanitizer::new(Sanitize::Strip, false).line(&text))
        };
        if progress.observe(&plain) == progress::LineUse::Consumed {
            return;
        }
    }
    out.push(JobEvent::JobLogLine {
        job_id: job_id.clone(),
        data: JobLogLineData {
            line: sanitizer.line(&text),
            stream: stream.name().to_string(),
        },
    });
}

/// The last `cap` bytes of a stream.
struct Tail {
    cap: usize,
    buf: Vec<u8>,
}

impl Tail {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            buf: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.cap == 0 {
            return;
        }
        if bytes.len() >= self.cap {
            self.buf.clear();
            self.buf.extend_from_slice(&bytes[bytes.len() - self.cap..]);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > 2 * self.cap {
            self.buf.drain(..self.buf.len() - self.cap);
        }
    }

    fn text(&self, sanitize: Sanitize) -> Option<String> {
        if self.cap == 0 {
            return None;
        }
        let start = self.buf.len().saturating_sub(self.cap);
        let mut bytes = &self.buf[start..];
        // Do not start in the middle of a character.
        while let Some((&first, rest)) = bytes.split_first() {
            if first & 0xC0 == 0x80 {
                bytes = rest;
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(bytes);
        let mut out = String::with_capacity(text.len());
        Sanitizer::new(sanitize, true).push(&text, &mut out);
        Some(out)
    }
}
