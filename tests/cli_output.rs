//! Invariant 12 at the command line: `jobwarden run` loses no output
//! whatever its reader's speed, and no command panics when its reader goes
//! away (`| head -1`). A closed stdout is passed on to the job as a shell
//! pipeline would: the job meets it at its next write.

// Linux only: runs jobs under Linux policies.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn jobwarden() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jobwarden"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A policy trusting the shell, `seq` and `cat`, with `output` settings.
fn policy(dir: &Path, output: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        format!(
            r#"
version = 1
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "{{repo}}"]
read_write = ["{{tmp}}", "/dev/null"]
[limits]
timeout_secs = 600
kill_grace_secs = 1
[output]
{output}
[binaries.sh]
path = "/bin/sh"
helpers = ["/usr/bin", "/bin"]
[binaries.seq]
path = "/usr/bin/seq"
[binaries.yes]
path = "/usr/bin/yes"
[binaries.sleep]
path = "/usr/bin/sleep"
[plugins.cli]
binaries = ["sh", "seq", "yes", "sleep"]
"#
        ),
    )
    .unwrap();
    path
}

fn run_cmd(dir: &Path, policy: &Path, json: bool, command: &[&str]) -> Command {
    let mut cmd = jobwarden();
    cmd.arg("run");
    if json {
        cmd.arg("--json");
    }
    cmd.arg("--policy")
        .arg(policy)
        .arg("--repo")
        .arg(dir)
        .arg("--")
        .args(command);
    cmd
}

/// Reads `child`'s stdout like a slow consumer: nothing for two seconds,
/// then small reads with pauses.
fn read_slowly(child: &mut Child) -> Vec<u8> {
    std::thread::sleep(Duration::from_secs(2));
    let mut out = child.stdout.take().unwrap();
    let (mut all, mut buf) = (Vec::new(), vec![0u8; 16 * 1024]);
    let mut reads = 0u64;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            return all;
        }
        all.extend_from_slice(&buf[..n]);
        reads += 1;
        if reads.is_multiple_of(64) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn run_passes_200000_lines_through_a_slow_reader_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), "");
    let expected = Command::new("seq").args(["1", "200000"]).output().unwrap();
    let mut child = run_cmd(dir.path(), &policy, false, &["seq", "1", "200000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let got = read_slowly(&mut child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(got.len(), expected.stdout.len());
    assert!(got == expected.stdout, "the output differs");
    assert!(
        !text(&out.stderr).contains("dropped"),
        "{}",
        text(&out.stderr)
    );
}

/// 100 MB of everything a job may print: lines from empty to far longer
/// than any line limit, `\r\n` and lone `\r`, colours and other escape
/// sequences, NULs, invalid UTF-8, no final newline. Deterministic.
fn mixed_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    while out.len() < len {
        let r = next();
        let line_len = match r % 8 {
            0 => 0,
            1..=4 => (r >> 8) as usize % 120,
            5 | 6 => (r >> 8) as usize % 4000,
            _ => (r >> 8) as usize % 70_000,
        };
        for _ in 0..line_len {
            let b = next();
            out.push(match b % 16 {
                0 => 0x1b,
                1 => 0xff,
                2 => 0xe2,
                3 => 0,
                4 => b'\r',
                5..=7 => (b >> 8) as u8,
                _ => b' ' + ((b >> 8) % 95) as u8,
            });
        }
        out.extend_from_slice(if r % 5 == 0 { b"\r\n" } else { b"\n" });
    }
    out.truncate(len);
    out
}

#[test]
fn run_passes_100_mb_of_mixed_bytes_through_a_slow_reader_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    // Bytes as read, untouched: what the job wrote is what run writes.
    let policy = policy(dir.path(), "mode = \"chunks\"\nsanitize = \"raw\"");
    let data = mixed_bytes(100_000_000);
    std::fs::write(dir.path().join("mixed.bin"), &data).unwrap();
    std::fs::write(dir.path().join("err.txt"), b"to stderr\n".repeat(10_000)).unwrap();
    // Both streams at once, so stderr's chunks interleave with stdout's.
    let mut child = run_cmd(
        dir.path(),
        &policy,
        false,
        &["sh", "-c", "cat err.txt >&2 & cat mixed.bin; wait"],
    )
    .current_dir(dir.path())
    .stdout(Stdio::piped())
    // A file: a stderr pipe nobody reads yet would stop run itself.
    .stderr(std::fs::File::create(dir.path().join("stderr.txt")).unwrap())
    .spawn()
    .unwrap();
    let got = read_slowly(&mut child);
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(got.len(), data.len());
    let first_difference = got.iter().zip(&data).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "the output differs");
    assert_eq!(stderr.matches("to stderr\n").count(), 10_000);
}

