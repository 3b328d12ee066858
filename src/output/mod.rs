//! From a job's raw stdout and stderr bytes to contract events.
//!
//! Per job and stream: bytes are split into lines of bounded length (line
//! mode) or passed as chunks (chunk mode), decoded as UTF-8 (lossily) and
//! sanitised as the policy says. Memory per job is bounded by the line limit,
//! the tail size and a few small buffers, whatever the job prints; what the
//! events made from one read can cost is bounded in advance
//! ([`JobOutput::max_read`]), so the host can read no more than its queue
//! has room for.

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
use queue::Room;
use sanitize::{Sanitizer, Utf8Stream};

/// Which pipe bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The job's standard output.
    Stdout,
    /// The job's standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in events: `stdout` or `stderr`.
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
    /// Empty output state for `job_id`, bounded and sanitised as `plan` says;
    /// `progress` tracks what the job's output declares.
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

    /// The most bytes of `stream` that can be fed at once without the events
    /// they make costing more than `room` (as `queue::cost` counts): at most
    /// one event per byte plus one, and text at most three times the bytes
    /// (an invalid byte becomes the three-byte U+FFFD), together with what
    /// is held of an unfinished line.
    pub fn max_read(&self, stream: Stream, room: Room) -> usize {
        let overhead = queue::output_event_overhead(&self.job_id);
        // A text block is at most its capacity plus the allocator's 32.
        let per_event = overhead + 32;
        match self.mode {
            OutputMode::Lines => {
                let pending = match stream {
                    Stream::Stdout => self.stdout.splitter.pending(),
                    Stream::Stderr => self.stderr.splitter.pending(),
                };
                let by_events = room.events.saturating_sub(1);
                let by_bytes = room.bytes.saturating_sub(per_event + 3 * pending) / (per_event + 3);
                by_events.min(by_bytes)
            }
            OutputMode::Chunks if room.events == 0 => 0,
            // One event; up to three bytes of a split character carried over.
            OutputMode::Chunks => room.bytes.saturating_sub(per_event + 9) / 3,
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
                    state.utf8.push(bytes, &mut text);
                    // Sanitising only removes: the chunk's block is no
                    // bigger than its text (see `max_read`).
                    let mut clean = String::with_capacity(text.len());
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
            // Raw chunks hold nothing back (`feed` passes them whole), so
            // what is left of the decoder and sanitiser is empty for them.
            OutputMode::Chunks => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Sourced, WhenFull};
    use proptest::prelude::*;

    fn output(mode: OutputMode, sanitize: Sanitize, max_line: u64, tail: u64) -> JobOutput {
        let plan = OutputPlan {
            mode: Sourced::builtin(mode),
            sanitize: Sourced::builtin(sanitize),
            max_line_bytes: Sourced::builtin(max_line),
            tail_bytes: Sourced::builtin(tail),
            max_queued_events: Sourced::builtin(100),
            max_queued_bytes: Sourced::builtin(1 << 20),
            when_full: Sourced::builtin(WhenFull::DropOldest),
        };
        JobOutput::new("job-1".into(), &plan, ProgressTracker::default())
    }

    /// Each event as `stream: text`, chunks as their bytes read as UTF-8.
    fn shown(events: &[JobEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                JobEvent::JobLogLine { job_id, data } => {
                    assert_eq!(job_id, "job-1");
                    format!("{}: {}", data.stream, data.line)
                }
                JobEvent::JobOutputChunk { job_id, data } => {
                    assert_eq!(job_id, "job-1");
                    format!(
                        "{} chunk: {}",
                        data.stream,
                        String::from_utf8_lossy(&data.bytes)
                    )
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn lines_from_both_streams() {
        let mut job = output(OutputMode::Lines, Sanitize::Colors, 80, 16);
        let mut out = Vec::new();
        job.feed(Stream::Stdout, b"one\ntw", &mut out);
        job.feed(Stream::Stderr, b"\x1b]0;x\x07err\xff\n", &mut out);
        job.feed(Stream::Stdout, b"o\r\rthree", &mut out);
        job.finish(Stream::Stdout, &mut out);
        job.finish(Stream::Stderr, &mut out);
        assert_eq!(
            shown(&out),
            [
                "stdout: one",
                "stderr: err\u{fffd}",
                "stdout: two",
                "stdout: three"
            ],
            "a redraw's empty piece is no line"
        );
        assert_eq!(job.bytes_read, [14, 11]);
        assert_eq!(
            job.tail().as_deref(),
            Some("one\ntwothree"),
            "carriage returns are controls"
        );
    }

    #[test]
    fn protocol_lines_are_progress_not_output() {
        let mut job = output(OutputMode::Lines, Sanitize::Colors, 80, 0);
        let mut out = Vec::new();
        job.feed(
            Stream::Stdout,
            b"::progress:: 50 half\n\x1b[1m::progress:: 60\x1b[0m\n:not progress\n",
            &mut out,
        );
        assert_eq!(shown(&out), ["stdout: :not progress"]);
        assert_eq!(
            job.progress.take_update(),
            Some((Some(60), Some("half".into())))
        );
        assert_eq!(job.tail(), None, "no tail was asked for");
    }

    #[test]
    fn chunks_are_sanitised_across_reads() {
        let mut job = output(OutputMode::Chunks, Sanitize::Strip, 80, 8);
        let mut out = Vec::new();
        job.feed(Stream::Stdout, b"plain\n", &mut out);
        job.feed(Stream::Stdout, b"a\x1b[3", &mut out);
        job.feed(Stream::Stdout, b"1mb\xc3", &mut out);
        job.feed(Stream::Stdout, b"\xa9\x1b]0;", &mut out);
        job.feed(Stream::Stderr, b"\xe2\x9c", &mut out);
        job.finish(Stream::Stdout, &mut out);
        job.finish(Stream::Stderr, &mut out);
        assert_eq!(
            shown(&out),
            [
                "stdout chunk: plain\n",
                "stdout chunk: a",
                "stdout chunk: b",
                "stdout chunk: é",
                "stderr chunk: \u{fffd}",
            ]
        );
        assert_eq!(
            job.tail().as_deref(),
            Some("mbé"),
            "the last 8 bytes, stripped"
        );
    }

    /// Plain ASCII after half a character is not passed as it is: the
    /// held byte comes first, as U+FFFD, and then the text, in order.
    #[test]
    fn a_held_byte_comes_before_the_ascii_after_it() {
        let mut job = output(OutputMode::Chunks, Sanitize::Colors, 80, 0);
        let mut out = Vec::new();
        job.feed(Stream::Stdout, b"x\xc3", &mut out);
        job.feed(Stream::Stdout, b"abc", &mut out);
        job.finish(Stream::Stdout, &mut out);
        assert_eq!(
            shown(&out),
            ["stdout chunk: x", "stdout chunk: \u{fffd}abc"]
        );
    }

    #[test]
    fn raw_chunks_pass_untouched() {
        let mut job = output(OutputMode::Chunks, Sanitize::Raw, 80, 4);
        let mut out = Vec::new();
        job.feed(Stream::Stdout, b"\x1b]0;t\x07\xff", &mut out);
        job.finish(Stream::Stdout, &mut out);
        let JobEvent::JobOutputChunk { data, .. } = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(data.bytes, b"\x1b]0;t\x07\xff");
        assert_eq!(out.len(), 1);
        assert_eq!(job.tail().as_deref(), Some(";t\u{7}\u{fffd}"));
    }

    #[test]
    fn the_tail_keeps_the_last_bytes_and_starts_on_a_character() {
        let mut tail = Tail::new(4);
        tail.push(b"abcdefgh");
        assert_eq!(tail.text(Sanitize::Raw).as_deref(), Some("efgh"));
        tail.push(b"ij");
        assert_eq!(tail.text(Sanitize::Raw).as_deref(), Some("ghij"));
        tail.push(b"klm");
        assert_eq!(tail.buf.len(), 4, "compacted once over twice the cap");
        assert_eq!(tail.text(Sanitize::Raw).as_deref(), Some("jklm"));
        tail.push("xé".as_bytes());
        tail.push(b"");
        assert_eq!(tail.text(Sanitize::Raw).as_deref(), Some("mxé"));
        tail.push("✓".as_bytes());
        assert_eq!(
            tail.text(Sanitize::Raw).as_deref(),
            Some("✓"),
            "not from inside é"
        );
        // Compacted only past twice the cap: memory stays within 2 × cap
        // and the copy is paid once per cap bytes, not on every push.
        let mut tail = Tail::new(4);
        for (push, held) in [("abcd", 4), ("ef", 6), ("g", 7), ("h", 8), ("i", 4)] {
            tail.push(push.as_bytes());
            assert_eq!(tail.buf.len(), held, "after {push:?}");
        }
        assert_eq!(tail.text(Sanitize::Raw).as_deref(), Some("fghi"));
        let mut exact = Tail::new(3);
        exact.push(b"abc");
        assert_eq!(exact.text(Sanitize::Raw).as_deref(), Some("abc"));
        let mut none = Tail::new(0);
        none.push(b"abc");
        assert_eq!(none.text(Sanitize::Raw), None);
        assert!(none.buf.is_empty());
    }

    #[test]
    fn streams_have_their_contract_names() {
        assert_eq!(Stream::Stdout.name(), "stdout");
        assert_eq!(Stream::Stderr.name(), "stderr");
    }

    fn plan(mode: OutputMode, sanitize: Sanitize, max_line_bytes: u64) -> OutputPlan {
        OutputPlan {
            mode: Sourced::builtin(mode),
            sanitize: Sourced::builtin(sanitize),
            max_line_bytes: Sourced::builtin(max_line_bytes),
            tail_bytes: Sourced::builtin(64),
            max_queued_events: Sourced::builtin(100),
            max_queued_bytes: Sourced::builtin(1 << 16),
            when_full: Sourced::builtin(WhenFull::Wait),
        }
    }

    /// Bytes shaped to reach the worst cases: only line ends (one event
    /// per byte), only invalid UTF-8 (three bytes of text per byte), escape
    /// sequences, or anything.
    fn bytes_like(max: usize) -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            Just(b'\n'),
            Just(b'\r'),
            Just(0x1b),
            Just(0xff),
            Just(0xe2),
            any::<u8>()
        ];
        prop_oneof![
            prop::collection::vec(Just(b'\n'), 0..max),
            prop::collection::vec(Just(0xff), 0..max),
            prop::collection::vec(prop_oneof![Just(b'\n'), Just(0xff)], 0..max),
            prop::collection::vec(byte, 0..max),
        ]
    }

    /// The worst case for a read's first event: a long unfinished line of
    /// invalid bytes, ended by the read, then one event per byte.
    #[test]
    fn an_unfinished_line_counts_against_the_room() {
        for room_bytes in [2_000, 5_000, 20_000] {
            let mut output = JobOutput::new(
                "job-1".into(),
                &plan(OutputMode::Lines, Sanitize::Colors, 4096),
                ProgressTracker::new(&[]),
            );
            let mut ignored = Vec::new();
            output.feed(Stream::Stdout, &[0xff; 1000], &mut ignored);
            let room = Room {
                events: 10_000,
                bytes: room_bytes,
            };
            let n = output.max_read(Stream::Stdout, room);
            let mut out = Vec::new();
            output.feed(Stream::Stdout, &vec![b'\n'; n], &mut out);
            let cost: usize = out.iter().map(queue::cost).sum();
            assert_eq!(out.len(), n);
            assert!(cost <= room_bytes, "{cost} > {room_bytes}");
        }
    }

    /// The bound is not only safe (the property below) but what it says:
    /// one event held back for an unfinished line, the bytes of each event
    /// and of the line held so far counted once, and a chunk read sized to
    /// one event. A bound that reads too little stalls a job behind a queue
    /// with room to spare, so its exact values are pinned, at each edge.
    #[test]
    fn max_read_is_exact_at_its_edges() {
        let id: JobId = "job-1".into();
        // What every output event of this job costs besides its text, and
        // a text block's allocator slack: the two numbers the bound adds.
        let per_event = queue::output_event_overhead(&id) + 32;
        assert!(per_event > 64, "{per_event}: slot, id and stream name");
        let lines = |pending: usize| {
            let mut job = JobOutput::new(
                id.clone(),
                &plan(OutputMode::Lines, Sanitize::Colors, 4096),
                ProgressTracker::new(&[]),
            );
            job.feed(Stream::Stdout, &vec![b'x'; pending], &mut Vec::new());
            job
        };
        let plenty = usize::MAX / 2;
        let room = |events, bytes| Room { events, bytes };

        // By events: one is kept for the end of the line being read.
        let job = lines(0);
        assert_eq!(job.max_read(Stream::Stdout, room(10, plenty)), 9);
        assert_eq!(job.max_read(Stream::Stdout, room(1, plenty)), 0);
        assert_eq!(job.max_read(Stream::Stdout, room(0, plenty)), 0);
        // By bytes: the event ending the line, then k of (event + 3 bytes).
        for k in [0, 1, 7] {
            let exact = per_event + k * (per_event + 3);
            assert_eq!(job.max_read(Stream::Stdout, room(plenty, exact)), k);
            assert_eq!(
                job.max_read(Stream::Stdout, room(plenty, exact + per_event + 2)),
                k,
                "one byte short of the next event"
            );
            if k > 0 {
                assert_eq!(job.max_read(Stream::Stdout, room(plenty, exact - 1)), k - 1);
            }
        }
        assert_eq!(job.max_read(Stream::Stdout, room(plenty, per_event - 1)), 0);
        // A held line of 100 bytes costs up to 300 bytes of text, on the
        // stream that holds it only.
        let job = lines(100);
        let exact = per_event + 300 + 5 * (per_event + 3);
        assert_eq!(job.max_read(Stream::Stdout, room(plenty, exact)), 5);
        assert_eq!(job.max_read(Stream::Stdout, room(plenty, exact - 1)), 4);
        assert_eq!(
            job.max_read(Stream::Stderr, room(plenty, exact)),
            5 + 300 / (per_event + 3),
            "stderr holds nothing"
        );

        // Chunks: one event, three bytes of text per byte read, nine for a
        // split character carried over.
        let chunks = JobOutput::new(
            id.clone(),
            &plan(OutputMode::Chunks, Sanitize::Colors, 4096),
            ProgressTracker::new(&[]),
        );
        assert_eq!(chunks.max_read(Stream::Stdout, room(0, plenty)), 0);
        for k in [0, 1, 1000] {
            let exact = per_event + 9 + 3 * k;
            assert_eq!(chunks.max_read(Stream::Stdout, room(1, exact)), k);
            assert_eq!(chunks.max_read(Stream::Stdout, room(1, exact + 2)), k);
            assert_eq!(chunks.max_read(Stream::Stdout, room(5, exact + 3)), k + 1);
        }
        assert_eq!(chunks.max_read(Stream::Stdout, room(1, per_event)), 0);
    }

    proptest! {
        /// The events made from `max_read(room)` bytes never cost more than
        /// `room`, whatever came before (a partial line, half a character,
        /// an escape sequence in progress) and whatever the bytes are.
        #[test]
        fn a_read_of_max_read_bytes_fits_in_the_room(
            chunks_mode: bool,
            sanitize in prop::sample::select(vec![Sanitize::Colors, Sanitize::Strip, Sanitize::Raw]),
            max_line in 80u64..600,
            before in bytes_like(700),
            bytes in bytes_like(4000),
            events in 0usize..3000,
            room_bytes in 0usize..40_000,
        ) {
            let mode = if chunks_mode { OutputMode::Chunks } else { OutputMode::Lines };
            let mut output = JobOutput::new(
                "job-17".into(),
                &plan(mode, sanitize, max_line),
                ProgressTracker::new(&[]),
            );
            let mut ignored = Vec::new();
            output.feed(Stream::Stdout, &before, &mut ignored);
            let room = Room { events, bytes: room_bytes };
            let n = output.max_read(Stream::Stdout, room).min(bytes.len());
            let mut out = Vec::new();
            output.feed(Stream::Stdout, &bytes[..n], &mut out);
            let cost: usize = out.iter().map(queue::cost).sum();
            prop_assert!(out.len() <= room.events, "{} events in room for {}", out.len(), room.events);
            prop_assert!(cost <= room.bytes, "{cost} bytes in room for {}", room.bytes);
        }
    }
}
