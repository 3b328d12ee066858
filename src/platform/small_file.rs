//! Reading a small text file an admin points jobwarden at (a policy, a
//! test file) in bounded time and memory, whatever the path really is.
//!
//! The invariant: only a regular file is read, and never more than the
//! caller's limit plus one byte. A FIFO, a device (`/dev/zero`), a socket
//! or a directory is refused by what it is, before anything is read and
//! without blocking: the file is opened non-blocking, and checked again
//! once open, so one swapped in after the first look is refused too.

use std::io::Read;
use std::path::Path;

/// What a path is, when it is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file (never reported as an error: it is what is read).
    Regular,
    /// A directory.
    Directory,
    /// A named pipe: reading it would wait for a writer.
    Fifo,
    /// A UNIX socket.
    Socket,
    /// `/dev/zero`, `/dev/tty`, ...: reading may never end.
    CharDevice,
    /// A block device (a disk).
    BlockDevice,
    /// Anything else the platform reports.
    Other,
}

impl FileKind {
    /// "a directory", "a FIFO (named pipe)", ...
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a FIFO (named pipe)",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Other => "not a regular file",
        }
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Why [`read_small_file`] read nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmallFileError {
    /// The path is not a regular file.
    #[error("it is {0}, not a regular file")]
    NotAFile(FileKind),
    /// The file is bigger than the limit (`size` is at least `limit + 1`).
    #[error("it is {} ({size} bytes), more than the {} allowed", in_mib(*size), in_mib(*limit))]
    TooLarge {
        /// The file's size in bytes, or `limit + 1` when it grew while read.
        size: u64,
        /// The caller's limit, in bytes.
        limit: u64,
    },
    /// Opening, inspecting or reading it failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `1 MiB`, `190.7 MiB`, or `N bytes` below a MiB.
fn in_mib(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{bytes} bytes")
    } else if bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}

/// The bytes of the regular file at `path`, if it holds at most `limit`.
pub fn read_small_file(path: &Path, limit: u64) -> Result<Vec<u8>, SmallFileError> {
    let check = |metadata: &std::fs::Metadata| {
        let kind = super::imp::file_kind(metadata);
        if kind != FileKind::Regular {
            return Err(SmallFileError::NotAFile(kind));
        }
        if metadata.len() > limit {
            return Err(SmallFileError::TooLarge {
                size: metadata.len(),
                limit,
            });
        }
        Ok(())
    };
    check(&std::fs::metadata(path)?)?;
    let file = super::imp::open_without_blocking(path)?;
    check(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        // It grew between the look and the read.
        return Err(SmallFileError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_file_and_refuses_a_big_one_and_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, b"version = 1\n").unwrap();
        assert_eq!(read_small_file(&file, 100).unwrap(), b"version = 1\n");
        assert!(matches!(
            read_small_file(&file, 5),
            Err(SmallFileError::TooLarge { size: 12, limit: 5 })
        ));
        assert!(matches!(
            read_small_file(dir.path(), 100),
            Err(SmallFileError::NotAFile(FileKind::Directory))
        ));
    }

    #[cfg(unix)]
    #[test]
    fn refuses_devices_and_fifos_without_reading_or_blocking() {
        assert!(matches!(
            read_small_file(Path::new("/dev/zero"), 100),
            Err(SmallFileError::NotAFile(FileKind::CharDevice))
        ));
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_small_file(&fifo, 100),
            Err(SmallFileError::NotAFile(FileKind::Fifo))
        ));
    }
}
