//! Limits stop a job that exceeds them, with an event that names the limit.

use crate::harness::*;
use jobwarden::JobEnd;
use jobwarden::contract::JobEvent;
use jobwarden::sandbox::Status;

fn limited(limits: &str) -> Fixture {
    Fixture::new(&format!("\n[plugins.tests.limits]\n{limits}\n"))
}

#[test]
fn the_cpu_limit_kills_a_busy_job() {
    let fx = limited("cpu_secs = 1");
    let out = fx.probe(&["spin", "30"]);
    let error = out.error();
    assert!(error.contains("CPU time limit"), "{error}");
    assert!(error.contains("plugins.tests.limits.cpu_secs"), "{error}");
    assert_eq!(
        out.end,
        Some(JobEnd::Signaled {
            signal: libc::SIGXCPU
        })
    );
}

#[test]
fn the_memory_limit_kills_a_hog() {
    let fx = limited("memory = \"64 MiB\"");
    let out = fx.probe(&["alloc", "1024"]);
    let report = out.enforcement.clone().unwrap();
    let memory = report.item("memory").unwrap();
    let error = out.error();
    if memory.status == Status::Enforced {
        // A memory cgroup: the kernel's OOM killer ends the job.
        assert!(error.contains("memory limit"), "{error}\n{report}");
        assert_eq!(
            out.end,
            Some(JobEnd::Signaled {
                signal: libc::SIGKILL
            })
        );
    } else {
        skipped_part!(
            "cgroup-memory",
            "no memory cgroup: only the per-process RLIMIT_AS fallback was tested ({})",
            memory.detail
        );
        // RLIMIT_AS: the allocation fails and the probe aborts.
        assert!(
            error.contains("signal") || error.contains("status"),
            "{error}\n{report}"
        );
    }
    assert!(!out.stdout().join("").contains("1024 MiB touched"));
}

#[test]
fn the_open_files_limit_refuses_more_descriptors() {
    let fx = limited("open_files = 16");
    let out = fx.probe(&["open-files", "100"]);
    out.assert_denied("EMFILE");
    assert_eq!(out.code(), libc::EMFILE);
}

#[test]
fn the_file_size_limit_kills_a_big_writer() {
    let fx = limited("file_size = \"1 MiB\"");
    let big = fx.repo.join("big");
    let out = fx.probe(&["write-size", big.to_str().unwrap(), "10000000"]);
    let error = out.error();
    assert!(error.contains("file size limit"), "{error}");
    assert_eq!(
        out.end,
        Some(JobEnd::Signaled {
            signal: libc::SIGXFSZ
        })
    );
    assert!(std::fs::metadata(&big).unwrap().len() <= 1 << 20);
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_cgroup_or_rlimit_nproc() {
    let fx = limited("processes = 32\ntimeout_secs = 20");
    // Only run the hostile part under a limit proven to apply here.
    let check = fx.probe(&["print", "checking"]);
    let report = check.enforcement.unwrap();
    let processes = report.item("processes").unwrap();
    if processes.status != Status::Enforced {
        if is_root() {
            skip!(
                "cgroup-pids",
                "no pids cgroup on this machine ({}); as root, RLIMIT_NPROC would not hold a fork bomb",
                processes.detail
            );
        }
        // A regular user without a pids cgroup: RLIMIT_NPROC stands in. It
        // counts every process of the user, so the report says partial —
        // and it still stops the bomb.
        assert_eq!(processes.status, Status::Partial, "{report}");
        assert!(processes.detail.contains("RLIMIT_NPROC"), "{report}");
    }
    let out = fx.probe(&["fork", "5000"]);
    out.assert_denied("EAGAIN");
    let started: usize = out
        .stdout()
        .iter()
        .find_map(|l| {
            l.strip_prefix("probe: started ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .expect("the probe says how many it started");
    assert!(started < 32, "the pids limit held at {started} processes");
    // The failure names the limit, in a `system` line and in the terminal
    // event, where the host can see the refusals: the pids cgroup counts
    // them (pids.events); RLIMIT_NPROC, a regular user's stand-in, counts
    // nothing the host can read, so there the job's own EAGAIN is all.
    if processes.status == Status::Enforced {
        let said = "the processes limit (32, `plugins.tests.limits.processes`) refused";
        let system = out.system().join("\n");
        assert!(system.contains(said), "{system}");
        assert!(system.contains("threads count against it"), "{system}");
        let error = out.error();
        assert!(error.contains(said), "{error}");
    }
}

#[test]
fn a_job_stalled_at_the_processes_limit_is_named_while_it_runs_and_at_its_end() {
    let fx = limited("processes = 4\ntimeout_secs = 3\nkill_grace_secs = 1");
    let report = fx.probe(&["print", "checking"]).enforcement.unwrap();
    let processes = report.item("processes").unwrap();
    if processes.status != Status::Enforced {
        skip!(
            "cgroup-pids",
            "no pids cgroup on this machine ({})",
            processes.detail
        );
    }
    // Control: under a limit it stays below, the same job finishes and
    // nothing is said.
    let out = limited("processes = 16\ntimeout_secs = 30").probe(&["fork-retry", "8"]);
    assert_eq!(out.end, Some(JobEnd::Exited { code: 0 }), "{out:#?}");
    assert!(
        !out.system().iter().any(|l| l.contains("processes limit")),
        "{:#?}",
        out.system()
    );

    // Past the limit it retries until its timeout, and is named both while
    // it runs (before the closing summary) and in its terminal event.
    let out = fx.probe(&["fork-retry", "8"]);
    assert!(
        out.stdout().iter().any(|l| l.contains("fork refused")),
        "the kernel refused the fork: {out:#?}"
    );
    assert_eq!(out.end, Some(JobEnd::TimedOut), "{out:#?}");
    let system = out.system();
    let said = "the processes limit (4, `plugins.tests.limits.processes`) refused";
    let notice = system.iter().position(|l| l.contains(said));
    let summary = system.iter().position(|l| l.contains("finished in"));
    assert!(
        matches!((notice, summary), (Some(n), Some(s)) if n < s),
        "{system:#?}"
    );
    let JobEvent::JobCancelled { data, .. } = out.terminal() else {
        panic!("a timeout cancels: {out:#?}")
    };
    assert!(
        data.reason.starts_with("timeout after 3 s"),
        "{}",
        data.reason
    );
    assert!(data.reason.contains(said), "{}", data.reason);
}
