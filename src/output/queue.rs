//! The per-plugin event queue between the host thread and `drain_events`.
//!
//! The invariant: the queue's memory stays under its bounds however much a
//! job prints while nobody drains, and the events a plugin must see are
//! never lost. What a full queue does is the job's choice (`output.when_full`):
//!
//! - `drop_oldest`: the oldest output events (log lines from stdout/stderr,
//!   chunks) and superseded progress events go first; lifecycle events and
//!   `system` lines are kept. The next drain carries, for each job that
//!   lost output, a `system` line saying how many events were dropped,
//!   placed before that job's remaining output.
//! - `wait`: the job's output is never dropped ([`EventQueue::hold`]). The
//!   host keeps such a queue within its bounds by reading no more than
//!   [`EventQueue::room`] leaves space for, and stops reading the job's pipes
//!   when there is none; the next drain tells it to read again
//!   ([`EventQueue::take_waiting`]).
//!
//! What an event costs against the byte bound is what it really occupies:
//! its slot in the queue plus the heap blocks of its strings, by capacity
//! and rounded the way the allocator rounds them ([`cost`]). So the byte
//! bound is a bound on memory, for one-byte lines as for long ones.

use crate::contract::{JobEvent, JobId, JobLogLineData, STREAM_SYSTEM};
use std::collections::{HashMap, HashSet, VecDeque};

/// What one queued event occupies besides its heap blocks.
pub const SLOT_BYTES: usize = std::mem::size_of::<(JobEvent, usize)>();

/// Room left in a queue before a bound is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Events (each queued event counts one).
    pub events: usize,
    /// Bytes, as [`cost`] counts them.
    pub bytes: usize,
}

/// A bounded queue of events for one plugin.
#[derive(Debug)]
pub struct EventQueue {
    events: VecDeque<(JobEvent, usize)>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    dropped: HashMap<JobId, u64>,
    /// Jobs whose output is never dropped (`when_full = "wait"`), until
    /// their terminal event is drained.
    held: HashSet<JobId>,
    /// The host stopped reading a job because this queue was full: the
    /// next drain must wake it.
    waiting: bool,
}

