//! A job's output pipes and exit, for a host thread that polls with mio.
//!
//! Windows anonymous pipes cannot join a poller, so each pipe has a reader
//! thread that fills a bounded buffer and, when the buffer goes from empty
//! to non-empty (or the pipe closes), hands the pipe's token to the host
//! thread through the [`ReadyList`] and wakes it. The host then reads the
//! buffer without blocking, as it reads a pipe elsewhere. A full buffer
//! stops the reader thread, so a job that floods its output waits for the
//! host instead of growing its memory.

use crate::sandbox::ExitInfo;
use mio::{Registry, Token, Waker};
use std::collections::{HashSet, VecDeque};
use std::io::{self, PipeReader, Read};
use std::os::windows::io::AsRawHandle;
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use windows_sys::Win32::Foundation::{FILETIME, HANDLE};
use windows_sys::Win32::System::IO::CancelSynchronousIo;
use windows_sys::Win32::System::Threading::GetProcessTimes;

/// Bytes a reader thread buffers before it waits for the host.
const BUFFER_BYTES: usize = 1 << 20;
/// How often a job's exit is looked for.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Tokens made ready by reader threads, and the waker of the host thread.
#[derive(Clone)]
pub(crate) struct ReadyList {
    tokens: Arc<Mutex<Vec<Token>>>,
    waker: Arc<Waker>,
}

impl ReadyList {
    pub fn new(waker: Arc<Waker>) -> Self {
        Self {
            tokens: Arc::new(Mutex::new(Vec::new())),
            waker,
        }
    }

    fn push(&self, token: Token) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(token);
        let _ = self.waker.wake();
    }

    /// Moves the tokens made ready since the last call into `ready`.
    pub fn drain_into(&self, ready: &mut HashSet<Token>) {
        ready.extend(
            self.tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..),
        );
    }
}

#[derive(Default)]
struct Buffer {
    data: VecDeque<u8>,
    /// The pipe reached its end (or failed).
    closed: bool,
    /// The host dropped the pipe: discard what is left.
    abandoned: bool,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    room: Condvar,
}

/// The read end of a job's stdout or stderr, read without blocking.
pub(crate) struct Pipe {
    reader: Option<PipeReader>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe").finish_non_exhaustive()
    }
}

impl Pipe {
    pub fn new(reader: PipeReader) -> Self {
        Self {
            reader: Some(reader),
            shared: Arc::default(),
            thread: None,
        }
    }

    /// Starts the pipe's reader thread, which reports under `token`.
    pub fn register(&mut self, _: &Registry, token: Token, ready: &ReadyList) -> io::Result<()> {
        let Some(reader) = self.reader.take() else {
            return Ok(());
        };
        let shared = self.shared.clone();
        let ready = ready.clone();
        let thread = std::thread::Builder::new()
            .name("jobwarden-pipe".into())
            .spawn(move || read_until_closed(reader, &shared, &ready, token))?;
        self.thread = Some(thread);
        Ok(())
    }

    /// The reader thread stops on its own at the end of the pipe.
    pub fn deregister(&mut self, _: &Registry) {}
}

fn read_until_closed(mut reader: PipeReader, shared: &Shared, ready: &ReadyList, token: Token) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            buffer.closed = true;
            drop(buffer);
            ready.push(token);
            return;
        }
        while buffer.data.len() >= BUFFER_BYTES && !buffer.abandoned {
            buffer = shared.room.wait(buffer).unwrap_or_else(|e| e.into_inner());
        }
        if buffer.abandoned {
            // The host dropped the pipe: stop reading (the job's writes then
            // fail instead of filling a buffer nobody reads).
            return;
        }
        let was_empty = buffer.data.is_empty();
        buffer.data.extend(&chunk[..n]);
        drop(buffer);
        if was_empty {
            ready.push(token);
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.data.is_empty() {
            return if buffer.closed {
                Ok(0)
            } else {
                Err(io::ErrorKind::WouldBlock.into())
            };
        }
        let n = buffer.data.len().min(buf.len());
        for (slot, byte) in buf.iter_mut().zip(buffer.data.drain(..n)) {
            *slot = byte;
        }
        drop(buffer);
        self.shared.room.notify_one();
        Ok(n)
    }
}

impl Drop for Pipe {
    /// Stops the reader thread even if a write end outlives the job (held
    /// by a process outside it): its blocking read is cancelled until it
    /// sees `abandoned` and returns. Waits at most about 50 ms.
    fn drop(&mut self) {
        let mut buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.abandoned = true;
        buffer.data = VecDeque::new();
        drop(buffer);
        self.shared.room.notify_one();
        let Some(thread) = self.thread.take() else {
            return;
        };
        for _ in 0..50 {
            if thread.is_finished() {
                let _ = thread.join();
                return;
            }
            // SAFETY: the thread's handle is valid while we hold `thread`.
            unsafe { CancelSynchronousIo(thread.as_raw_handle() as HANDLE) };
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Notices the exit of a job's first process by polling it.
pub(crate) struct ExitWatch {
    child: Child,
}

impl std::fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitWatch")
            .field("pid", &self.child.id())
            .finish()
    }
}

impl ExitWatch {
    pub(crate) fn new(child: Child) -> Self {
        Self { child }
    }

    /// Nothing to register: exits are polled.
    pub fn register(&mut self, _: &Registry, _: Token, _: &ReadyList) -> io::Result<()> {
        Ok(())
    }

    /// See [`ExitWatch::register`].
    pub fn deregister(&mut self, _: &Registry) {}

    /// How often to call [`ExitWatch::try_wait`].
    pub fn poll_every(&self) -> Option<Duration> {
        Some(EXIT_POLL)
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitInfo {
        let _ = self.child.wait();
        self.try_wait().unwrap_or_default()
    }

    /// The exit code and CPU times, once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitInfo> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => {
                let (user, system) = cpu_times(&self.child);
                Some(ExitInfo {
                    code: status.code(),
                    user,
                    system,
                    ..ExitInfo::default()
                })
            }
            Err(_) => Some(ExitInfo {
                lost: true,
                ..ExitInfo::default()
            }),
        }
    }
}

/// User and kernel CPU time of a process.
fn cpu_times(child: &Child) -> (Duration, Duration) {
    let mut times = [FILETIME::default(); 4];
    let [created, exited, kernel, user] = &mut times;
    // SAFETY: a valid process handle and four local FILETIMEs.
    let ok = unsafe {
        GetProcessTimes(
            child.as_raw_handle() as HANDLE,
            created,
            exited,
            kernel,
            user,
        )
    };
    if ok == 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let as_duration = |t: &FILETIME| {
        let ticks = (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
        Duration::from_nanos(ticks.saturating_mul(100))
    };
    (as_duration(&times[3]), as_duration(&times[2]))
}
