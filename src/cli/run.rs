//! `jobwarden run [flags] [--json] -- BINARY [ARGS...]`: runs one job under
//! the policy and exits with its status.
//!
//! With `--json`, stdout carries every event in the contract's wire format
//! and, after the event each belongs to, jobwarden's extension lines
//! (`type` `jobwarden.enforcement` and `jobwarden.usage`; see `host::wire`).
//!
//! Exit codes: the job's own; 124 timeout; 126 refused by the policy (or
//! by `enforcement = "required"` on this machine); 125 jobwarden's own error;
//! 128+N killed by signal N; 128+N after a stop signal N to `run` itself
//! (130 Ctrl-C, 129 SIGHUP, 143 SIGTERM), which cancels the job gracefully.
//!
//! Output is never dropped: the host waits for this loop (`when_full =
//! "wait"`), so a slow reader slows the job, not the log. When stdout's
//! reader goes away (`run … | head -1`), the job's stdout is closed too, as
//! in a shell pipeline: its next write fails, most jobs die of SIGPIPE and
//! `run` exits 141; a job that writes nothing more runs to its end and
//! `run` exits with its status.

use super::output::Std;
use super::signals::StopSignals;
use super::timings::Timings;
use super::{CliError, Failure, HostFacts, JobArgs, build_request, load_policy, repo_root};
use jobwarden::contract::{JobEvent, STREAM_STDERR, STREAM_SYSTEM};
use jobwarden::host::wire::ExtensionLine;
use jobwarden::output::Stream;
use jobwarden::policy::WhenFull;
use jobwarden::sandbox::{HostSupport, Observation, SupportOptions};
use jobwarden::{JobEnd, JobHost, PluginHandle, PolicyJobHost};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

const EXIT_TIMEOUT: u8 = 124;
const EXIT_OWN_ERROR: u8 = 125;
const EXIT_DENIED: u8 = 126;

