//! Reading `/proc`: who belongs to a job, and which zombies are ours to reap.
//!
//! jobwarden makes the host a child subreaper, so processes orphaned inside a
//! job are re-parented to the host instead of PID 1 (which does not reap on
//! these machines). The host must then reap them — but only those that came
//! from its jobs, never children the embedding program made itself. A zombie
//! is ours when its cgroup path names one of our job cgroups, or (without
//! cgroups) when its pid, session or group is one we recorded for a job.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The fields of `/proc/PID/stat` jobwarden uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: u8,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    /// Threads (a thread's children are listed under that thread).
    pub threads: u32,
}

impl Stat {
    /// A zombie: ended, waiting to be reaped. Not a process whose main
    /// thread alone has ended (`Z` too, while its other threads run and
    /// fork).
    pub fn is_zombie(&self) -> bool {
        self.state == b'Z' && self.threads <= 1
    }
}

/// Parses `/proc/PID/stat`: one `read` into a buffer on the stack (a
/// job's end without a cgroup reads every process's; `read_to_string`
/// took about eight system calls each, by `strace`, where three do).
pub fn stat(pid: i32) -> Option<Stat> {
    use std::io::Read;
    // The fields fit in well under 1 KiB (the name is at most 64 bytes).
    let mut buf = [0u8; 2048];
    let mut file = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let n = file.read(&mut buf).ok()?;
    if n == buf.len() {
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        file.read_to_string(&mut text).ok()?;
        return parse_stat(pid, &text);
    }
    parse_stat(pid, &String::from_utf8_lossy(&buf[..n]))
}

fn parse_stat(pid: i32, text: &str) -> Option<Stat> {
    // The command name is in parentheses and may itself contain ") ".
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(Stat {
        pid,
        state: *fields.first()?.as_bytes().first()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
        threads: fields.get(17)?.parse().ok()?,
    })
}

/// Every process on the machine (that `/proc` shows us).
pub fn all() -> Vec<Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// The processes that may belong to the host's jobs: the host's
/// descendants when it is a child subreaper (nothing a job starts can then
/// leave its subtree: orphans come back to the host), else every process.
/// On a machine with hundreds of processes and a host with a few jobs, the
/// subtree is a few reads where `/proc` is hundreds.
pub fn host_processes(host: i32) -> Vec<Stat> {
    if SUBREAPER.load(Ordering::Relaxed)
        && let Some(tree) = subtree(host)
    {
        return tree;
    }
    all()
}

/// The host's zombie children.
pub fn zombie_children(host: i32) -> Vec<Stat> {
    let candidates = match children(host, None) {
        Some(pids) => pids.into_iter().filter_map(stat).collect(),
        None => all(),
    };
    candidates
        .into_iter()
        .filter(|s| s.ppid == host && s.is_zombie())
        .collect()
}

/// Whether the host made itself a child subreaper.
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Every descendant of `root` (not `root` itself), or `None` where the
/// kernel does not list children (`CONFIG_PROC_CHILDREN`).
fn subtree(root: i32) -> Option<Vec<Stat>> {
    let mut pending = children(root, None)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    while let Some(pid) = pending.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(s) = stat(pid) else {
            continue;
        };
        // Zombies too: a leader that ended its own thread shows as one
        // while its other threads run and fork.
        pending.extend(children(pid, Some(s.threads)).unwrap_or_default());
        out.push(s);
    }
    Some(out)
}

/// The children of every thread of `pid` (`threads`, when known to be one,
/// saves listing them); `None` where the kernel does not list children,
/// or where a list took more than one read (see [`read_list`]). A process
/// that forks while this reads may show its new child or not, as with a
/// scan of all of `/proc` (the callers kill in rounds).
fn children(pid: i32, threads: Option<u32>) -> Option<Vec<i32>> {
    static LISTED: OnceLock<bool> = OnceLock::new();
    if !*LISTED.get_or_init(|| Path::new("/proc/thread-self/children").exists()) {
        return None;
    }
    let tids: Vec<i32> = match threads {
        Some(1) => vec![pid],
        _ => match fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
            // Gone meanwhile.
            Err(_) => return Some(Vec::new()),
        },
    };
    let mut out = Vec::new();
    for tid in tids {
        match read_list(&format!("/proc/{pid}/task/{tid}/children")) {
            Ok(Some(text)) => out.extend(
                String::from_utf8_lossy(&text)
                    .split_ascii_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            // Gone meanwhile.
            Ok(None) => {}
            Err(TooLong) => return None,
        }
    }
    Some(out)
}

