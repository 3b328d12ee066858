//! What else the kernel executes when it executes a file: the ELF loader
//! named by `PT_INTERP`, or the interpreter of a `#!` script.
//!
//! Landlock checks the Execute right on those too, so a job's execute rules
//! must include them. Only the headers are read; a malformed file yields
//! "no interpreter" and the exec itself fails later with the kernel's error.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Longest interpreter path read from a header.
const MAX_INTERP: usize = 4096;

/// How a file is executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreter {
    /// A dynamically linked ELF file and its loader.
    ElfLoader(PathBuf),
    /// A `#!` script and its interpreter.
    Script(PathBuf),
    /// A static ELF file or something the kernel will judge itself.
    None,
}

/// Reads the interpreter of `path`.
pub fn interpreter_of(path: &Path) -> std::io::Result<Interpreter> {
    let file = File::open(path)?;
    interpreter_of_file(&file)
}

/// Reads the interpreter of an open file.
pub fn interpreter_of_file(file: &File) -> std::io::Result<Interpreter> {
    let mut header = [0u8; 64];
    let n = read_at_most(file, &mut header, 0)?;
    let header = &header[..n];
    if header.starts_with(b"#!") {
        return Ok(shebang(file));
    }
    if header.len() < 52 || &header[..4] != b"\x7fELF" || header[5] != 1 {
        // Not ELF, or big-endian (not a Linux x86/arm target we run on).
        return Ok(Interpreter::None);
    }
    let is64 = match header[4] {
        1 => false,
        2 => true,
        _ => return Ok(Interpreter::None),
    };
    let (phoff, phentsize, phnum) = if is64 {
        if header.len() < 64 {
            return Ok(Interpreter::None);
        }
        (
            u64_at(header, 32),
            u16_at(header, 54) as u64,
            u16_at(header, 56) as u64,
        )
    } else {
        (
            u32_at(header, 28) as u64,
            u16_at(header, 42) as u64,
            u16_at(header, 44) as u64,
        )
    };
    let min_entsize = if is64 { 56 } else { 32 };
    if phentsize < min_entsize || phnum > 4096 {
        return Ok(Interpreter::None);
    }
    let mut entry = vec![0u8; phentsize as usize];
    for i in 0..phnum {
        let Some(offset) = phoff.checked_add(i * phentsize) else {
            return Ok(Interpreter::None);
        };
        if read_at_most(file, &mut entry, offset)? < min_entsize as usize {
            return Ok(Interpreter::None);
        }
        const PT_INTERP: u32 = 3;
        if u32_at(&entry, 0) != PT_INTERP {
            continue;
        }
        let (p_offset, p_filesz) = if is64 {
            (u64_at(&entry, 8), u64_at(&entry, 32))
        } else {
            (u32_at(&entry, 4) as u64, u32_at(&entry, 16) as u64)
        };
        if p_filesz == 0 || p_filesz as usize > MAX_INTERP {
            return Ok(Interpreter::None);
        }
        let mut name = vec![0u8; p_filesz as usize];
        let n = read_at_most(file, &mut name, p_offset)?;
        name.truncate(n);
        if let Some(nul) = name.iter().position(|&b| b == 0) {
            name.truncate(nul);
        }
        let path = PathBuf::from(String::from_utf8_lossy(&name).into_owned());
        return Ok(if path.is_absolute() {
            Interpreter::ElfLoader(path)
        } else {
            Interpreter::None
        });
    }
    Ok(Interpreter::None)
}

fn shebang(file: &File) -> Interpreter {
    let mut line = [0u8; 256];
    let Ok(n) = read_at_most(file, &mut line, 0) else {
        return Interpreter::None;
    };
    let line = &line[2..n];
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = String::from_utf8_lossy(line);
    let Some(program) = text.split_whitespace().next() else {
        return Interpreter::None;
    };
    let path = PathBuf::from(program);
    if path.is_absolute() {
        Interpreter::Script(path)
    } else {
        Interpreter::None
    }
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_loader_of_a_dynamic_binary() {
        match interpreter_of(Path::new("/bin/true")).unwrap() {
            Interpreter::ElfLoader(path) => {
                assert!(path.to_string_lossy().contains("ld-linux"), "{path:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finds_a_script_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh -e\necho hi\n").unwrap();
        assert_eq!(
            interpreter_of(&script).unwrap(),
            Interpreter::Script("/bin/sh".into())
        );
        std::fs::write(&script, "#!sh\n").unwrap();
        assert_eq!(interpreter_of(&script).unwrap(), Interpreter::None);
    }

    #[test]
    fn garbage_is_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g");
        let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
        bytes.resize(64, 0xff);
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(interpreter_of(&file).unwrap(), Interpreter::None);
        std::fs::write(&file, b"").unwrap();
        assert_eq!(interpreter_of(&file).unwrap(), Interpreter::None);
    }
}
