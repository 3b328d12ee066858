//! The host thread's I/O: poll tokens that say which job and which source
//! became ready, and reading a job's pipe into its output pipeline in
//! bounded bites so one chatty job cannot starve the others.
//!
//! The invariant: what has been read but not yet queued never costs more
//! than the plugin's queue bounds, whatever the job prints (one event per
//! byte for empty lines, long lines, invalid UTF-8), and a job whose plugin
//! asked for `when_full = "wait"` is never read beyond the room its queue
//! has.

use crate::contract::JobEvent;
use crate::output::queue::Room;
use crate::output::{JobOutput, Stream};
use crate::policy::WhenFull;
use crate::sandbox::Pipe;
use mio::Token;
use std::io::{ErrorKind, Read};

/// Bytes read per pipe before other pipes get a turn.
const READ_BUDGET: usize = 1 << 20;
/// The smallest read worth a system call while a queue fills up; a job
/// whose queue has less room waits for a drain instead.
const MIN_READ: usize = 1024;

/// What of a job became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Source {
    Stdout,
    Stderr,
    /// The first process exited (its pidfd became readable).
    Exit,
    /// The job's observation listener has calls waiting (`run --why`, learn).
    Observe,
}

impl Source {
    const ALL: [Source; 4] = [
        Source::Stdout,
        Source::Stderr,
        Source::Exit,
        Source::Observe,
    ];

    fn index(self) -> usize {
        match self {
            Source::Stdout => 0,
            Source::Stderr => 1,
            Source::Exit => 2,
            Source::Observe => 3,
        }
    }
}

/// A job's slot and one of its sources, as a poll token. The waker's token
/// (`usize::MAX`) is never produced: slots are counted from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct JobToken {
    pub slot: usize,
    pub source: Source,
}

impl JobToken {
    pub fn new(slot: usize, source: Source) -> Self {
        Self { slot, source }
    }

    pub fn token(self) -> Token {
        Token(self.slot * Source::ALL.len() + self.source.index())
    }

    pub fn from_token(token: Token) -> Self {
        let per = Source::ALL.len();
        Self {
            slot: token.0 / per,
            source: Source::ALL[token.0 % per],
        }
    }
}

/// What a read round left.
pub(super) enum PipeState {
    /// Nothing more to read now.
    Drained,
    /// End of file (or an error): the pipe is done.
    Closed,
    /// The budget ran out with data left: come back next round.
    MoreLater,
    /// The plugin's queue has no room and the job waits for it
    /// (`when_full = "wait"`): read again after the plugin drains.
    Full,
}

/// The plugin's queue as the reader sees it: room left and its bounds.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueueRoom {
    pub room: Room,
    pub bounds: Room,
}

impl QueueRoom {
    fn is_empty(&self) -> bool {
        self.room.events >= self.bounds.events
    }
}

/// Where a reader's events go: queues `batch` (emptying it) and says how
/// much room the plugin's queue has left. With `wait`, it also tells the
/// queue that the host waits for a drain, under the same lock as the room
/// it reports, so a drain in between cannot go unnoticed.
pub(super) trait EventSink {
    fn queue(&mut self, batch: &mut Vec<JobEvent>, wait: bool) -> QueueRoom;
}

/// How many bytes a `wait` job may read now: as many as the queue has room
/// for (see [`JobOutput::max_read`]), but not in bites smaller than
/// [`MIN_READ`] unless the queue's whole capacity is smaller. `None` when
/// the job must wait for a drain. An empty queue always allows a read, so
/// a line longer than the bounds still gets through.
pub(super) fn wait_allowance(
    output: &JobOutput,
    stream: Stream,
    queue: QueueRoom,
) -> Option<usize> {
    let allowed = output.max_read(stream, queue.room);
    let threshold = MIN_READ.min(output.max_read(stream, queue.bounds)).max(1);
    if allowed >= threshold {
        Some(allowed)
    } else if queue.is_empty() {
        Some(allowed.max(MIN_READ))
    } else {
        None
    }
}

/// Reads `pipe` (non-blocking) through `buf` into `output` and its events
/// through `sink` into the plugin's queue, never holding more than the
/// queue's bounds allow between the pipe and the queue.
///
/// With `drop_oldest` the bytes of one read are fed in slices whose events
/// fit in the queue's bounds, each slice queued before the next is
/// converted (the queue drops the oldest). With `wait` no more is read than
/// the queue has room for, and when it has none the pipe is left unread:
/// the job blocks in `write` until the plugin drains.
pub(super) fn read_pipe(
    pipe: &mut Pipe,
    stream: Stream,
    buf: &mut [u8],
    output: &mut JobOutput,
    batch: &mut Vec<JobEvent>,
    sink: &mut impl EventSink,
    when_full: WhenFull,
) -> PipeState {
    let wait = when_full == WhenFull::Wait;
    // Queues what was emitted before (lifecycle lines), in order, first.
    let mut queue = sink.queue(batch, false);
    let mut read = 0;
    while read < READ_BUDGET {
        let limit = if wait {
            match wait_allowance(output, stream, queue) {
                Some(n) => n.min(buf.len()),
                None => {
                    queue = sink.queue(batch, true);
                    match wait_allowance(output, stream, queue) {
                        Some(n) => n.min(buf.len()),
                        None => return PipeState::Full,
                    }
                }
            }
        } else {
            buf.len()
        };
        match pipe.read(&mut buf[..limit]) {
            Ok(0) => return PipeState::Closed,
            Ok(n) => {
                read += n;
                let slice = if wait {
                    n
                } else {
                    output.max_read(stream, queue.bounds).max(MIN_READ)
                };
                for bytes in buf[..n].chunks(slice) {
                    output.feed(stream, bytes, batch);
                    queue = sink.queue(batch, false);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return PipeState::Drained,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return PipeState::Closed,
        }
    }
    PipeState::MoreLater
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_never_collide_with_the_waker() {
        for slot in [0, 1, 7, 1 << 40] {
            for source in Source::ALL {
                let t = JobToken::new(slot, source);
                assert_eq!(JobToken::from_token(t.token()), t);
                assert_ne!(t.token(), Token(usize::MAX));
            }
        }
        assert_ne!(
            JobToken::new(1, Source::Stdout).token(),
            JobToken::new(0, Source::Exit).token()
        );
    }
}
