//! What an embedding host pays: the CPU of a TUI loop that waits for its
//! plugin's events instead of polling (section 8), and, with the `lua`
//! feature, `jobs.drain()` into Lua tables against a plain Rust drain
//! (section 9).

use super::{Sizes, bench_policy, host_thread_cpu, tempdir};
use jobwarden::contract::{JobEvent, JobSpawnRequest};
use jobwarden::{JobHost, PluginHandle, PolicyJobHost};
use ratatui::backend::TestBackend;
use ratatui::widgets::{List, ListItem};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into a local struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One frame of a small TUI: every job's row, drawn to an 80×24 buffer.
fn draw(terminal: &mut ratatui::Terminal<TestBackend>, rows: &[String]) {
    terminal
        .draw(|frame| {
            let items: Vec<ListItem> = rows.iter().map(|r| ListItem::new(r.as_str())).collect();
            frame.render_widget(List::new(items), frame.area());
        })
        .expect("a test backend draws");
}

/// How a loop waits for its next frame.
#[derive(Clone, Copy)]
enum Wait {
    Tick(Duration),
    Events,
}

/// Runs a TUI loop over `window`; returns (loop thread CPU, frames drawn,
/// host thread CPU).
fn tui_loop(plugin: &PluginHandle, wait: Wait, window: Duration) -> (Duration, u64, Duration) {
    let mut terminal = ratatui::Terminal::new(TestBackend::new(80, 24)).expect("a test terminal");
    let mut rows: Vec<String> = Vec::new();
    let ready = plugin.events_fd().expect("an event descriptor");
    let host_before = host_thread_cpu();
    let before = thread_cpu();
    let start = Instant::now();
    let mut frames = 0u64;
    while start.elapsed() < window {
        match wait {
            Wait::Tick(tick) => std::thread::sleep(tick),
            Wait::Events => {
                let left = window.saturating_sub(start.elapsed());
                let mut pfd = libc::pollfd {
                    fd: ready.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one pollfd on the stack.
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            }
        }
        for event in plugin.drain_events() {
            rows.push(format!("{} {}", event.job_id(), event_kind(&event)));
        }
        rows.drain(..rows.len().saturating_sub(20));
        draw(&mut terminal, &rows);
        frames += 1;
    }
    (
        thread_cpu() - before,
        frames,
        host_thread_cpu() - host_before,
    )
}

fn event_kind(event: &JobEvent) -> &'static str {
    match event {
        JobEvent::JobStarted { .. } => "started",
        JobEvent::JobProgress { .. } => "progress",
        JobEvent::JobLogLine { .. } => "line",
        JobEvent::JobOutputChunk { .. } => "chunk",
        JobEvent::JobCancelled { .. } => "cancelled",
        JobEvent::JobCompleted { .. } => "completed",
        JobEvent::JobFailed { .. } => "failed",
    }
}

// ---- 8 --------------------------------------------------------------------

pub(super) fn idle_tui(sizes: &Sizes) {
    let window = sizes.sample_window;
    println!(
        "8. an idle TUI with 10 idle jobs (sleep 600, sampled every 1 s), over {window:?}: the loop's own thread"
    );
    let dir = tempdir();
    let extra = "[plugins.bench.progress]\ninterval_ms = 1000\nsample = true\n";
    let host = PolicyJobHost::builder(bench_policy(extra), dir.path())
        .tmp_dir(dir.path())
        .build()
        .expect("a host");
    let plugin = host.plugin("bench");
    for _ in 0..10 {
        plugin.spawn(JobSpawnRequest::new("sleep", ["600"]));
    }
    let mut started = 0;
    while started < 10 {
        for e in plugin.wait_events(Duration::from_secs(5)) {
            assert!(!e.is_terminal(), "an idle job ended: {e:?}");
            started += matches!(e, JobEvent::JobStarted { .. }) as usize;
        }
    }
    let per_second = |cpu: Duration| cpu.as_secs_f64() / window.as_secs_f64() * 100.0;
    let line = |name: &str, wait: Wait| {
        let (cpu, frames, host_cpu) = tui_loop(&plugin, wait, window);
        println!(
            "   {name:<34} {:>6.3}% of one core · {:>6.1} frames/s · host thread {:.3}%",
            per_second(cpu),
            frames as f64 / window.as_secs_f64(),
            per_second(host_cpu),
        );
        cpu
    };
    let tick60 = line(
        "baseline: drain + draw every 16 ms",
        Wait::Tick(Duration::from_millis(16)),
    );
    let tick10 = line(
        "baseline: drain + draw every 100 ms",
        Wait::Tick(Duration::from_millis(100)),
    );
    let events = line("on events (poll on events_fd)", Wait::Events);
    let ratio = |tick: Duration| {
        if events.is_zero() {
            "∞".to_string()
        } else {
            format!("{:.0}×", tick.as_secs_f64() / events.as_secs_f64())
        }
    };
    println!(
        "   waiting for events costs 1/{} of a 60 Hz loop's CPU and 1/{} of a 10 Hz one's; target: near zero",
        ratio(tick60),
        ratio(tick10)
    );
    println!();
}

// ---- 9 --------------------------------------------------------------------

#[cfg(feature = "lua")]
pub(super) fn lua_drain(sizes: &Sizes) {
    let rounds = (sizes.spawns / 4).max(5);
    println!(
        "9. draining 1,000 queued line events: jobs.drain() into Lua tables vs drain_events() in Rust (median of {rounds})"
    );
    let dir = tempdir();
    let host = PolicyJobHost::builder(bench_policy(""), dir.path())
        .tmp_dir(dir.path())
        .build()
        .expect("a host");
    let plugin = host.plugin("bench");
    let lua = mlua::Lua::new();
    jobwarden::lua::install(&lua, plugin.clone()).expect("the jobs table");
    let drain: mlua::Function = lua
        .load("return function() return #jobs.drain() end")
        .eval()
        .expect("a Lua function");

    // Queues one job's 1,000 lines (plus its start and end) and leaves
    // them undrained.
    let queue_lines = || {
        let id = plugin.spawn(JobSpawnRequest::new("probe", ["lines", "1000", "80"]));
        while !plugin.status(&id).is_some_and(|s| s.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let mut rust = Vec::new();
    let mut in_lua = Vec::new();
    for _ in 0..rounds {
        queue_lines();
        let t = Instant::now();
        let n = std::hint::black_box(plugin.drain_events()).len();
        rust.push(t.elapsed());
        assert!(n >= 1000, "only {n} events were queued");
        queue_lines();
        let t = Instant::now();
        let n: usize = drain.call(()).expect("jobs.drain()");
        in_lua.push(t.elapsed());
        assert!(n >= 1000, "only {n} events reached Lua");
    }
    let (rust, in_lua) = (super::median(rust), super::median(in_lua));
    println!(
        "   drain_events() (baseline) {} · jobs.drain() {} · {} · {:.2} µs per event in Lua",
        super::ms(rust),
        super::ms(in_lua),
        super::ratio(in_lua, rust),
        in_lua.as_secs_f64() * 1e6 / 1002.0
    );
    println!();
}
