//! A stand-in for the systemd user manager: the three calls jobwarden makes
//! (`StartTransientUnit`, `GetUnit`, the `ControlGroup` property), doing
//! what systemd does for a transient scope with `Delegate=yes` — create the
//! scope's cgroup beneath the manager's, enable the configured controllers
//! down the path, chown the scope to the user, then move the pids into it.
//! Like systemd, it answers first and moves the process when it runs the
//! start job, a little later.
//!
//! It runs as root (it must create cgroups and move processes), as this
//! test binary's ignored test `standin`, started by `Lab` (`main.rs`) with
//! its configuration in the environment. It serves a private
//! `dbus-daemon`, never the machine's buses.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// How the stand-in answers `StartTransientUnit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As systemd: the scope is made and the pids moved.
    Systemd,
    /// Refused with `org.freedesktop.DBus.Error.AccessDenied`.
    Refuse,
    /// Accepted, then dropped: the unit is gone, nothing moved (a start
    /// job that failed, collected at once).
    Drop,
}

/// The configuration `Lab` passes in the environment.
pub struct Config {
    pub bus: String,
    /// The manager's own cgroup directory (`…/user@UID.service`).
    pub manager_dir: PathBuf,
    /// The cgroup2 mount, to answer `ControlGroup` relative to it.
    pub v2_mount: PathBuf,
    pub uid: u32,
    pub mode: Mode,
    /// Controllers to enable down the path to each scope.
    pub controllers: Vec<String>,
    /// Where each call is recorded, one line each.
    pub log: PathBuf,
}

pub const ENV: &str = "JOBWARDEN_TEST_STANDIN";

impl Config {
    pub fn to_env(&self) -> String {
        let mode = match self.mode {
            Mode::Systemd => "systemd",
            Mode::Refuse => "refuse",
            Mode::Drop => "drop",
        };
        [
            self.bus.clone(),
            self.manager_dir.display().to_string(),
            self.v2_mount.display().to_string(),
            self.uid.to_string(),
            mode.to_string(),
            self.controllers.join(","),
            self.log.display().to_string(),
        ]
        .join("\n")
    }

    fn from_env() -> Self {
        let text = std::env::var(ENV).expect("the stand-in runs only when started by Lab");
        let f: Vec<&str> = text.split('\n').collect();
        Self {
            bus: f[0].to_string(),
            manager_dir: f[1].into(),
            v2_mount: f[2].into(),
            uid: f[3].parse().unwrap(),
            mode: match f[4] {
                "refuse" => Mode::Refuse,
                "drop" => Mode::Drop,
                _ => Mode::Systemd,
            },
            controllers: f[5]
                .split(',')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect(),
            log: f[6].into(),
        }
    }
}

/// The errors systemd answers with, by their D-Bus names.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop")]
enum SystemdError {
    #[zbus(error)]
    ZBus(zbus::Error),
    #[zbus(name = "DBus.Error.AccessDenied")]
    AccessDenied(String),
    #[zbus(name = "systemd1.NoSuchUnit")]
    NoSuchUnit(String),
    #[zbus(name = "systemd1.UnitExists")]
    UnitExists(String),
}

struct Manager {
    config: Config,
    next_job: AtomicU32,
    units: Mutex<Vec<String>>,
}

impl Manager {
    fn record(&self, line: String) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.log)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    async fn start_transient_unit(
        &self,
        name: String,
        mode: String,
        properties: Vec<(String, OwnedValue)>,
        _aux: Vec<(String, Vec<(String, OwnedValue)>)>,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] connection: &zbus::Connection,
    ) -> Result<OwnedObjectPath, SystemdError> {
        let sender = header
            .sender()
            .expect("a bus message has a sender")
            .to_owned();
        let caller = zbus::fdo::DBusProxy::new(connection)
            .await?
            .get_connection_unix_user(sender.into())
            .await
            .map_err(|e| SystemdError::ZBus(zbus::Error::FDO(Box::new(e))))?;
        let mut pids = Vec::new();
        let mut delegate = false;
        for (key, value) in properties {
            match key.as_str() {
                "PIDs" => pids = Vec::<u32>::try_from(value).map_err(zbus::Error::from)?,
                "Delegate" => delegate = bool::try_from(value).map_err(zbus::Error::from)?,
                _ => {}
            }
        }
        self.record(format!(
            "StartTransientUnit name={name} mode={mode} caller={caller} pids={pids:?} delegate={delegate}"
        ));
        // A user manager serves its own user only, and moves only its
        // user's processes.
        if caller != self.config.uid || self.config.mode == Mode::Refuse {
            return Err(SystemdError::AccessDenied(format!(
                "uid {caller} may not start units of this manager"
            )));
        }
        for pid in &pids {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let owner = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next())
                .and_then(|uid| uid.parse::<u32>().ok());
            if owner != Some(caller) {
                return Err(SystemdError::AccessDenied(format!(
                    "process {pid} is not yours"
                )));
            }
        }
        {
            let mut units = self.units.lock().unwrap();
            if units.contains(&name) {
                return Err(SystemdError::UnitExists(format!("unit {name} exists")));
            }
            if self.config.mode == Mode::Systemd {
                units.push(name.clone());
            }
        }
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        if self.config.mode == Mode::Systemd {
            let slice = self.config.manager_dir.join("app.slice");
            let controllers = self.config.controllers.clone();
            let uid = self.config.uid;
            // The start job runs after the answer, as systemd's does.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                start_scope(&slice, &name, &controllers, uid, delegate, &pids);
            });
        }
        Ok(OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/job/{job}")).unwrap())
    }

    fn get_unit(&self, name: String) -> Result<OwnedObjectPath, SystemdError> {
        if self.units.lock().unwrap().contains(&name) {
            let escaped: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_string()
                    } else {
                        format!("_{:02x}", c as u32)
                    }
                })
                .collect();
            Ok(
                OwnedObjectPath::try_from(format!("/org/freedesktop/systemd1/unit/{escaped}"))
                    .unwrap(),
            )
        } else {
            Err(SystemdError::NoSuchUnit(format!("Unit {name} not loaded.")))
        }
    }

    #[zbus(property)]
    fn control_group(&self) -> String {
        let relative = self
            .config
            .manager_dir
            .strip_prefix(&self.config.v2_mount)
            .expect("the manager's cgroup is in the cgroup2 mount");
        format!("/{}", relative.display())
    }
}

/// What systemd does when a transient scope starts: realise its cgroup
/// (controllers enabled down the path), delegate it (chown), attach pids.
fn start_scope(
    slice: &std::path::Path,
    name: &str,
    controllers: &[String],
    uid: u32,
    delegate: bool,
    pids: &[u32],
) {
    let scope = slice.join(name);
    std::fs::create_dir_all(&scope).unwrap();
    for dir in [slice.parent().unwrap(), slice] {
        for controller in controllers {
            std::fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}")).unwrap();
        }
    }
    if delegate {
        for file in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            std::os::unix::fs::chown(scope.join(file), Some(uid), Some(uid)).unwrap();
        }
    }
    for pid in pids {
        std::fs::write(scope.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

/// Serves the stand-in until killed.
pub fn serve() {
    let config = Config::from_env();
    let bus = config.bus.clone();
    let manager = Manager {
        config,
        next_job: AtomicU32::new(1),
        units: Mutex::new(Vec::new()),
    };
    let _connection = zbus::blocking::connection::Builder::address(bus.as_str())
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .serve_at("/org/freedesktop/systemd1", manager)
        .unwrap()
        .build()
        .unwrap();
    println!("standin: ready");
    loop {
        std::thread::park();
    }
}
