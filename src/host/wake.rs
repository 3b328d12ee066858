//! Telling a host's event loop that a plugin has events, without polling:
//! a readable descriptor per plugin (an eventfd on Linux, a pipe on other
//! Unixes) for `poll`/`mio`/`tokio::io::unix::AsyncFd`, and task wakers for
//! [`super::PluginHandle::next_events`], which works on any async runtime.
//!
//! Waking is edge-cheap. The descriptor is written once when the plugin's
//! queue goes from drained to not drained, however many lines follow before
//! the next drain; a drain resets it. Wakers are taken when woken, so a
//! task is woken once per batch, not per line. The descriptor is written
//! or reset, and the wakers taken, under the queues lock, in the same
//! critical section as the push or drain they describe: a push can never
//! fall between a drain and its reset, nor a task register unseen. The
//! tasks taken are woken after the lock is released ([`Wakers`]), since a
//! waker may poll its future, which takes the lock, inline.

use std::sync::Mutex;
use std::task::Waker;

use super::locks::lock;

#[derive(Default)]
struct State {
    /// Whether the descriptor was written since the last reset.
    signalled: bool,
    /// Tasks waiting in `next_events`.
    wakers: Vec<Waker>,
}

/// Tasks to wake, taken under the queues lock (so none registers between a
/// push and its notification) and woken after it is released: a waker may
/// poll its future inline, and the future takes the queues lock.
#[derive(Default)]
#[must_use = "the tasks taken must be woken"]
pub(super) struct Wakers(Vec<Waker>);

impl Wakers {
    pub fn extend(&mut self, other: Wakers) {
        self.0.extend(other.0);
    }

    pub fn wake(self) {
        for waker in self.0 {
            waker.wake();
        }
    }
}

/// One plugin's wake-ups.
pub(super) struct Notifier {
    state: Mutex<State>,
    #[cfg(unix)]
    fd: std::sync::OnceLock<ReadyFd>,
}

impl Notifier {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            #[cfg(unix)]
            fd: std::sync::OnceLock::new(),
        }
    }

    /// Events were queued: signals the descriptor if it is not signalled
    /// yet and takes the waiting tasks, for the caller to wake once it has
    /// released the queues lock (see [`Wakers`]).
    #[must_use = "the tasks taken must be woken"]
    pub fn notify(&self) -> Wakers {
        let mut state = lock(&self.state);
        #[cfg(unix)]
        if !state.signalled
            && let Some(fd) = self.fd.get()
        {
            fd.signal();
            state.signalled = true;
        }
        Wakers(std::mem::take(&mut state.wakers))
    }

    /// The queue is about to be drained: the descriptor stops being
    /// readable until the next push.
    pub fn reset(&self) {
        let mut state = lock(&self.state);
        if state.signalled {
            #[cfg(unix)]
            if let Some(fd) = self.fd.get() {
                fd.clear();
            }
            state.signalled = false;
        }
    }

    /// Registers a task to wake at the next push.
    pub fn register(&self, waker: &Waker) {
        let mut state = lock(&self.state);
        if !state.wakers.iter().any(|w| w.will_wake(waker)) {
            state.wakers.push(waker.clone());
        }
    }

    /// The descriptor, made on first use; `pending` says whether events
    /// are queued now (then it starts readable).
    #[cfg(unix)]
    pub fn fd(&self, pending: bool) -> std::io::Result<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        if self.fd.get().is_none() {
            let fd = ReadyFd::new()?;
            let mut state = lock(&self.state);
            if self.fd.set(fd).is_ok() && pending {
                if let Some(fd) = self.fd.get() {
                    fd.signal();
                }
                state.signalled = true;
            }
        }
        Ok(self.fd.get().expect("set above").read.as_fd())
    }
}

/// The descriptor pair: readable `read`, written through `write` (the same
/// eventfd on Linux).
#[cfg(unix)]
struct ReadyFd {
    read: std::os::fd::OwnedFd,
    #[cfg(not(target_os = "linux"))]
    write: std::os::fd::OwnedFd,
}

