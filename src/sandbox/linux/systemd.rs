//! Asking the user's systemd manager for a transient scope with
//! `Delegate=yes`, over D-Bus, as rootless podman and `systemd-run --user
//! --scope -p Delegate=yes` do.
//!
//! The invariant: nothing here is taken on the manager's word. The scope
//! counts as obtained only when `/proc/self/cgroup` shows this process in
//! it; whether it is delegated (writable, with controllers) is checked by
//! the caller (`delegation.rs`) before anything is created in it.
//!
//! The blocking API of `zbus` runs the calls; it starts a background thread
//! for its connection (ended when the connection is dropped here) and, on
//! first use, async-io's reactor thread, which stays for the process's life.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zbus::zvariant::{OwnedObjectPath, Value};

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// How long one call may take, and how long the manager may take to move
/// this process after accepting the scope. systemd answers in
/// milliseconds; these bound a host's start when it does not.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const MOVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The user's bus: `DBUS_SESSION_BUS_ADDRESS`, else the socket systemd
/// creates for the user (`$XDG_RUNTIME_DIR/bus`, `/run/user/UID/bus`).
pub(crate) fn user_bus_address(uid: libc::uid_t) -> Result<String, String> {
    if let Some(address) = std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        let address = address.to_string_lossy().into_owned();
        if !address.is_empty() {
            return Ok(address);
        }
    }
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{uid}")));
    let socket = runtime.join("bus");
    if socket.exists() {
        return Ok(format!("unix:path={}", socket.display()));
    }
    Err(format!(
        "no user D-Bus: DBUS_SESSION_BUS_ADDRESS is not set and {} does not exist (no systemd user session for uid {uid})",
        socket.display()
    ))
}

/// A connection to the user's systemd manager.
pub(crate) struct Manager {
    proxy: zbus::blocking::Proxy<'static>,
    /// The address connected to, for messages.
    pub address: String,
}

impl Manager {
    pub fn connect(address: &str) -> Result<Self, String> {
        let connection = zbus::blocking::connection::Builder::address(address)
            .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
            .map_err(|e| format!("cannot connect to the user bus {address}: {e}"))?;
        let proxy = zbus::blocking::proxy::Builder::new(&connection)
            .destination(DESTINATION)
            .and_then(|b| b.path(MANAGER_PATH))
            .and_then(|b| b.interface(MANAGER))
            .map(|b| b.cache_properties(zbus::proxy::CacheProperties::No))
            .and_then(|b| b.build())
            .map_err(|e| format!("cannot reach the systemd user manager on {address}: {e}"))?;
        Ok(Self {
            proxy,
            address: address.to_string(),
        })
    }

    /// The manager's own cgroup (`ControlGroup`, e.g.
    /// `/user.slice/user-1000.slice/user@1000.service`), relative to the
    /// cgroup2 mount.
    pub fn control_group(&self) -> Result<String, String> {
        self.proxy
            .get_property::<String>("ControlGroup")
            .map_err(|e| format!("the systemd user manager did not say its cgroup: {e}"))
    }

    /// Asks for a transient scope `unit` holding this process, delegated to
    /// the user, and waits until this process is in it. Returns the scope's
    /// cgroup directory under `v2_mount`.
    pub fn start_delegated_scope(&self, unit: &str, v2_mount: &Path) -> Result<PathBuf, String> {
        let pid = std::process::id();
        let properties: Vec<(&str, Value<'_>)> = vec![
            (
                "Description",
                Value::from("jobwarden: a cgroup of its own for the host and its jobs"),
            ),
            ("PIDs", Value::from(vec![pid])),
            ("Delegate", Value::from(true)),
            // A scope that failed is not kept around.
            ("CollectMode", Value::from("inactive-or-failed")),
        ];
        let auxiliary: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let job: OwnedObjectPath = self
            .proxy
            .call("StartTransientUnit", &(unit, "fail", properties, auxiliary))
            .map_err(|e| format!("the systemd user manager refused the scope {unit}: {e}"))?;
        // The manager moves the process when it runs the start job, after
        // its answer: wait until the kernel says so.
        let deadline = Instant::now() + MOVE_TIMEOUT;
        let mut next_unit_check = Instant::now();
        loop {
            if let Some(path) = own_v2_cgroup()
                && path.rsplit('/').next() == Some(unit)
            {
                return Ok(v2_mount.join(path.trim_start_matches('/')));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "the systemd user manager accepted the scope {unit} (job {}) but did not move this process into it within {} s",
                    job.as_str(),
                    MOVE_TIMEOUT.as_secs()
                ));
            }
            // A scope that failed to start is dropped (CollectMode): stop
            // waiting as soon as the manager no longer knows it.
            if now >= next_unit_check {
                next_unit_check = now + Duration::from_millis(50);
                if let Err(e) = self
                    .proxy
                    .call::<_, _, OwnedObjectPath>("GetUnit", &(unit,))
                {
                    return Err(format!(
                        "the systemd user manager dropped the scope {unit} without moving this process into it: {e}"
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// This process's cgroup in the unified hierarchy (`0::/path`).
pub(crate) fn own_v2_cgroup() -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}
