//! Reading `/proc`: who belongs to a job, and which zombies are ours to reap.
//!
//! jobwarden makes the host a child subreaper, so processes orphaned inside a
//! job are re-parented to the host instead of PID 1 (which does not reap on
//! these machines). The host must then reap them — but only those that came
//! from its jobs, never children the embedding program made itself. A zombie
//! is ours when its cgroup path names one of our job cgroups, or (without
//! cgroups) when its pid, session or group is one we recorded for a job.

use std::fs;

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
}

/// Parses `/proc/PID/stat`.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
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

/// The host's zombie children.
pub fn zombie_children(host: i32) -> Vec<Stat> {
    all()
        .into_iter()
        .filter(|s| s.ppid == host && s.state == b'Z')
        .collect()
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

/// Makes the calling process a child subreaper. Returns whether it worked.
pub fn become_subreaper() -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
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
    fn reads_our_own_stat() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.start_ticks > 0);
    }
}
