//! Actions that use Windows calls directly.

use std::io::{self, Write};
use std::time::Duration;
use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, STILL_ACTIVE};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetExitCodeProcess, GetProcessTimes, OpenProcess,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

/// The null device, for `open-files`.
pub const NULL_DEVICE: &str = "NUL";

/// Runs a platform action, or `None` if there is no such action.
pub fn action(name: &str, rest: &[String]) -> Option<io::Result<String>> {
    let arg = |i: usize| rest.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize, default: u64| arg(i).parse::<u64>().unwrap_or(default);
    Some(match name {
        "alive" => alive(num(0, 0) as u32),
        "tree" => tree(num(0, 10), arg(1).parse().unwrap_or(30.0)),
        _ => return None,
    })
}

/// The names of the Windows errors the probe meets most.
pub fn error_name(code: i32) -> &'static str {
    match code {
        2 => "ERROR_FILE_NOT_FOUND",
        3 => "ERROR_PATH_NOT_FOUND",
        5 => "ERROR_ACCESS_DENIED",
        8 => "ERROR_NOT_ENOUGH_MEMORY",
        32 => "ERROR_SHARING_VIOLATION",
        1455 => "ERROR_COMMITMENT_LIMIT",
        1816 => "ERROR_NOT_ENOUGH_QUOTA",
        10013 => "WSAEACCES",
        10061 => "WSAECONNREFUSED",
        _ => "ERROR_?",
    }
}

/// CPU time this process has used.
pub fn cpu_time() -> Duration {
    let mut times = [FILETIME::default(); 4];
    let [created, exited, kernel, user] = &mut times;
    // SAFETY: the current-process pseudo handle and four local FILETIMEs.
    unsafe { GetProcessTimes(GetCurrentProcess(), created, exited, kernel, user) };
    let ticks = |t: &FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    Duration::from_nanos((ticks(&times[2]) + ticks(&times[3])).saturating_mul(100))
}

/// Whether process `pid` is still running.
fn alive(pid: u32) -> io::Result<String> {
    // SAFETY: OpenProcess with a query right; the handle is closed here.
    unsafe {
        let handle = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid);
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut code = 0u32;
        let ok = GetExitCodeProcess(handle, &mut code);
        CloseHandle(handle);
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        if code == STILL_ACTIVE as u32 {
            Ok("alive".into())
        } else {
            Err(io::Error::other(format!("exited with {code}")))
        }
    }
}

/// Starts `n` copies of the probe that sleep `secs`, prints their pids,
/// says so, and waits for them.
fn tree(n: u64, secs: f64) -> io::Result<String> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for _ in 0..n {
        let child = std::process::Command::new(&exe)
            .args(["sleep", &secs.to_string()])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        println!("probe: child pid {}", child.id());
        children.push(child);
    }
    println!("probe: tree of {} processes", children.len() + 1);
    let _ = io::stdout().flush();
    for mut child in children {
        let _ = child.wait();
    }
    Ok(format!("{n} children"))
}
