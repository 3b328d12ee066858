//! Waiting for a plugin's events without polling: the readable descriptor
//! (eventfd on Linux) and the runtime-agnostic `next_events` future, with
//! real confined jobs. What is asserted is what a TUI's event loop relies
//! on: readable when events are queued and only then, one wake per batch
//! however many lines, nothing missed between a drain and the next event,
//! and an end once the host has shut down.

#![cfg(target_os = "linux")]

use jobwarden::contract::JobEvent;
use jobwarden::host::PolicyJobHost;
use jobwarden::policy::Policy;
use jobwarden::{JobHost, JobSpawnRequest};
use std::future::Future;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_jobwarden-probe");

fn host(dir: &Path) -> PolicyJobHost {
    let probe_dir = Path::new(PROBE).parent().unwrap().display().to_string();
    let text = format!(
        r#"
version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", '{probe_dir}']
read_write = ["{{tmp}}"]
[limits]
timeout_secs = 60
[output]
max_queued_events = 100000
[binaries.probe]
path = '{PROBE}'
[plugins.tui]
binaries = ["probe"]
[plugins.other]
binaries = ["probe"]
"#
    );
    let policy = Policy::from_toml("events.toml", &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy;
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    PolicyJobHost::builder(policy, &repo)
        .tmp_dir(dir)
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn probe(args: &[&str]) -> JobSpawnRequest {
    JobSpawnRequest::new("probe", args.iter().copied())
}

/// Whether `fd` is readable within `timeout`, by poll(2).
fn readable(fd: BorrowedFd<'_>, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one pollfd on the stack.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1 && pfd.revents & libc::POLLIN != 0
}

/// The eventfd's counter: how many times it was written since last read.
fn counter(fd: BorrowedFd<'_>) -> u64 {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into a u64 on the stack.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut value).cast(), 8) };
    assert_eq!(n, 8, "read: {}", std::io::Error::last_os_error());
    value
}

fn is_terminal(event: &JobEvent) -> bool {
    matches!(
        event,
        JobEvent::JobCompleted { .. } | JobEvent::JobFailed { .. } | JobEvent::JobCancelled { .. }
    )
}

/// Waits, by status only (never draining), until the job has ended.
fn wait_finished(plugin: &jobwarden::PluginHandle, id: &jobwarden::JobId) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !plugin.status(id).is_some_and(|s| s.is_finished()) {
        assert!(Instant::now() < deadline, "job {id} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_descriptor_is_readable_exactly_while_events_are_queued() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let plugin = host.plugin("tui");
    let fd = plugin.events_fd().unwrap();
    assert!(!readable(fd, Duration::ZERO), "readable before any job");

    let id = plugin.spawn(probe(&["lines", "1000", "20"]));
    assert!(
        readable(fd, Duration::from_secs(30)),
        "never readable while a job printed"
    );
    wait_finished(&plugin, &id);
    // Over a thousand events were queued, and the descriptor was written
    // once: one wake per batch, not per line.
    assert_eq!(counter(fd), 1, "the descriptor was written more than once");
    let events = plugin.drain_events();
    assert!(events.len() > 1000, "{} events", events.len());
    assert!(is_terminal(events.last().unwrap()));
    assert!(
        !readable(fd, Duration::ZERO),
        "still readable after a drain with nothing queued"
    );

    // The control: the next event makes it readable again.
    plugin.spawn(probe(&["print", "again"]));
    assert!(readable(fd, Duration::from_secs(30)));
}

#[test]
fn a_drain_resets_and_an_event_after_it_is_never_missed() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let plugin = host.plugin("tui");
    let fd = plugin.events_fd().unwrap();
    let id = plugin.spawn(probe(&["lines", "200", "20"]));
    // A loop as a TUI runs it: wait for readiness, drain, repeat; every
    // event arrives and the loop never waits on a descriptor that missed
    // an event.
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !events.last().is_some_and(is_terminal) {
        assert!(
            Instant::now() < deadline,
            "stalled after {} events",
            events.len()
        );
        assert!(
            readable(fd, Duration::from_secs(30)),
            "no readiness, yet the job has not ended ({} events so far)",
            events.len()
        );
        events.extend(plugin.drain_events());
    }
    let lines = events
        .iter()
        .filter(|e| {
            matches!(e, JobEvent::JobLogLine { data, .. }
                if data.stream == "stdout" && data.line.starts_with("line "))
        })
        .count();
    assert_eq!(lines, 200, "{id}");
}

#[test]
fn each_plugin_is_woken_only_by_its_own_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let tui = host.plugin("tui");
    let other = host.plugin("other");
    let fd = tui.events_fd().unwrap();
    let id = other.spawn(probe(&["print", "not yours"]));
    wait_finished(&other, &id);
    assert!(
        !readable(fd, Duration::ZERO),
        "woken by another plugin's job"
    );
    // The control: its own job wakes it.
    tui.spawn(probe(&["print", "yours"]));
    assert!(readable(fd, Duration::from_secs(30)));
}

/// Counts wakes; the test's executor.
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn next_events_wakes_once_per_batch_and_resolves_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let plugin = host.plugin("tui");
    let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut next = pin!(plugin.next_events());
    assert!(next.as_mut().poll(&mut cx).is_pending());

    let id = plugin.spawn(probe(&["lines", "1000", "20"]));
    wait_finished(&plugin, &id);
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake for the batch");
    let Poll::Ready(events) = next.as_mut().poll(&mut cx) else {
        panic!("woken but not ready");
    };
    assert!(events.len() > 1000);
    assert!(is_terminal(events.last().unwrap()));

    // Nothing queued now: pending again, and not woken until an event.
    let mut again = pin!(plugin.next_events());
    assert!(again.as_mut().poll(&mut cx).is_pending());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
}