pub fn run(
    args: &JobArgs,
    json: bool,
    why: bool,
    support: &SupportOptions,
    timings: &mut Timings,
) -> Result<ExitCode, Failure> {
    // Caught from before anything is set up until after the host has
    // cleaned up: detection below creates probe cgroups (and may move this
    // process into a delegated cgroup) and must not be cut short.
    let signals = StopSignals::register();
    for problem in signals.problems() {
        errln!("jobwarden: {problem}");
    }
    timings.mark("signals");

    // The policy is parsed on a helper thread while this one detects what
    // the machine enforces (cgroup probes, Landlock, user namespaces):
    // neither needs the other, and together they were a fifth of a one-shot
    // run (BENCHMARKS.md, section 7). Detection stays on this thread, the
    // one that builds the host.
    let loading = {
        let path = args.policy.clone();
        std::thread::Builder::new()
            .name("jobwarden-policy".into())
            .spawn(move || load_policy(path.as_deref()))
    };
    let mut options = support.clone();
    // One job: cgroups made ahead of a next one would only be removed.
    options.spare_cgroups = Some(0);
    if why {
        options.observation = Observation::Denials;
    }
    let detected = HostSupport::detect(&options);
    let loaded = match loading {
        Ok(thread) => thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        Err(_) => load_policy(args.policy.as_deref()),
    }
    .map_err(|e| e.exit(EXIT_OWN_ERROR))?;
    timings.mark("policy");
    let repo = repo_root(args.repo.as_deref()).map_err(|e| e.exit(EXIT_OWN_ERROR))?;
    let facts = HostFacts::capture(repo.clone());
    let example_tmp = super::example_job_tmp();
    let request = build_request(args, &loaded.policy, &facts.context(&example_tmp))
        .map_err(|e| e.exit(EXIT_DENIED))?;
    timings.mark("request");

    let host = PolicyJobHost::builder(loaded.policy.clone(), &repo)
        .detected_support(detected)
        .output_when_full(WhenFull::Wait)
        .build()
        .map_err(|e| CliError::from(e).exit(EXIT_OWN_ERROR))?;
    timings.mark("host");
    let plugin = host.plugin(&args.plugin);
    let id = if json {
        // With --json every line is a contract event that the SDK's
        // `JobEvent` reads, so a refusal is what a plugin gets from `spawn`:
        // one `JobFailed` whose error names the rule and the hint (exit 126
        // below). `explain --json` gives the denial as structured fields.
        plugin.spawn(request)
    } else {
        match plugin.try_spawn(request) {
            Ok(id) => id,
            Err(denial) => {
                errln!("jobwarden: denied by `{}`: {}", denial.rule, denial.reason);
                errln!("jobwarden: hint: {}", denial.hint);
                return Ok(ExitCode::from(EXIT_DENIED));
            }
        }
    };
    let watch = {
        let (plugin, id) = (plugin.clone(), id.clone());
        signals.watch(move |sig| {
            errln!(
                "jobwarden: cancelling the job ({}); it gets its grace period",
                signal_name(sig)
            );
            plugin.cancel_because(&id, format!("cancelled by {}", cancelled_by_words(sig)));
        })
    };

    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut status = StatusLine::new(!json && stderr.is_terminal());
    let started = std::time::Instant::now();
    // Whether the job's output read like a refusal, for the `--why` hint.
    let mut refusal_seen = false;
    // Which of our streams' readers went away, and was passed on to the job.
    let (mut stdout_gone, mut stderr_gone) = (false, false);
    let mut extension = ExtensionLines::default();
    loop {
        let events = plugin.wait_events(Duration::from_millis(100));
        let mut ended = false;
        {
            let mut out = stdout.lock();
            let mut err = stderr.lock();
            if !events.is_empty() {
                status.clear(&mut err);
            }
            for event in events {
                ended |= event.is_terminal();
                if matches!(event, JobEvent::JobStarted { .. }) {
                    timings.mark("started");
                }
                if let JobEvent::JobLogLine { data, .. } = &event
                    && data.stream != STREAM_SYSTEM
                {
                    refusal_seen |= jobwarden::observe::mentions_refusal(&data.line);
                }
                if json {
                    put(Std::Out, &mut out, |w| {
                        serde_json::to_writer(&mut *w, &event)?;
                        w.write_all(b"\n")
                    });
                    for line in extension.after(&event, &plugin, &id) {
                        put(Std::Out, &mut out, |w| writeln!(w, "{}", line.to_json()));
                    }
                    continue;
                }
                match event {
                    JobEvent::JobLogLine { data, .. } if data.stream == STREAM_SYSTEM => {
                        put(Std::Err, &mut err, |w| writeln!(w, "{}", data.line));
                    }
                    JobEvent::JobLogLine { data, .. } if data.stream == STREAM_STDERR => {
                        put(Std::Err, &mut err, |w| writeln!(w, "{}", data.line));
                    }
                    JobEvent::JobLogLine { data, .. } => {
                        put(Std::Out, &mut out, |w| writeln!(w, "{}", data.line));
                    }
                    JobEvent::JobOutputChunk { data, .. } if data.stream == STREAM_STDERR => {
                        put(Std::Err, &mut err, |w| w.write_all(&data.bytes));
                    }
                    JobEvent::JobOutputChunk { data, .. } => {
                        put(Std::Out, &mut out, |w| w.write_all(&data.bytes));
                    }
                    JobEvent::JobFailed { data, .. } => {
                        put(Std::Err, &mut err, |w| {
                            writeln!(w, "jobwarden: {}", data.error)
                        });
                    }
                    JobEvent::JobCancelled { data, .. } => {
                        put(Std::Err, &mut err, |w| {
                            writeln!(w, "jobwarden: {}", data.reason)
                        });
                    }
                    JobEvent::JobProgress { data, .. } => {
                        status.percent = data.percent;
                        status.step = data.step;
                    }
                    _ => {}
                }
            }
            put(Std::Out, &mut out, |w| w.flush());
            if !ended {
                status.draw(&mut err, started.elapsed());
            }
        }
        if ended {
            timings.mark("ended");
            break;
        }
        // A reader that went away ends the job's matching stream, as in a
        // shell pipeline: the job meets the closed pipe at its next write.
        // With --json every event goes to stdout, so both end.
        if Std::Out.is_closed() && !stdout_gone {
            stdout_gone = true;
            plugin.close_output(&id, Stream::Stdout);
            if json {
                plugin.close_output(&id, Stream::Stderr);
            }
        }
        if Std::Err.is_closed() && !stderr_gone && !json {
            stderr_gone = true;
            plugin.close_output(&id, Stream::Stderr);
        }
    }
    let end = plugin.end(&id);
    let failed = !matches!(
        end,
        Some(JobEnd::Exited { code: 0 }) | Some(JobEnd::Cancelled)
    );
    if !why && !json && failed && refusal_seen {
        errln!(
            "jobwarden: the output shows a permission error; run again with --why to see what the sandbox refused and which policy key would allow it"
        );
    }
    let code = match end {
        Some(JobEnd::Exited { code }) => code.clamp(0, 255) as u8,
        Some(JobEnd::Signaled { signal }) => (128 + signal).clamp(0, 255) as u8,
        Some(JobEnd::TimedOut) => EXIT_TIMEOUT,
        Some(JobEnd::Cancelled) => match watch.caught() {
            Some(sig) => (128 + sig).clamp(0, 255) as u8,
            None => 130,
        },
        Some(JobEnd::Denied { .. } | JobEnd::EnforcementUnavailable) => EXIT_DENIED,
        _ => EXIT_OWN_ERROR,
    };
    // The host removes the job directories; signals stay caught until it has.
    drop(host);
    drop(watch);
    timings.mark("shutdown");
    if let Some(line) = timings.line() {
        errln!("{line}");
    }
    Ok(ExitCode::from(code))
}