/// Spawns `cmd` with its stdout a pipe whose reader is already gone, as
/// when `head -1` has exited: every write to it fails with EPIPE.
fn with_closed_stdout(cmd: &mut Command) -> Child {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(writer).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits for `child` (without a wall-time assertion: a generous limit only
/// turns a hang into a failure).
fn finish(mut child: Child) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("the command did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_quiet(out: &Output, what: &str) {
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{what} panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: {stderr}");
}

#[test]
fn no_command_panics_on_a_closed_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), "");
    let policy = policy.to_str().unwrap();
    let test_file = dir.path().join("cases.toml");
    std::fs::write(
        &test_file,
        format!(
            "policy = \"{policy}\"\n[[case]]\nname = \"seq\"\nplugin = \"cli\"\nbinary = \"seq\"\nargs = [\"1\"]\nexpect = \"allow\"\n"
        ),
    )
    .unwrap();
    let repo = dir.path().to_str().unwrap();
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        ("schema", vec!["schema"], 0),
        (
            "explain",
            vec![
                "explain", "--policy", policy, "--repo", repo, "--", "seq", "1",
            ],
            0,
        ),
        (
            "explain --json",
            vec![
                "explain", "--json", "--policy", policy, "--repo", repo, "--", "seq", "1",
            ],
            0,
        ),
        ("check", vec!["check", policy, policy], 0),
        ("test", vec!["test", test_file.to_str().unwrap()], 0),
        ("doctor", vec!["doctor"], -1),
    ];
    for (what, args, code) in cases {
        let out = finish(with_closed_stdout(jobwarden().args(&args)));
        assert_quiet(&out, what);
        // The work was done and its exit code stands.
        if code >= 0 {
            assert_eq!(
                out.status.code(),
                Some(code),
                "{what}: {}",
                text(&out.stderr)
            );
        }
    }
}

#[test]
fn a_closed_stdout_still_gives_check_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "version = 1\n[limits]\ntimeout_sec = 3\n").unwrap();
    let out = finish(with_closed_stdout(jobwarden().args(["check"]).arg(&broken)));
    assert_quiet(&out, "check");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("error[unknown-key]"));
}

#[test]
fn run_passes_a_closed_stdout_on_to_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), "");
    // `yes` never ends by itself: only the closed pipe can end it, with
    // SIGPIPE, as `yes | head -1` would.
    for json in [false, true] {
        let out = finish(with_closed_stdout(&mut run_cmd(
            dir.path(),
            &policy,
            json,
            &["yes"],
        )));
        assert_quiet(&out, "run");
        assert_eq!(
            out.status.code(),
            Some(141),
            "json {json}: {}",
            text(&out.stderr)
        );
        // With --json the terminal event went to the closed stdout too.
        assert!(
            json || text(&out.stderr).contains("killed by signal 13 (SIGPIPE)"),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn run_with_a_closed_stdout_lets_a_quiet_job_finish() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), "");
    let out = finish(with_closed_stdout(&mut run_cmd(
        dir.path(),
        &policy,
        false,
        &["sh", "-c", "echo one; sleep 1; exit 3"],
    )));
    assert_quiet(&out, "run");
    // The first line met the closed pipe in jobwarden, not in the job; the
    // job wrote nothing more, so its own status is run's.
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}

#[test]
fn run_head_1_in_a_real_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy(dir.path(), "");
    let mut run = run_cmd(dir.path(), &policy, false, &["seq", "1", "10000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 2];
    run.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(run.stdout.take());
    let out = finish(run);
    assert_eq!(&first, b"1\n");
    assert_quiet(&out, "run");
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    let _ = std::io::stderr().flush();
}
