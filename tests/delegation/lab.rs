//! The delegation tests' lab: a cgroup of root's that a `jobwarden` run as
//! [`USER`] starts in (so its own cgroups give it nothing), a private
//! `dbus-daemon` with the systemd stand-in on it, and copies of the
//! binaries the user can run. Dropping it stops both daemons and removes
//! every cgroup made beneath its base.

use crate::standin::{self, Config, Mode};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The unprivileged user the hosts run as.
pub const USER: u32 = 65534;

pub struct Lab {
    dir: tempfile::TempDir,
    pub v2_mount: PathBuf,
    /// The lab's cgroup: holds `start` and the manager's.
    pub base: PathBuf,
    /// Root's cgroup the user's host starts in (not delegated).
    pub start: PathBuf,
    /// The stand-in manager's cgroup (`user@USER.service`).
    pub manager: PathBuf,
    /// Whether `hugetlb` could be enabled below the base: the controller
    /// that stands in for pids and memory, which cgroup v2 lacks here.
    pub hugetlb: bool,
    bus: Option<String>,
    daemons: Vec<Child>,
}

/// Why a lab cannot be made here: the requirement (for `skip!`) and why.
pub type Missing = (&'static str, String);

impl Lab {
    /// A lab; with `mode`, a bus and a stand-in answering that way.
    pub fn new(mode: Option<Mode>) -> Result<Self, Missing> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err((
                "root",
                "only root can make cgroups for another user and run as it".into(),
            ));
        }
        let v2_mount = v2_mount().ok_or(("cgroup-v2", "no cgroup2 hierarchy is mounted".into()))?;
        if mode.is_some()
            && Command::new("dbus-daemon")
                .arg("--version")
                .output()
                .is_err()
        {
            return Err(("dbus-daemon", "dbus-daemon is not installed".into()));
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("0::").map(String::from))
            .unwrap();
        let parent = v2_mount.join(own.trim_start_matches('/'));
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let base = parent.join(format!(
            "jwtest-delegation-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir(&base).unwrap();
        let manager = base.join(format!("user@{USER}.service"));
        // The hugetlb controller is free on this machine's cgroup2 (v1
        // holds the others). Enabling it in the parent's subtree_control is
        // possible only where the parent holds no process of its own (the
        // root is exempt); it changes nothing for processes.
        let hugetlb = controllers(&parent.join("cgroup.controllers")).contains(&"hugetlb".into())
            && write(&parent.join("cgroup.subtree_control"), "+hugetlb").is_ok()
            && write(&base.join("cgroup.subtree_control"), "+hugetlb").is_ok();
        std::fs::create_dir(&manager).unwrap();
        chown_delegated(&manager);
        // Beside the manager: a cgroup with controllers for its children
        // (the base) cannot hold processes itself.
        let start = base.join("start");
        std::fs::create_dir(&start).unwrap();
        for sub in ["bin", "repo", "home"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        for binary in ["jobwarden", "jobwarden-probe"] {
            let from = Path::new(env!("CARGO_BIN_EXE_jobwarden")).with_file_name(binary);
            std::fs::copy(from, dir.path().join("bin").join(binary)).unwrap();
        }
        for sub in ["repo", "home"] {
            std::os::unix::fs::chown(dir.path().join(sub), Some(USER), Some(USER)).unwrap();
        }
        let mut lab = Self {
            dir,
            v2_mount,
            base,
            start,
            manager,
            hugetlb,
            bus: None,
            daemons: Vec::new(),
        };
        std::fs::write(lab.path("policy.toml"), lab.policy()).unwrap();
        if let Some(mode) = mode {
            lab.start_bus(mode);
        }
        Ok(lab)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A private bus any user may use, and the stand-in on it.
    fn start_bus(&mut self, mode: Mode) {
        let socket = self.path("bus");
        let config = self.path("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address"])
            .stdout(Stdio::piped())
            // It warns that it cannot raise its descriptor limit.
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut address = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        self.daemons.push(daemon);
        let address = address.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
        let config = Config {
            bus: address.clone(),
            manager_dir: self.manager.clone(),
            v2_mount: self.v2_mount.clone(),
            uid: USER,
            mode,
            controllers: if self.hugetlb {
                vec!["hugetlb".into()]
            } else {
                Vec::new()
            },
            log: self.path("standin.log"),
        };
        let mut standin = Command::new(std::env::current_exe().unwrap())
            .args(["standin", "--exact", "--ignored", "--nocapture"])
            .env(standin::ENV, config.to_env())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let ready = BufReader::new(standin.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .any(|l| l == "standin: ready");
        self.daemons.push(standin);
        assert!(ready, "the stand-in did not start");
        self.bus = Some(address);
    }

    /// `jobwarden ARGS` as [`USER`], started in `cgroup`, with the lab's
    /// bus as the user's bus (if there is one).
    fn command(&self, cgroup: &Path, args: &[&str]) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
            .arg(cgroup)
            .args([
                "setpriv",
                "--reuid",
                &USER.to_string(),
                "--regid",
                &USER.to_string(),
            ])
            .args(["--clear-groups", "env", "-i", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME={}", self.path("home").display()));
        if let Some(bus) = &self.bus {
            command.arg(format!("DBUS_SESSION_BUS_ADDRESS={bus}"));
        }
        command
            .arg(self.path("bin/jobwarden"))
            .args(args)
            .current_dir(self.path("repo"));
        command
    }

    pub fn test_controllers(&self) -> Vec<&'static str> {
        if self.hugetlb {
            vec!["--test-delegate-controller", "hugetlb"]
        } else {
            Vec::new()
        }
    }

    /// `jobwarden doctor --json` as the user in `cgroup`.
    pub fn doctor(&self, cgroup: &Path, args: &[&str]) -> Value {
        self.doctor_with_pid(cgroup, args).0
    }

    /// The same, with the pid doctor ran as.
    pub fn doctor_with_pid(&self, cgroup: &Path, args: &[&str]) -> (Value, u32) {
        let mut all = vec!["doctor", "--json"];
        all.extend_from_slice(args);
        let child = self
            .command(cgroup, &all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        let json = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor's JSON ({e}): {out:?}"));
        (json, pid)
    }

    /// `jobwarden run` of `sh -c SCRIPT` under the lab's policy.
    pub fn run(&self, cgroup: &Path, args: &[&str], script: &str) -> Output {
        let policy = self.path("policy.toml").display().to_string();
        let repo = self.path("repo").display().to_string();
        let mut all = vec!["run", "--policy", &policy, "--repo", &repo];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--", "sh", "-c", script]);
        self.command(cgroup, &all).output().unwrap()
    }

    /// Starts `jobwarden run` of a probe that leaves a setsid escapee
    /// living a minute; returns the host and the escapee's pid.
    pub fn spawn_escape(&self, cgroup: &Path) -> (Child, i32) {
        let policy = self.path("policy.toml").display().to_string();
        let repo = self.path("repo").display().to_string();
        let args = [
            "run", "--policy", &policy, "--repo", &repo, "--", "probe", "escape", "60",
        ];
        let mut child = self
            .command(cgroup, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let escapee = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("probe: escaped pid ")?.trim().parse().ok())
            .expect("the probe says which pid escaped");
        (child, escapee)
    }

    /// A job that prints its cgroups, the host's, and the controllers its
    /// own v2 cgroup got (with shell built-ins only).
    pub fn cgroup_script(&self) -> String {
        format!(
            r#"while read -r l; do echo "job $l"; case $l in 0::*) p=${{l#0::}};; esac; done < /proc/self/cgroup
while read -r l; do echo "host $l"; done < /proc/$PPID/cgroup
while read -r l; do echo "controllers $l"; done < {}$p/cgroup.controllers"#,
            self.v2_mount.display()
        )
    }

    /// A cgroup beside the manager, delegated to the user.
    pub fn delegated_cgroup(&self, name: &str) -> PathBuf {
        let dir = self.base.join(name);
        std::fs::create_dir(&dir).unwrap();
        chown_delegated(&dir);
        dir
    }

    /// What the stand-in was asked, one call a line.
    pub fn standin_calls(&self) -> String {
        std::fs::read_to_string(self.path("standin.log")).unwrap_or_default()
    }

    fn policy(&self) -> String {
        format!(
            r#"version = 1
enforcement = "best_effort"
[filesystem]
read = ["/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/proc", "{}", "{}"]
read_write = ["{{repo}}", "{{tmp}}"]
[limits]
timeout_secs = 60
kill_grace_secs = 0.2
processes = 64
[binaries.sh]
path = "/bin/sh"
[binaries.probe]
path = "{}"
[plugins.cli]
binaries = ["sh", "probe"]
"#,
            self.v2_mount.display(),
            self.path("bin").display(),
            self.path("bin/jobwarden-probe").display()
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for daemon in &mut self.daemons {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        remove_tree(&self.base);
    }
}

/// Removes a cgroup and everything beneath it, killing what is left in it.
fn remove_tree(dir: &Path) {
    for child in children(dir) {
        remove_tree(&dir.join(child));
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.parse::<i32>().ok()) {
            // SAFETY: kill(2) of a process left in the lab's own cgroup.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    eventually(Duration::from_secs(5), || {
        std::fs::remove_dir(dir).is_ok() || !dir.exists()
    });
}

/// What systemd chowns when it delegates a cgroup.
fn chown_delegated(dir: &Path) {
    for file in [
        "",
        "cgroup.procs",
        "cgroup.subtree_control",
        "cgroup.threads",
    ] {
        std::os::unix::fs::chown(dir.join(file), Some(USER), Some(USER)).unwrap();
    }
}

fn v2_mount() -> Option<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
}

fn controllers(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// The child cgroups of `dir`, sorted.
pub fn children(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The rest of the first line of `text` that starts with `prefix`.
pub fn field(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"))
        .to_string()
}

/// Whether `pid` runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
