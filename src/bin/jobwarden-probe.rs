//! `jobwarden-probe ACTION [ARGS]`: attempts one thing and reports what the
//! kernel answered.
//!
//! Run as a job under a policy, it shows what that policy really lets a job
//! do: `jobwarden run -- probe read /etc/shadow` prints
//! `probe: read /etc/shadow: denied: EACCES (Permission denied)`.
//! It exits 0 when the action succeeded and with the errno otherwise, so
//! tests and `jobwarden test` live cases can assert the exact refusal.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((action, rest)) = args.split_first() else {
        eprintln!("usage: jobwarden-probe ACTION [ARGS]; see the source for actions");
        return ExitCode::from(2);
    };
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize, default: u64| arg(i).parse::<u64>().unwrap_or(default);
    let target = rest.join(" ");
    let result: io::Result<String> = match action.as_str() {
        "read" => read(arg(0)),
        "write" => std::fs::write(arg(0), b"probe\n").map(|()| String::new()),
        "write-size" => write_size(arg(0), num(1, 0)),
        "mknod" => mknod(arg(0)),
        "chown" => chown(arg(0)),
        "exec" => exec(rest),
        "connect" => TcpStream::connect(arg(0)).map(|_| String::new()),
        "bind" => TcpListener::bind(("127.0.0.1", num(0, 0) as u16)).map(|_| String::new()),
        "kill" => kill(num(0, 0) as i32, num(1, 0) as i32),
        "env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            vars.sort();
            for v in vars {
                println!("{v}");
            }
            Ok(String::new())
        }
        "cwd" => std::env::current_dir().map(|d| d.display().to_string()),
        "caps" => caps(),
        "tty" => tty(),
        "spin" => spin(num(0, 1)),
        "spin-tree" => spin_tree(num(0, 2), num(1, 1)),
        "say" => say(num(0, 100), &rest[1.min(rest.len())..]),
        "alloc" => alloc(num(0, 64)),
        "fork" => fork(num(0, 1)),
        "tree" => tree(num(0, 10), arg(1).parse().unwrap_or(30.0)),
        "open-files" => open_files(num(0, 1)),
        "lines" => lines(num(0, 10), num(1, 20) as usize),
        "flood" => flood(num(0, 1 << 20)),
        "sleep" => {
            std::thread::sleep(Duration::from_secs_f64(arg(0).parse().unwrap_or(1.0)));
            Ok(String::new())
        }
        "ignore-term" => ignore_term(arg(0).parse().unwrap_or(60.0)),
        "escape" => escape(arg(0).parse().unwrap_or(60.0)),
        "print" => {
            println!("{target}");
            Ok(String::new())
        }
        "stderr" => {
            eprintln!("{target}");
            Ok(String::new())
        }
        "exit" => return ExitCode::from(num(0, 0) as u8),
        _ => {
            eprintln!("probe: unknown action `{action}`");
            return ExitCode::from(2);
        }
    };
    let mut out = io::stdout().lock();
    match result {
        Ok(detail) => {
            let _ = if detail.is_empty() {
                writeln!(out, "probe: {action} {target}: ok")
            } else {
                writeln!(out, "probe: {action} {target}: ok: {detail}")
            };
            ExitCode::SUCCESS
        }
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(1);
            let _ = writeln!(
                out,
                "probe: {action} {target}: denied: {} ({e})",
                errno_name(errno)
            );
            ExitCode::from(errno.clamp(1, 125) as u8)
        }
    }
}

fn errno_name(errno: i32) -> &'static str {
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

fn read(path: &str) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = [0u8; 64];
    let n = file.read(&mut buf)?;
    Ok(format!("{n} bytes"))
}

fn write_size(path: &str, bytes: u64) -> io::Result<String> {
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut written = 0u64;
    while written < bytes {
        let n = chunk.len().min((bytes - written) as usize);
        file.write_all(&chunk[..n])?;
        written += n as u64;
    }
    Ok(format!("{written} bytes"))
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
            if ret == 0 { "ok" } else { errno_name(errno) }
        ));
    }
    match std::fs::File::open("/dev/tty") {
        Ok(_) => report.push("dev_tty=opened".into()),
        Err(e) => report.push(format!(
            "dev_tty={}",
            errno_name(e.raw_os_error().unwrap_or(0))
        )),
    }
    Ok(report.join(" "))
}

fn cpu_time() -> Duration {
    // SAFETY: clock_gettime into a local.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn spin(secs: u64) -> io::Result<String> {
    let mut x: u64 = 1;
    while cpu_time() < Duration::from_secs(secs) {
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
    Ok(format!("{secs} cpu seconds"))
}

/// Runs `processes` busy processes (this one included) for `secs` of CPU each.
fn spin_tree(processes: u64, secs: u64) -> io::Result<String> {
    let mut children = Vec::new();
    for _ in 1..processes {
        // SAFETY: single-threaded; the child only spins and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let _ = spin(secs);
            // SAFETY: leave the child without running destructors.
            unsafe { libc::_exit(0) };
        }
        last_error(pid, ())?;
        children.push(pid);
    }
    spin(secs)?;
    for pid in children {
        // SAFETY: reap our own children.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    Ok(format!("{processes} processes"))
}

/// Prints each line, pausing `delay_ms` after each: for progress tests.
fn say(delay_ms: u64, lines: &[String]) -> io::Result<String> {
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
        out.flush()?;
        std::thread::sleep(Duration::from_millis(delay_ms));
    }
    Ok(String::new())
}

fn alloc(mib: u64) -> io::Result<String> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    for i in 0..mib {
        let mut block = vec![0u8; 1 << 20];
        for j in (0..block.len()).step_by(4096) {
            block[j] = (i + 1) as u8;
        }
        blocks.push(block);
    }
    Ok(format!("{} MiB touched", blocks.len()))
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

/// Starts `n` children that sleep `secs`, says so, and waits for them.
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

fn open_files(n: u64) -> io::Result<String> {
    let mut files = Vec::new();
    for _ in 0..n {
        files.push(std::fs::File::open("/dev/null")?);
    }
    Ok(format!("{} open", files.len()))
}

fn lines(n: u64, len: usize) -> io::Result<String> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    for i in 0..n {
        let text = format!("line {i} ");
        let pad = len.saturating_sub(text.len());
        writeln!(out, "{text}{}", "x".repeat(pad))?;
    }
    out.flush()?;
    Ok(String::new())
}

fn flood(bytes: u64) -> io::Result<String> {
    let mut line = vec![b'y'; 99];
    line.push(b'\n');
    let block: Vec<u8> = line.iter().copied().cycle().take(100 * 655).collect();
    let mut out = io::stdout().lock();
    let mut written = 0;
    let start = Instant::now();
    while written < bytes {
        let n = block.len().min((bytes - written) as usize);
        out.write_all(&block[..n])?;
        written += n as u64;
    }
    out.flush()?;
    Ok(format!(
        "{written} bytes in {:.2} s",
        start.elapsed().as_secs_f64()
    ))
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
/// fork), prints its pid, and sleeps.
fn escape(secs: f64) -> io::Result<String> {
    let mut fds = [0; 2];
    // SAFETY: pipe into a local array.
    last_error(unsafe { libc::pipe(fds.as_mut_ptr()) }, ())?;
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
                libc::sleep(secs as u32);
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
