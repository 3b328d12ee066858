//! Actions that use Unix (and Linux) system calls directly.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// The null device, for `open-files`.
pub const NULL_DEVICE: &str = "/dev/null";

/// Runs a platform action, or `None` if there is no such action.
pub fn action(name: &str, rest: &[String]) -> Option<io::Result<String>> {
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize, default: u64| arg(i).parse::<u64>().unwrap_or(default);
    Some(match name {
        "mknod" => mknod(arg(0)),
        "chown" => chown(arg(0)),
        "exec" => exec(rest),
        "kill" => kill(num(0, 0) as i32, num(1, 0) as i32),
        "alive" => alive(num(0, 0) as i32),
        "caps" => caps(),
        "tty" => tty(),
        "spin-tree" => spin_tree(num(0, 2), num(1, 1)),
        "fork" => fork(num(0, 1)),
        "fork-retry" => fork_retry(num(0, 1)),
        "tree" => tree(num(0, 10), arg(1).parse().unwrap_or(30.0)),
        "ignore-term" => ignore_term(arg(0).parse().unwrap_or(60.0)),
        #[cfg(target_os = "linux")]
        "escape-from-thread" => escape_from_thread(arg(0).parse().unwrap_or(60.0)),
        "escape" => {
            let leader: f64 = arg(0).parse().unwrap_or(60.0);
            escape(leader, arg(1).parse().unwrap_or(leader))
        }
        #[cfg(target_os = "linux")]
        other => return linux::action(other, rest),
        #[cfg(not(target_os = "linux"))]
        _ => return None,
    })
}

/// Whether process `pid` exists (and is not a zombie we could see).
fn alive(pid: i32) -> io::Result<String> {
    // SAFETY: kill(2) with signal 0 only checks for existence.
    let ret = unsafe { libc::kill(pid, 0) };
    last_error(ret, "alive".to_string())
}

pub fn error_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENOEXEC => "ENOEXEC",
        libc::ELOOP => "ELOOP",
        libc::EBUSY => "EBUSY",
        libc::EXDEV => "EXDEV",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EPROTOTYPE => "EPROTOTYPE",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ENODEV => "ENODEV",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTCONN => "ENOTCONN",
        libc::ENOTSOCK => "ENOTSOCK",
        _ => "E?",
    }
}

fn last_error<T>(ret: i32, ok: T) -> io::Result<T> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ok)
    }
}

fn cstr(path: &str) -> CString {
    CString::new(std::path::Path::new(path).as_os_str().as_bytes()).unwrap_or_default()
}

fn mknod(path: &str) -> io::Result<String> {
    // /dev/null's device numbers: a character device the job could open.
    // SAFETY: mknod with a NUL-terminated path.
    let ret = unsafe {
        libc::mknod(
            cstr(path).as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        )
    };
    last_error(ret, String::new())
}

fn chown(path: &str) -> io::Result<String> {
    // SAFETY: chown with a NUL-terminated path.
    let ret = unsafe { libc::chown(cstr(path).as_ptr(), 1, 1) };
    last_error(ret, String::new())
}

fn exec(argv: &[String]) -> io::Result<String> {
    let args: Vec<CString> = argv.iter().map(|a| cstr(a)).collect();
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let _ = io::stdout().flush();
    // SAFETY: execv with a NUL-terminated argv; returns only on failure.
    unsafe { libc::execv(ptrs[0], ptrs.as_ptr()) };
    Err(io::Error::last_os_error())
}

fn kill(pid: i32, signal: i32) -> io::Result<String> {
    // SAFETY: kill(2) with integers.
    let ret = unsafe { libc::kill(pid, signal) };
    last_error(ret, String::new())
}