/// A minimal executor: runs `future` on this thread, parking between wakes.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park_timeout(Duration::from_secs(60));
    }
}

#[test]
fn after_shutdown_next_events_ends_once_everything_is_drained() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let plugin = host.plugin("tui");
    plugin.spawn(probe(&["sleep", "30"]));
    // A waiter on another thread, woken by the shutdown's cancel.
    let waiter = {
        let plugin = plugin.clone();
        std::thread::spawn(move || {
            let mut events = Vec::new();
            loop {
                let batch = block_on(plugin.next_events());
                if batch.is_empty() {
                    return events;
                }
                events.extend(batch);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    host.shutdown();
    let events = waiter.join().unwrap();
    assert!(
        matches!(events.last(), Some(JobEvent::JobCancelled { .. })),
        "{events:?}"
    );
}

#[cfg(feature = "futures")]
#[test]
fn the_event_stream_yields_every_event_in_order_and_ends() {
    use futures_core::Stream;
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let plugin = host.plugin("tui");
    let id = plugin.spawn(probe(&["lines", "50", "10"]));
    let mut stream = pin!(plugin.event_stream());
    let next = |stream: &mut std::pin::Pin<&mut jobwarden::host::EventStream>| {
        block_on(std::future::poll_fn(|cx| stream.as_mut().poll_next(cx)))
    };
    let mut events = Vec::new();
    while let Some(event) = next(&mut stream) {
        let done = is_terminal(&event);
        events.push(event);
        if done {
            break;
        }
    }
    assert!(matches!(events.first(), Some(JobEvent::JobStarted { .. })));
    assert_eq!(events.last().unwrap().job_id(), &id);
    host.shutdown();
    assert!(next(&mut stream).is_none(), "the stream did not end");
}

/// An executor may poll a future inline from `wake()` (some single-threaded
/// ones do). The host wakes tasks only after releasing the queue lock that
/// `next_events` takes, so such a poll completes instead of deadlocking the
/// host thread.
#[test]
fn a_waker_that_polls_inline_does_not_deadlock_the_host() {
    type Slot = std::sync::Mutex<Option<std::pin::Pin<Box<jobwarden::host::NextEvents>>>>;
    struct Inline {
        future: Slot,
        done: std::sync::Mutex<std::sync::mpsc::Sender<usize>>,
    }
    impl Wake for Inline {
        fn wake(self: Arc<Self>) {
            let mut slot = self.future.lock().unwrap();
            let Some(future) = slot.as_mut() else { return };
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(events) = future.as_mut().poll(&mut cx) {
                *slot = None;
                let _ = self.done.lock().unwrap().send(events.len());
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let host = host(dir.path());
    let plugin = host.plugin("tui");
    let (tx, rx) = std::sync::mpsc::channel();
    let inline = Arc::new(Inline {
        future: std::sync::Mutex::new(Some(Box::pin(plugin.next_events()))),
        done: std::sync::Mutex::new(tx),
    });
    let waker = Waker::from(inline.clone());
    {
        let mut slot = inline.future.lock().unwrap();
        let future = slot.as_mut().unwrap();
        assert!(
            future
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
    plugin.spawn(probe(&["lines", "3", "0"]));
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(n) => assert!(n > 0, "the inline poll found the queued events"),
        Err(_) => {
            // The host thread is stuck in the waker: dropping the host
            // would wait for it forever.
            std::mem::forget(plugin);
            std::mem::forget(host);
            panic!("the inline poll never completed: woken under the queue lock");
        }
    }
}
