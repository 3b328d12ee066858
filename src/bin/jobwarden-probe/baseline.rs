//! Probe actions for the Linux kernel baseline: sockets of every kind,
//! executing what the job wrote (a memfd, through the ELF loader, through
//! `dlopen`), setuid bits and creating directories.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

fn cstr(text: &str) -> CString {
    CString::new(std::path::Path::new(text).as_os_str().as_bytes()).unwrap_or_default()
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn number(text: &str) -> i64 {
    match text.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).unwrap_or(0),
        None => text.parse().unwrap_or(0),
    }
}

/// Runs a baseline action, or `None` if there is no such action.
pub fn action(name: &str, rest: &[String]) -> Option<io::Result<String>> {
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    Some(match name {
        // socket FAMILY TYPE PROTOCOL (numbers), then closed.
        "socket" => socket(number(arg(0)), number(arg(1)), number(arg(2))).map(|_| String::new()),
        "socketpair" => socketpair(number(arg(0))),
        "unix-connect" => unix_connect(arg(0)),
        "udp-send" => udp_send(arg(0)),
        "memfd-exec" => memfd_exec(number(arg(0)) as libc::c_uint),
        "dlopen" => dlopen(arg(0)),
        // chmod PATH MODE (octal)
        "chmod" => chmod(arg(0), arg(1)),
        // create PATH MODE (octal): open(O_CREAT|O_EXCL) with that mode.
        "create" => create(arg(0), arg(1)),
        "mkdir" => std::fs::create_dir(arg(0)).map(|()| String::new()),
        "rename" => std::fs::rename(arg(0), arg(1)).map(|()| String::new()),
        "remove-dir" => std::fs::remove_dir_all(arg(0)).map(|()| String::new()),
        "mounts" => std::fs::read_to_string("/proc/self/mountinfo"),
        // load-copy DIR: copies this program into DIR and runs the copy
        // through the ELF loader (`print loaded` if it runs).
        "load-copy" => load_copy(arg(0)),
        _ => return None,
    })
}

fn socket(family: i64, kind: i64, protocol: i64) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with integers; the result is checked.
    let fd = check(unsafe {
        libc::socket(
            family as i32,
            kind as i32 | libc::SOCK_CLOEXEC,
            protocol as i32,
        )
    } as libc::c_long)?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn socketpair(family: i64) -> io::Result<String> {
    let mut fds = [0; 2];
    // SAFETY: socketpair into a local array.
    check(
        unsafe { libc::socketpair(family as i32, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }
            as libc::c_long,
    )?;
    // SAFETY: the two fresh descriptors.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    Ok(String::new())
}

fn unix_connect(path: &str) -> io::Result<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    let _ = stream.write_all(b"hello from the job\n");
    Ok(String::new())
}

fn udp_send(target: &str) -> io::Result<String> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.send_to(b"hello from the job", target)?;
    Ok(String::new())
}

/// Copies this program into a memfd created with `flags` and executes it
/// (`print memfd ran`): what a job would do to run code no path allows.
fn memfd_exec(flags: libc::c_uint) -> io::Result<String> {
    let mut image = Vec::new();
    std::fs::File::open("/proc/self/exe")?.read_to_end(&mut image)?;
    // SAFETY: memfd_create with a NUL-terminated name.
    let fd = check(unsafe { libc::memfd_create(c"probe".as_ptr(), flags) } as libc::c_long)?;
    // SAFETY: a fresh descriptor we own.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd as i32) };
    file.write_all(&image)?;
    let argv = [
        c"probe".as_ptr(),
        c"print".as_ptr(),
        c"memfd ran".as_ptr(),
        std::ptr::null(),
    ];
    let envp = [std::ptr::null::<libc::c_char>()];
    let _ = io::stdout().flush();
    // SAFETY: execveat of our own descriptor with NULL-terminated arrays;
    // returns only on failure.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            file.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}

fn dlopen(path: &str) -> io::Result<String> {
    let c = cstr(path);
    // SAFETY: dlopen with a NUL-terminated path; dlerror's string is read
    // before any other dl call.
    let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
    if handle.is_null() {
        let why = unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) }
            .to_string_lossy()
            .into_owned();
        // dlerror has no errno; name the kernel's answer from its text.
        let errno = if why.contains("Operation not permitted") {
            libc::EPERM
        } else if why.contains("Permission denied") {
            libc::EACCES
        } else {
            libc::ENOEXEC
        };
        eprintln!("dlopen: {why}");
        return Err(io::Error::from_raw_os_error(errno));
    }
    Ok(String::new())
}

fn chmod(path: &str, mode: &str) -> io::Result<String> {
    let mode = u32::from_str_radix(mode, 8).unwrap_or(0);
    // SAFETY: chmod with a NUL-terminated path.
    check(unsafe { libc::chmod(cstr(path).as_ptr(), mode) } as libc::c_long)?;
    Ok(String::new())
}

fn create(path: &str, mode: &str) -> io::Result<String> {
    let mode = u32::from_str_radix(mode, 8).unwrap_or(0o644);
    // SAFETY: open with a NUL-terminated path; the descriptor is closed.
    let fd = check(unsafe {
        libc::open(
            cstr(path).as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            mode,
        )
    } as libc::c_long)?;
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd as i32) };
    Ok(String::new())
}

fn load_copy(dir: &str) -> io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let copy = std::path::Path::new(dir).join("probe-copy");
    std::fs::copy("/proc/self/exe", &copy)?;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))?;
    let loader = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    let args = [
        cstr(loader),
        cstr(&copy.display().to_string()),
        cstr("print"),
        cstr("loaded"),
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let _ = io::stdout().flush();
    // SAFETY: execv with a NULL-terminated argv of live strings; returns
    // only on failure.
    unsafe { libc::execv(argv[0], argv.as_ptr()) };
    Err(io::Error::last_os_error())
}