/// Writes with `f` unless `stream` is closed; a failure closes it (see
/// `output.rs`).
fn put<W: Write>(stream: Std, w: &mut W, f: impl FnOnce(&mut W) -> std::io::Result<()>) {
    if stream.is_closed() {
        return;
    }
    if let Err(e) = f(w) {
        stream.failed(&e);
    }
}

/// `signal 1, SIGHUP`.
fn signal_name(sig: i32) -> String {
    format!("signal {sig}, {}", jobwarden::platform::signal_name(sig))
}

/// A stop signal as the job's `JobCancelled` says it.
fn cancelled_by_words(signal: i32) -> String {
    if signal == signal_hook::consts::SIGINT {
        "Ctrl-C".into()
    } else {
        jobwarden::platform::signal_name(signal).to_string()
    }
}

/// With `--json`, jobwarden's extension lines (`jobwarden.enforcement`
/// after `JobStarted`, `jobwarden.usage` after the terminal event; see
/// `host::wire`), each written after the event it belongs to.
#[derive(Default)]
struct ExtensionLines {
    enforcement_written: bool,
    started: bool,
}

impl ExtensionLines {
    fn after(&mut self, event: &JobEvent, plugin: &PluginHandle, id: &str) -> Vec<ExtensionLine> {
        let mut lines = Vec::new();
        if matches!(event, JobEvent::JobStarted { .. }) {
            self.started = true;
        }
        // The report exists once the job was prepared: after JobStarted, or
        // with the JobFailed of a job `required` refused before it ran.
        if (self.started || event.is_terminal())
            && !self.enforcement_written
            && let Some(report) = plugin.enforcement(id)
        {
            self.enforcement_written = true;
            lines.push(ExtensionLine::enforcement(id, &report));
        }
        if event.is_terminal() && self.started {
            let error = match event {
                JobEvent::JobFailed { data, .. } => Some(data.error.as_str()),
                JobEvent::JobCancelled { data, .. } => Some(data.reason.as_str()),
                _ => None,
            };
            let usage = plugin.usage(id).unwrap_or_default();
            lines.push(ExtensionLine::usage(
                id,
                &usage,
                plugin.end(id).as_ref(),
                error,
            ));
        }
        lines
    }
}

/// The live status line on a terminal's stderr: elapsed time, then the
/// declared percent and step or the resource use. Cleared before any other
/// output and at the end; never drawn when stderr is not a terminal.
struct StatusLine {
    enabled: bool,
    shown: bool,
    percent: Option<u8>,
    step: Option<String>,
}

impl StatusLine {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            shown: false,
            percent: None,
            step: None,
        }
    }

    fn clear(&mut self, err: &mut impl Write) {
        if self.shown {
            let _ = write!(err, "\r\x1b[2K");
            self.shown = false;
        }
    }

    fn draw(&mut self, err: &mut impl Write, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        let mut line = format!("jobwarden: {:.1} s", elapsed.as_secs_f64());
        if let Some(p) = self.percent {
            line.push_str(&format!(" · {p}%"));
        }
        if let Some(step) = &self.step {
            line.push_str(" · ");
            line.push_str(step);
        }
        let width = terminal_width().saturating_sub(1).max(20);
        let line: String = line.chars().take(width).collect();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.shown = true;
    }
}

/// Columns of the terminal on stderr (the status line's), 80 if unknown.
fn terminal_width() -> usize {
    terminal_size::terminal_size_of(std::io::stderr())
        .map_or(80, |(terminal_size::Width(w), _)| usize::from(w))
}