impl EventQueue {
    /// An empty queue holding at most `max_events` events and `max_bytes`
    /// bytes (each at least 1; policy `output.max_queued_events` and
    /// `output.max_queued_bytes`).
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            max_events: max_events.max(1),
            max_bytes: max_bytes.max(1),
            dropped: HashMap::new(),
            held: HashSet::new(),
            waiting: false,
        }
    }

    /// Changes the bounds (a reloaded policy, or a job with other settings).
    pub fn set_bounds(&mut self, max_events: usize, max_bytes: usize) {
        self.max_events = max_events.max(1);
        self.max_bytes = max_bytes.max(1);
    }

    /// The bounds: events and bytes.
    pub fn bounds(&self) -> Room {
        Room {
            events: self.max_events,
            bytes: self.max_bytes,
        }
    }

    /// What is left before a bound is reached (zero when one is exceeded).
    pub fn room(&self) -> Room {
        Room {
            events: self.max_events.saturating_sub(self.events.len()),
            bytes: self.max_bytes.saturating_sub(self.bytes),
        }
    }

    /// Never drops `job`'s output: the host waits for room instead. Lasts
    /// until the job's terminal event is drained, or [`EventQueue::release`].
    pub fn hold(&mut self, job: &JobId) {
        self.held.insert(job.clone());
    }

    /// `job`'s output may be dropped again (the host is shutting down and
    /// waits for nobody).
    pub fn release(&mut self, job: &JobId) {
        self.held.remove(job);
        self.enforce_bounds();
    }

    /// Records that the host stopped reading a job until this queue drains.
    pub fn set_waiting(&mut self) {
        self.waiting = true;
    }

    /// Whether the host waits for this queue to drain; clears the flag.
    pub fn take_waiting(&mut self) -> bool {
        std::mem::take(&mut self.waiting)
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes held, as [`cost`] counts them.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends an event, evicting old output if a bound is exceeded.
    pub fn push(&mut self, event: JobEvent) {
        let cost = cost(&event);
        self.bytes += cost;
        self.events.push_back((event, cost));
        self.enforce_bounds();
    }

    /// Appends many events. Bounds are enforced after each, so the queue
    /// never holds more than one event beyond them (held output aside).
    pub fn extend(&mut self, events: impl IntoIterator<Item = JobEvent>) {
        for event in events {
            self.push(event);
        }
    }

    fn over(&self) -> bool {
        self.events.len() > self.max_events || self.bytes > self.max_bytes
    }

    fn enforce_bounds(&mut self) {
        if !self.over() {
            return;
        }
        // Scan from the front for evictable events; lifecycle events at the
        // front are skipped, and there are few of them (a handful per job).
        let mut scan = 0;
        while self.over() {
            let held = &self.held;
            let Some(offset) = self
                .events
                .iter()
                .skip(scan)
                .position(|(e, _)| evictable(e) && !held.contains(e.job_id()))
            else {
                return;
            };
            let index = scan + offset;
            let (event, cost) = self.events.remove(index).expect("index is in range");
            self.bytes -= cost;
            if event.is_droppable_output() {
                *self.dropped.entry(event.job_id().clone()).or_default() += 1;
            }
            scan = index;
        }
    }

    /// Takes every queued event, adding a notice for each job that lost output.
    pub fn drain(&mut self) -> Vec<JobEvent> {
        self.bytes = 0;
        if !self.held.is_empty() {
            for (event, _) in &self.events {
                if event.is_terminal() {
                    self.held.remove(event.job_id());
                }
            }
        }
        if self.dropped.is_empty() {
            // Drain in place: the deque keeps its buffer for the next round.
            return self.events.drain(..).map(|(e, _)| e).collect();
        }
        let events: Vec<(JobEvent, usize)> = self.events.drain(..).collect();
        let mut pending = std::mem::take(&mut self.dropped);
        let mut out = Vec::with_capacity(events.len() + pending.len());
        let (max_events, max_bytes) = (self.max_events, self.max_bytes);
        for (event, _) in events {
            let needs_notice = !matches!(event, JobEvent::JobStarted { .. })
                && !is_system_line(&event)
                && pending.contains_key(event.job_id());
            if needs_notice {
                let count = pending.remove(event.job_id()).expect("checked");
                out.push(notice(event.job_id().clone(), count, max_events, max_bytes));
            }
            out.push(event);
        }
        let mut rest: Vec<_> = pending.into_iter().collect();
        rest.sort();
        for (job_id, count) in rest {
            out.push(notice(job_id, count, max_events, max_bytes));
        }
        out
    }
}

fn evictable(event: &JobEvent) -> bool {
    event.is_droppable_output() || matches!(event, JobEvent::JobProgress { .. })
}

fn is_system_line(event: &JobEvent) -> bool {
    matches!(event, JobEvent::JobLogLine { data, .. } if data.stream == STREAM_SYSTEM)
}

fn notice(job_id: JobId, count: u64, max_events: usize, max_bytes: usize) -> JobEvent {
    JobEvent::JobLogLine {
        job_id,
        data: JobLogLineData {
            line: format!(
                "jobwarden: {count} output event(s) of this job were dropped because events were not drained in time (queue bound: {max_events} events, {})",
                crate::policy::units::format_size(max_bytes as u64)
            ),
            stream: STREAM_SYSTEM.to_string(),
        },
    }
}

/// The heap block a string or vector of `capacity` bytes occupies: glibc's
/// malloc adds an 8-byte header, rounds to 16 and gives at least 32 bytes
/// (other allocators round alike or tighter).
pub const fn heap_bytes(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let block = (capacity + 8 + 15) & !15;
    if block < 32 { 32 } else { block }
}

/// What an event costs against the byte bound: its slot in the queue and
/// the heap blocks of its strings.
pub fn cost(event: &JobEvent) -> usize {
    let text = |s: &String| heap_bytes(s.capacity());
    let optional = |s: &Option<String>| s.as_ref().map_or(0, text);
    SLOT_BYTES
        + text(event.job_id())
        + match event {
            JobEvent::JobLogLine { data, .. } => text(&data.line) + text(&data.stream),
            JobEvent::JobOutputChunk { data, .. } => {
                heap_bytes(data.bytes.capacity()) + text(&data.stream)
            }
            JobEvent::JobProgress { data, .. } => optional(&data.step),
            JobEvent::JobCompleted { data, .. } => {
                text(&data.completed_at) + optional(&data.output_tail)
            }
            JobEvent::JobFailed { data, .. } => text(&data.error) + text(&data.failed_at),
            JobEvent::JobCancelled { data, .. } => text(&data.reason) + text(&data.cancelled_at),
            JobEvent::JobStarted { data, .. } => text(&data.started_at),
        }
}