/// True when `pid`'s cgroup path (in any hierarchy) contains `marker`.
/// Works for zombies: the kernel keeps their cgroup until they are reaped.
pub fn cgroup_contains(pid: i32, marker: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|text| text.contains(marker))
}

/// Reaps `pid` if it is a zombie child of ours. Never blocks.
pub fn reap(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid on one specific pid with WNOHANG; status is a local.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) == pid }
}

/// A children list longer than one read.
struct TooLong;

/// A children list, read whole in one `read`, or `Err` when it takes more:
/// the kernel gives at most a page per read (about 700 pids) and lists the
/// children afresh at each, from the position the last one reached, so a
/// child that exits between two reads hides the next. The caller then
/// scans all of `/proc` instead. `Ok(None)`: the thread is gone.
fn read_list(path: &str) -> Result<Option<Vec<u8>>, TooLong> {
    use std::io::Read;
    let Ok(mut file) = fs::File::open(path) else {
        return Ok(None);
    };
    let mut buf = vec![0u8; 16 * 1024];
    let Ok(n) = file.read(&mut buf) else {
        return Ok(None);
    };
    let mut more = [0u8; 1];
    if n > 0 && !matches!(file.read(&mut more), Ok(0)) {
        return Err(TooLong);
    }
    buf.truncate(n);
    Ok(Some(buf))
}

/// Makes the calling process a child subreaper. Returns whether it worked.
pub fn become_subreaper() -> bool {
    // SAFETY: prctl with integer arguments only.
    let ok = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 };
    if ok {
        SUBREAPER.store(true, Ordering::Relaxed);
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_names() {
        let text =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 5678 1000 100";
        let s = parse_stat(1234, text).unwrap();
        assert_eq!(
            (s.state, s.ppid, s.pgrp, s.session, s.start_ticks),
            (b'S', 1, 1234, 1234, 5678)
        );
    }

    #[test]
    fn the_subtree_holds_every_descendant_and_only_them() {
        use std::process::{Command, Stdio};
        let me = std::process::id() as i32;
        // A child, and its own child (sleep under sh).
        use std::os::unix::process::CommandExt;
        let mut child = Command::new("/bin/sh")
            .args(["-c", "/bin/sleep 30 & wait"])
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let child_pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let tree = loop {
            let tree = subtree(me).expect("this kernel lists children");
            if tree.iter().any(|s| s.ppid == child_pid) {
                break tree;
            }
            assert!(std::time::Instant::now() < deadline, "{tree:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let all = all();
        // SAFETY: kill(2) of the process group made for this test.
        unsafe { libc::kill(-child_pid, libc::SIGKILL) };
        let _ = child.wait();
        assert!(tree.iter().any(|s| s.pid == child_pid));
        // Everything in it descends from this process; PID 1 is not in it.
        assert!(tree.iter().all(|s| s.pid != 1 && s.pid != me));
        for s in &tree {
            let mut at = *s;
            while at.ppid != me {
                at = *all
                    .iter()
                    .find(|p| p.pid == at.ppid)
                    .unwrap_or_else(|| panic!("{} is not a descendant: {tree:?}", s.pid));
            }
        }
    }

    #[test]
    fn a_list_longer_than_one_read_is_refused_not_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (short, long) = (dir.path().join("short"), dir.path().join("long"));
        std::fs::write(&short, "1 2 3 ").unwrap();
        std::fs::write(&long, "12345 ".repeat(4000)).unwrap();
        assert_eq!(
            read_list(short.to_str().unwrap()).ok().flatten().as_deref(),
            Some(&b"1 2 3 "[..])
        );
        assert!(read_list(long.to_str().unwrap()).is_err());
        assert!(matches!(read_list("/proc/0/task/0/children"), Ok(None)));
    }

    #[test]
    fn a_process_whose_main_thread_ended_is_no_zombie() {
        let text =
            |threads: u32| format!("9 (x) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 {threads} 0 77 0 0");
        assert!(parse_stat(9, &text(1)).unwrap().is_zombie());
        assert!(!parse_stat(9, &text(2)).unwrap().is_zombie());
    }

    #[test]
    fn reads_our_own_stat() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.start_ticks > 0);
    }
}
