//! `jobwarden-probe ACTION [ARGS]`: attempts one thing and reports what the
//! kernel answered.
//!
//! Run as a job under a policy, it shows what that policy really lets a job
//! do: `jobwarden run -- probe read /etc/shadow` prints
//! `probe: read /etc/shadow: denied: EACCES (Permission denied)`.
//! It exits 0 when the action succeeded and with the errno otherwise, so
//! tests and `jobwarden test` live cases can assert the exact refusal.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

// Actions that need the platform's own calls.
#[cfg(target_os = "linux")]
mod baseline;
#[cfg_attr(unix, path = "unix.rs")]
#[cfg_attr(windows, path = "windows.rs")]
mod platform;

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
        "create-until" => create_until(arg(0), num(1, 3)),
        "connect" => TcpStream::connect(arg(0)).map(|_| String::new()),
        "bind" => TcpListener::bind(("127.0.0.1", num(0, 0) as u16)).map(|_| String::new()),
        "env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            vars.sort();
            for v in vars {
                println!("{v}");
            }
            Ok(String::new())
        }
        "cwd" => std::env::current_dir().map(|d| d.display().to_string()),
        "spin" => spin(num(0, 1)),
        "say" => say(num(0, 100), &rest[1.min(rest.len())..]),
        "alloc" => alloc(num(0, 64)),
        "open-files" => open_files(num(0, 1)),
        "reopen" => reopen(arg(0), num(1, 1)),
        "lines" => lines(num(0, 10), num(1, 20) as usize),
        "flood" => flood(num(0, 1 << 20)),
        "sleep" => {
            std::thread::sleep(Duration::from_secs_f64(arg(0).parse().unwrap_or(1.0)));
            Ok(String::new())
        }
        "print" => {
            println!("{target}");
            Ok(String::new())
        }
        "stderr" => {
            eprintln!("{target}");
            Ok(String::new())
        }
        "exit" => return ExitCode::from(num(0, 0) as u8),
        other => match platform::action(other, rest) {
            Some(result) => result,
            None => {
                eprintln!("probe: unknown action `{action}` on this platform");
                return ExitCode::from(2);
            }
        },
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
                platform::error_name(errno)
            );
            ExitCode::from(errno.clamp(1, 125) as u8)
        }
    }
}

fn read(path: &str) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = [0u8; 64];
    let n = file.read(&mut buf)?;
    Ok(format!("{n} bytes"))
}

/// Opens and closes `path` `times` times (the observation benchmark's
/// job), refused or not; a refusal is reported after the last attempt.
fn reopen(path: &str, times: u64) -> io::Result<String> {
    let mut refused = None;
    for _ in 0..times {
        if let Err(e) = std::fs::File::open(path) {
            refused = Some(e);
        }
    }
    match refused {
        Some(e) => Err(e),
        None => Ok(format!("{times} opens")),
    }
}

/// Tries every 10 ms for `secs` seconds to create `path` (its parent
/// directory first): a protection that lapses while the job runs shows
/// here. Reports the first success, or the last refusal.
fn create_until(path: &str, secs: u64) -> io::Result<String> {
    let path = std::path::Path::new(path);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir(parent);
        }
        match std::fs::write(path, b"probe\n") {
            Ok(()) => return Ok(format!("after {attempts} attempts")),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
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

fn spin(secs: u64) -> io::Result<String> {
    let mut x: u64 = 1;
    while platform::cpu_time() < Duration::from_secs(secs) {
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
    Ok(format!("{secs} cpu seconds"))
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

fn open_files(n: u64) -> io::Result<String> {
    let mut files = Vec::new();
    for _ in 0..n {
        files.push(std::fs::File::open(platform::NULL_DEVICE)?);
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