#[cfg(unix)]
impl ReadyFd {
    #[cfg(target_os = "linux")]
    fn new() -> std::io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Self {
            read: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new() -> std::io::Result<Self> {
        use std::os::fd::{AsRawFd, OwnedFd};
        // std's pipe is close-on-exec on every Unix.
        let (read, write) = std::io::pipe()?;
        let (read, write) = (OwnedFd::from(read), OwnedFd::from(write));
        for fd in [&read, &write] {
            // SAFETY: fcntl on a descriptor we own.
            let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
            // SAFETY: as above.
            if flags < 0
                || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }
                    < 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(Self { read, write })
    }

    fn signal(&self) {
        use std::os::fd::AsRawFd;
        #[cfg(target_os = "linux")]
        let (fd, bytes) = (self.read.as_raw_fd(), 1u64.to_ne_bytes());
        #[cfg(not(target_os = "linux"))]
        let (fd, bytes) = (self.write.as_raw_fd(), [1u8]);
        // A full pipe or a saturated counter is already readable: nothing
        // is lost by ignoring the error.
        // SAFETY: writes from a local buffer of the given length.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }

    fn clear(&self) {
        use std::os::fd::AsRawFd;
        let mut buf = [0u8; 64];
        // An eventfd's read returns the counter and zeroes it; a pipe holds
        // at most one byte (one write per signal, one signal per reset).
        // SAFETY: reads into a local buffer of the given length.
        unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }
}

/// Waiting for a plugin's events without polling.
impl super::PluginHandle {
    /// A descriptor that is readable while this plugin has undrained
    /// events: register it with `poll`, `mio` (`SourceFd`) or
    /// `tokio::io::unix::AsyncFd` and drain when it fires. Draining (any of
    /// [`JobHost::drain_events`](crate::JobHost::drain_events),
    /// [`wait_events`](Self::wait_events), [`next_events`](Self::next_events))
    /// makes it unreadable again until the next event; never read from it.
    ///
    /// It is written once per batch: a job printing a thousand lines between
    /// two drains makes it readable once. An eventfd on Linux, a pipe on
    /// other Unixes; every handle of the same plugin shares it, and it lives
    /// as long as the host.
    #[cfg(unix)]
    pub fn events_fd(&self) -> std::io::Result<std::os::fd::BorrowedFd<'_>> {
        let queues = lock(&self.shared.queues);
        let pending = queues.get(&self.plugin).is_some_and(|q| !q.is_empty());
        let fd = self.notifier.fd(pending)?;
        drop(queues);
        Ok(fd)
    }

    /// This plugin's next events, as a future that works on any async
    /// runtime: it resolves with every queued event as soon as there is
    /// one, and with an empty batch once the host has shut down and
    /// everything was drained (then no event will ever come).
    pub fn next_events(&self) -> NextEvents {
        NextEvents {
            handle: self.clone(),
        }
    }

    /// The plugin's events one at a time, as a `futures` stream that ends
    /// when the host has shut down and everything was drained.
    #[cfg(feature = "futures")]
    pub fn event_stream(&self) -> EventStream {
        EventStream {
            next: self.next_events(),
            batch: std::collections::VecDeque::new(),
        }
    }
}

/// The future of [`PluginHandle::next_events`](super::PluginHandle::next_events).
#[must_use = "futures do nothing unless awaited"]
pub struct NextEvents {
    handle: super::PluginHandle,
}

impl std::future::Future for NextEvents {
    type Output = Vec<crate::JobEvent>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let handle = &self.handle;
        let mut queues = lock(&handle.shared.queues);
        if let Some(queue) = queues.get_mut(&handle.plugin)
            && !queue.is_empty()
        {
            return std::task::Poll::Ready(handle.shared.drain(&handle.plugin, queue));
        }
        if handle
            .shared
            .closed
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return std::task::Poll::Ready(Vec::new());
        }
        // Registered under the queues lock, which every push holds while it
        // notifies: no event can fall between the check above and this.
        handle.notifier.register(cx.waker());
        std::task::Poll::Pending
    }
}

/// The stream of [`PluginHandle::event_stream`](super::PluginHandle::event_stream).
#[cfg(feature = "futures")]
#[must_use = "streams do nothing unless polled"]
pub struct EventStream {
    next: NextEvents,
    batch: std::collections::VecDeque<crate::JobEvent>,
}

#[cfg(feature = "futures")]
impl futures_core::Stream for EventStream {
    type Item = crate::JobEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        if let Some(event) = self.batch.pop_front() {
            return Poll::Ready(Some(event));
        }
        match std::pin::Pin::new(&mut self.next).poll(cx) {
            Poll::Ready(events) if events.is_empty() => Poll::Ready(None),
            Poll::Ready(events) => {
                self.batch.extend(events);
                Poll::Ready(self.batch.pop_front())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