/// The most an output event of `job_id` can cost besides its text's heap
/// block: its slot, the job id and the stream name.
pub fn output_event_overhead(job_id: &JobId) -> usize {
    SLOT_BYTES + heap_bytes(job_id.capacity()) + heap_bytes("stdout".len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::*;

    fn line(job: &str, text: &str) -> JobEvent {
        JobEvent::JobLogLine {
            job_id: job.into(),
            data: JobLogLineData {
                line: text.into(),
                stream: STREAM_STDOUT.into(),
            },
        }
    }

    fn started(job: &str) -> JobEvent {
        JobEvent::JobStarted {
            job_id: job.into(),
            data: JobStartedData {
                pid: Some(1),
                started_at: "t".into(),
            },
        }
    }

    fn done(job: &str) -> JobEvent {
        JobEvent::JobCompleted {
            job_id: job.into(),
            data: JobCompletedData {
                exit_code: 0,
                completed_at: "t".into(),
                output_tail: None,
            },
        }
    }

    #[test]
    fn keeps_lifecycle_and_drops_oldest_output() {
        let mut q = EventQueue::new(5, 1 << 20);
        q.push(started("a"));
        for i in 0..100 {
            q.push(line("a", &i.to_string()));
        }
        q.push(done("a"));
        assert!(q.len() <= 5);
        let events = q.drain();
        assert!(matches!(events[0], JobEvent::JobStarted { .. }));
        let JobEvent::JobLogLine { data, .. } = &events[1] else {
            panic!("{events:?}")
        };
        assert_eq!(data.stream, STREAM_SYSTEM);
        assert!(data.line.contains("97 output event(s)"), "{}", data.line);
        let kept: Vec<&str> = events
            .iter()
            .filter_map(|e| match e {
                JobEvent::JobLogLine { data, .. } if data.stream == STREAM_STDOUT => {
                    Some(data.line.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(kept, ["97", "98", "99"]);
        assert!(events.last().unwrap().is_terminal());
        assert!(q.drain().is_empty());
    }

    fn progress(job: &str, percent: u8) -> JobEvent {
        JobEvent::JobProgress {
            job_id: job.into(),
            data: JobProgressData {
                percent: Some(percent),
                step: Some("step".into()),
            },
        }
    }

    fn system(job: &str, text: &str) -> JobEvent {
        JobEvent::JobLogLine {
            job_id: job.into(),
            data: JobLogLineData {
                line: text.into(),
                stream: STREAM_SYSTEM.into(),
            },
        }
    }

    fn texts(events: &[JobEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                JobEvent::JobLogLine { job_id, data } => {
                    format!("{job_id} {} {}", data.stream, data.line)
                }
                JobEvent::JobProgress { job_id, data } => {
                    format!("{job_id} progress {:?}", data.percent)
                }
                JobEvent::JobStarted { job_id, .. } => format!("{job_id} started"),
                JobEvent::JobCompleted { job_id, .. } => format!("{job_id} completed"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_event_costs_its_slot_and_the_heap_blocks_of_its_strings() {
        let at = || "2026".to_string();
        let cases = [
            (line("ab", "hello"), vec![5, 6]),
            (
                JobEvent::JobOutputChunk {
                    job_id: "ab".into(),
                    data: JobOutputChunkData {
                        bytes: vec![1, 2, 3],
                        stream: STREAM_STDERR.into(),
                    },
                },
                vec![3, 6],
            ),
            (progress("ab", 1), vec![4]),
            (
                JobEvent::JobProgress {
                    job_id: "ab".into(),
                    data: JobProgressData {
                        percent: None,
                        step: None,
                    },
                },
                vec![],
            ),
            (
                JobEvent::JobCompleted {
                    job_id: "ab".into(),
                    data: JobCompletedData {
                        exit_code: 0,
                        completed_at: at(),
                        output_tail: Some("tail!".into()),
                    },
                },
                vec![4, 5],
            ),
            (done("ab"), vec![1]),
            (
                JobEvent::JobFailed {
                    job_id: "ab".into(),
                    data: JobFailedData {
                        exit_code: None,
                        error: "err".into(),
                        failed_at: at(),
                    },
                },
                vec![3, 4],
            ),
            (
                JobEvent::JobCancelled {
                    job_id: "ab".into(),
                    data: JobCancelledData {
                        reason: "why".into(),
                        cancelled_at: at(),
                    },
                },
                vec![3, 4],
            ),
            (started("ab"), vec![1]),
        ];
        // A slot, the job id's block, then one block per string.
        let fixed = SLOT_BYTES + heap_bytes(2);
        for (event, strings) in cases {
            let blocks: usize = strings.into_iter().map(heap_bytes).sum();
            assert_eq!(cost(&event), fixed + blocks, "{event:?}");
        }
        let mut q = EventQueue::new(10, 1 << 20);
        assert!(q.is_empty());
        q.push(line("ab", "hello"));
        q.extend([started("ab"), done("ab")]);
        assert_eq!(q.len(), 3);
        assert!(!q.is_empty());
        assert_eq!(
            q.bytes(),
            3 * fixed + heap_bytes(5) + heap_bytes(6) + 2 * heap_bytes(1)
        );
        q.drain();
        assert_eq!((q.len(), q.bytes()), (0, 0));
        // The overhead `max_read` budgets per output event is what an
        // output event with no text costs: slot, id and stream name.
        for id in ["ab", "a-much-longer-job-identifier-0123456789"] {
            let event = |stream: &str| JobEvent::JobLogLine {
                job_id: id.into(),
                data: JobLogLineData {
                    line: String::new(),
                    stream: stream.into(),
                },
            };
            let overhead = output_event_overhead(&id.to_string());
            assert_eq!(overhead, cost(&event(STREAM_STDOUT)), "{id}");
            assert_eq!(overhead, cost(&event(STREAM_STDERR)), "{id}");
        }
    }

    #[test]
    fn a_queue_exactly_at_its_bounds_keeps_everything() {
        let mut q = EventQueue::new(3, 1 << 20);
        q.extend([line("a", "1"), line("a", "2"), line("a", "3")]);
        assert_eq!(
            texts(&q.drain()),
            ["a stdout 1", "a stdout 2", "a stdout 3"]
        );
        let one = cost(&line("a", "1"));
        let mut q = EventQueue::new(100, 2 * one);
        q.push(line("a", "1"));
        q.push(line("a", "2"));
        assert_eq!(q.bytes(), 2 * one);
        assert_eq!(q.len(), 2);
        q.push(line("a", "3"));
        assert_eq!(q.bytes(), 2 * one);
        assert_eq!(
            texts(&q.drain()),
            [
                format!(
                    "a system jobwarden: 1 output event(s) of this job were dropped because events were not drained in time (queue bound: 100 events, {} B)",
                    2 * one
                ),
                "a stdout 2".into(),
                "a stdout 3".into(),
            ]
        );
    }

    #[test]
    fn progress_goes_before_lifecycle_and_system_lines_never() {
        let mut q = EventQueue::new(3, 1 << 20);
        q.extend([
            started("a"),
            system("a", "report"),
            progress("a", 1),
            progress("a", 2),
            line("a", "x"),
        ]);
        assert_eq!(
            texts(&q.drain()),
            ["a started", "a system report", "a stdout x"],
            "progress is superseded, output is not dropped when it need not be"
        );
        // Nothing evictable left: the bound gives way to lifecycle events.
        let mut q = EventQueue::new(1, 1 << 20);
        q.extend([started("a"), done("a")]);
        assert_eq!(texts(&q.drain()), ["a started", "a completed"]);
    }

    #[test]
    fn a_notice_comes_before_the_jobs_next_output() {
        let mut q = EventQueue::new(4, 1 << 20);
        q.extend([
            started("b"),
            line("a", "1"),
            line("a", "2"),
            line("b", "1"),
            line("b", "2"),
        ]);
        // Bounds of 4: "a 1" went, then "a 2" for a's system line. A system
        // line is not output the notice must come before: with none of a's
        // output left, the notice comes last.
        q.push(system("a", "late report"));
        q.set_bounds(4, 1 << 20);
        let events = q.drain();
        assert_eq!(
            texts(&events),
            [
                "b started",
                "b stdout 1",
                "b stdout 2",
                "a system late report",
                "a system jobwarden: 2 output event(s) of this job were dropped because events were not drained in time (queue bound: 4 events, 1 MiB)",
            ]
        );
        // A job whose every remaining event went still hears about it, after
        // the others, jobs in order.
        let mut q = EventQueue::new(1, 1 << 20);
        q.extend([line("z", "1"), line("y", "1"), started("x")]);
        assert_eq!(
            texts(&q.drain()),
            [
                "x started",
                "y system jobwarden: 1 output event(s) of this job were dropped because events were not drained in time (queue bound: 1 events, 1 MiB)",
                "z system jobwarden: 1 output event(s) of this job were dropped because events were not drained in time (queue bound: 1 events, 1 MiB)",
            ]
        );
    }

    #[test]
    fn new_bounds_apply_to_the_next_push() {
        let mut q = EventQueue::new(10, 1 << 20);
        q.extend([line("a", "1"), line("a", "2"), line("a", "3")]);
        q.set_bounds(0, 1 << 20);
        q.push(line("a", "4"));
        assert_eq!(q.len(), 1, "a bound of 0 events is taken as 1");
        assert_eq!(texts(&q.drain())[1], "a stdout 4");
        q.set_bounds(2, 1 << 20);
        q.extend([line("a", "5"), line("a", "6")]);
        assert_eq!(q.len(), 2);
        let q = EventQueue::new(0, 0);
        assert_eq!((q.max_events, q.max_bytes), (1, 1));
    }

    #[test]
    fn byte_bound_holds() {
        let mut q = EventQueue::new(1_000_000, 64 * 1024);
        let text = "x".repeat(1000);
        for _ in 0..10_000 {
            q.push(line("a", &text));
        }
        assert!(q.bytes() <= 64 * 1024, "{}", q.bytes());
    }

    #[test]
    fn other_jobs_get_their_own_notice() {
        let mut q = EventQueue::new(3, 1 << 20);
        q.push(started("a"));
        q.push(started("b"));
        for i in 0..10 {
            q.push(line("a", &i.to_string()));
            q.push(line("b", &i.to_string()));
        }
        let events = q.drain();
        let notices = events
            .iter()
            .filter(
                |e| matches!(e, JobEvent::JobLogLine { data, .. } if data.stream == STREAM_SYSTEM),
            )
            .count();
        assert_eq!(notices, 2);
    }

    #[test]
    fn held_output_is_never_dropped_until_its_terminal_event_is_drained() {
        let mut q = EventQueue::new(16, 1 << 20);
        q.hold(&"w".to_string());
        q.push(started("w"));
        q.push(started("d"));
        for i in 0..40 {
            q.push(line("w", &i.to_string()));
            q.push(line("d", &i.to_string()));
        }
        assert_eq!(q.room().events, 0);
        let events = q.drain();
        let kept = |job: &str| {
            events
                .iter()
                .filter(|e| e.job_id() == job && e.is_droppable_output())
                .count()
        };
        assert_eq!(kept("w"), 40, "the waiting job lost nothing");
        assert!(kept("d") < 40, "the other job's output was dropped");
        assert_eq!(q.room(), q.bounds());

        // Held until its terminal event is drained, then dropped like any.
        q.push(line("w", "last"));
        q.push(done("w"));
        q.drain();
        for i in 0..40 {
            q.push(line("w", &i.to_string()));
        }
        assert!(q.len() <= 16);
    }

    #[test]
    fn release_lets_held_output_go_at_once() {
        let mut q = EventQueue::new(16, 1 << 20);
        q.hold(&"w".to_string());
        for i in 0..40 {
            q.push(line("w", &i.to_string()));
        }
        assert_eq!(q.len(), 40);
        q.release(&"w".to_string());
        assert!(q.len() <= 16);
    }

    #[test]
    fn the_waiting_flag_is_taken_once() {
        let mut q = EventQueue::new(16, 1 << 20);
        assert!(!q.take_waiting());
        q.set_waiting();
        assert!(q.take_waiting());
        assert!(!q.take_waiting());
    }

    #[test]
    fn cost_counts_heap_blocks_by_capacity() {
        assert_eq!(heap_bytes(0), 0);
        assert_eq!(heap_bytes(1), 32);
        assert_eq!(heap_bytes(24), 32);
        assert_eq!(heap_bytes(25), 48);
        let mut text = String::with_capacity(1000);
        text.push('y');
        let event = JobEvent::JobLogLine {
            job_id: "a".into(),
            data: JobLogLineData {
                line: text,
                stream: STREAM_STDOUT.into(),
            },
        };
        assert_eq!(cost(&event), SLOT_BYTES + 32 + heap_bytes(1000) + 32);
    }
}
