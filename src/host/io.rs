//! The host thread's I/O: poll tokens that say which job and which source
//! became ready, and reading a job's pipe into its output pipeline in
//! bounded bites so one chatty job cannot starve the others.

use crate::contract::JobEvent;
use crate::output::{JobOutput, Stream};
use crate::sandbox::Pipe;
use mio::Token;
use std::io::{ErrorKind, Read};

/// Bytes read per pipe before other pipes get a turn.
const READ_BUDGET: usize = 1 << 20;

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
}

/// Reads `pipe` (non-blocking) through `buf` into `output`, which turns
/// bytes into events in `batch`.
pub(super) fn read_pipe(
    pipe: &mut Pipe,
    stream: Stream,
    buf: &mut [u8],
    output: &mut JobOutput,
    batch: &mut Vec<JobEvent>,
) -> PipeState {
    let mut read = 0;
    while read < READ_BUDGET {
        match pipe.read(buf) {
            Ok(0) => return PipeState::Closed,
            Ok(n) => {
                read += n;
                output.feed(stream, &buf[..n], batch);
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