#[cfg(not(target_os = "linux"))]
fn caps() -> io::Result<String> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(target_os = "linux")]
fn caps() -> io::Result<String> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget with a v3 header and room for two data structs.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &header as *const Header,
            data.as_mut_ptr(),
        )
    } as i32;
    last_error(ret, ())?;
    let effective = (data[1].effective as u64) << 32 | data[0].effective as u64;
    let permitted = (data[1].permitted as u64) << 32 | data[0].permitted as u64;
    // SAFETY: prctl reads.
    let bounding_sys_admin = unsafe { libc::prctl(libc::PR_CAPBSET_READ, 21, 0, 0, 0) };
    let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    Ok(format!(
        "effective={effective:#x} permitted={permitted:#x} bounding_cap_sys_admin={bounding_sys_admin} no_new_privs={nnp}"
    ))
}

fn tty() -> io::Result<String> {
    let mut report = Vec::new();
    for fd in 0..3 {
        // SAFETY: isatty on a small integer descriptor.
        report.push(format!("fd{fd}_isatty={}", unsafe { libc::isatty(fd) }));
        let byte = b'x';
        // SAFETY: TIOCSTI ioctl with a pointer to a local byte; fails on a non-tty.
        let ret = unsafe { libc::ioctl(fd, libc::TIOCSTI, &byte) };
        let errno = if ret < 0 {
            io::Error::last_os_error().raw_os_error().unwrap_or(0)
        } else {
            0
        };
        report.push(format!(
            "fd{fd}_tiocsti={}",
            if ret == 0 { "ok" } else { error_name(errno) }
        ));
    }
    match std::fs::File::open("/dev/tty") {
        Ok(_) => report.push("dev_tty=opened".into()),
        Err(e) => report.push(format!(
            "dev_tty={}",
            error_name(e.raw_os_error().unwrap_or(0))
        )),
    }
    Ok(report.join(" "))
}

pub fn cpu_time() -> Duration {
    // SAFETY: clock_gettime into a local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `processes` busy processes (this one included) for `secs` of CPU each.
fn spin_tree(processes: u64, secs: u64) -> io::Result<String> {
    let mut children = Vec::new();
    for _ in 1..processes {
        // SAFETY: single-threaded; the child only spins and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = crate::spin(secs);
            // SAFETY: leave the child without running destructors.
            unsafe { libc::_exit(0) };
        }
        last_error(pid, ())?;
        children.push(pid);
    }
    crate::spin(secs)?;
    for pid in children {
        // SAFETY: reap our own children.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    Ok(format!("{processes} processes"))
}

fn fork(n: u64) -> io::Result<String> {
    let mut children = Vec::new();
    let mut failure = None;
    for _ in 0..n {
        // SAFETY: the probe is single-threaded; the child only sleeps and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            std::thread::sleep(Duration::from_secs(30));
            // SAFETY: leave the child without running destructors.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            failure = Some(io::Error::last_os_error());
            break;
        }
        children.push(pid);
    }
    for pid in &children {
        // SAFETY: kill and reap our own children.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
            libc::waitpid(*pid, std::ptr::null_mut(), 0);
        }
    }
    match failure {
        Some(e) => {
            println!("probe: started {} of {n} processes", children.len());
            Err(e)
        }
        None => Ok(format!("{n} processes")),
    }
}

/// Starts `n` children that sleep, retrying every 10 ms while fork fails
/// with EAGAIN, as a build tool waiting for a free slot does: under a
/// processes limit below `n` it never ends by itself.
fn fork_retry(n: u64) -> io::Result<String> {
    let mut started = 0;
    let mut refused = false;
    while started < n {
        // SAFETY: the probe is single-threaded; the child only sleeps and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            std::thread::sleep(Duration::from_secs(600));
            // SAFETY: leave the child without running destructors.
            unsafe { libc::_exit(0) };
        }
        if pid < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EAGAIN) {
                return Err(e);
            }
            if !refused {
                println!("probe: fork refused after {started} of {n}; retrying");
                let _ = io::stdout().flush();
                refused = true;
            }
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        started += 1;
    }
    Ok(format!("{n} processes"))
}

/// Starts `n` children that sleep `secs`, prints their pids, says so, and
/// waits for them.
fn tree(n: u64, secs: f64) -> io::Result<String> {
    let mut children = Vec::new();
    for _ in 0..n {
        // SAFETY: single-threaded; the child only sleeps and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            std::thread::sleep(Duration::from_secs_f64(secs));
            // SAFETY: leave the child without running destructors.
            unsafe { libc::_exit(0) };
        }
        last_error(pid, ())?;
        println!("probe: child pid {pid}");
        children.push(pid);
    }
    println!("probe: tree of {} processes", children.len() + 1);
    let _ = io::stdout().flush();
    for pid in &children {
        // SAFETY: reap our own children.
        unsafe { libc::waitpid(*pid, std::ptr::null_mut(), 0) };
    }
    Ok(format!("{n} children"))
}

/// A `timespec` for `secs` seconds, prepared before a fork.
fn duration_timespec(secs: f64) -> libc::timespec {
    let d = Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::from_secs(60));
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

fn ignore_term(secs: f64) -> io::Result<String> {
    // SAFETY: ignoring SIGTERM has no memory-safety implications.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    println!("probe: ignoring SIGTERM");
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(secs));
    Ok(String::new())
}

/// Leaves a grandchild in its own session (the classic daemon double
/// fork), prints its pid, and sleeps `secs`; the grandchild sleeps
/// `escapee_secs` (fractions allowed), so it can outlive the job's first
/// process.
fn escape(secs: f64, escapee_secs: f64) -> io::Result<String> {
    let mut fds = [0; 2];
    // SAFETY: pipe into a local array.
    last_error(unsafe { libc::pipe(fds.as_mut_ptr()) }, ())?;
    let nap = duration_timespec(escapee_secs);
    // SAFETY: single-threaded; the child only forks, setsids, writes a pid and sleeps.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe {
            libc::setsid();
            let grandchild = libc::fork();
            if grandchild == 0 {
                let me = libc::getpid().to_string();
                libc::write(fds[1], me.as_ptr() as *const libc::c_void, me.len());
                libc::close(fds[1]);
                // nanosleep, not sleep(3): sleep takes whole seconds and
                // would turn 0.2 into 0.
                libc::nanosleep(&nap, std::ptr::null_mut());
                libc::_exit(0);
            }
            libc::_exit(0);
        }
    }
    // SAFETY: close our write end, reap the middle child, read the pid.
    unsafe {
        libc::close(fds[1]);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
    let mut buf = [0u8; 32];
    // SAFETY: read into a local buffer.
    let n = unsafe { libc::read(fds[0], buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    let pid = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
    println!("probe: escaped pid {pid}");
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(secs));
    Ok(pid)
}

/// Forks a child that leaves the session and process group and ends its
/// main thread, so that `/proc` shows it as a zombie while its other
/// thread runs `secs`; says its pid and sleeps `secs` too. Such a child is
/// the job's only through its parent, and only if it is not taken for an
/// ended process. Linux: the test is of the fallback without cgroups.
#[cfg(target_os = "linux")]
fn escape_from_thread(secs: f64) -> io::Result<String> {
    // SAFETY: this process has one thread here, so the child may make
    // threads of its own.
    let child = unsafe { libc::fork() };
    if child == 0 {
        unsafe { libc::setsid() };
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            std::process::exit(0);
        });
        // SAFETY: ends this thread only (exit(2), not exit_group(2)); the
        // other thread ends the process.
        unsafe { libc::syscall(libc::SYS_exit, 0) };
        unreachable!("exit(2) returned");
    }
    last_error(child, ())?;
    println!("probe: escaped pid {child}");
    let _ = io::stdout().flush();
    std::thread::sleep(Duration::from_secs_f64(secs));
    Ok(child.to_string())
}

// Actions only Linux has: the system calls of the seccomp layer, Landlock's
// scopes, descriptors, terminals.
#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod linux;
