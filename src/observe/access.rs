//! What a job attempted, as observation records it: one [`Access`] per
//! distinct attempt, in the vocabulary of the policy's grants (a path read,
//! written, created, executed; a TCP port; a kind of socket), and the
//! bounded set a job's attempts are collected into.

use serde::Serialize;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// One attempt of a job, as the kernel was asked for it (before any rule
/// answered). Paths are absolute as the job named them (relative ones
/// joined to the directory they were relative to); symlinks are resolved
/// only when the attempt is judged, since the processes may be gone by then.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "access", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Access {
    /// A file opened for reading, or a directory opened to list it.
    Read {
        /// The file or directory, absolute.
        path: PathBuf,
    },
    /// A file opened for writing, or truncated.
    Write {
        /// The file, absolute.
        path: PathBuf,
    },
    /// A file, directory, link, FIFO or socket created: its directory must
    /// be writable.
    Create {
        /// What was created, absolute.
        path: PathBuf,
    },
    /// A file or directory removed, or renamed away: its directory must be
    /// writable.
    Remove {
        /// What was removed, absolute.
        path: PathBuf,
    },
    /// A program executed (`execve`).
    Execute {
        /// The program, absolute.
        path: PathBuf,
    },
    /// A file mapped executable (`mmap` with `PROT_EXEC`: the ELF loader,
    /// `dlopen`).
    MapExecutable {
        /// The file mapped, absolute.
        path: PathBuf,
    },
    /// A TCP connection to an address.
    Connect {
        /// The address and port connected to.
        address: SocketAddr,
    },
    /// A TCP port bound (0: an ephemeral one).
    Bind {
        /// The address and port bound.
        address: SocketAddr,
    },
    /// A UDP socket.
    Udp,
    /// A pathname UNIX socket connected to, bound or sent to.
    UnixSocket {
        /// The socket's path, absolute.
        path: PathBuf,
    },
    /// A UNIX socket created, whatever it is then used for.
    UnixSocketCreated,
    /// A `NETLINK_ROUTE` socket.
    NetlinkRoute,
    /// A socket of a kind no policy grant covers (raw, packet, other
    /// netlink protocols, …).
    OtherSocket {
        /// The address family (`AF_PACKET`, `AF_NETLINK`, …).
        family: i32,
        /// The socket type (`SOCK_RAW`, …), without its flags.
        kind: i32,
        /// The protocol number.
        protocol: i32,
    },
}

impl Access {
    /// The path the access is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Access::Read { path }
            | Access::Write { path }
            | Access::Create { path }
            | Access::Remove { path }
            | Access::Execute { path }
            | Access::MapExecutable { path }
            | Access::UnixSocket { path } => Some(path),
            _ => None,
        }
    }

    /// A verb and an object, for messages: `read /etc/hosts`,
    /// `connect 127.0.0.1:8080 (TCP)`.
    pub fn describe(&self) -> String {
        let path = |verb: &str, p: &Path| format!("{verb} {}", p.display());
        match self {
            Access::Read { path: p } => path("read", p),
            Access::Write { path: p } => path("write", p),
            Access::Create { path: p } => path("create", p),
            Access::Remove { path: p } => path("remove", p),
            Access::Execute { path: p } => path("exec", p),
            Access::MapExecutable { path: p } => path("map executable", p),
            Access::Connect { address } => format!("connect {address} (TCP)"),
            Access::Bind { address } => format!("bind {address} (TCP)"),
            Access::Udp => "create a UDP socket".into(),
            Access::UnixSocket { path: p } => path("connect to the UNIX socket", p),
            Access::UnixSocketCreated => "create a UNIX socket".into(),
            Access::NetlinkRoute => "create a NETLINK_ROUTE socket".into(),
            Access::OtherSocket {
                family,
                kind,
                protocol,
            } => format!("create a socket of family {family}, type {kind}, protocol {protocol}"),
        }
    }
}

/// The most distinct accesses one job's observation keeps: a job that
/// touches more paths than this (a hostile one, or a huge build) cannot
/// make the host's memory grow without bound; the excess is counted.
pub const MAX_DISTINCT_ACCESSES: usize = 65_536;

/// Everything observed of one job.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    accesses: HashSet<Access>,
    /// System calls the job made that observation looked at.
    pub notifications: u64,
    /// Distinct accesses beyond [`MAX_DISTINCT_ACCESSES`], not kept.
    pub dropped: u64,
    /// Attempts whose arguments could not be read (the process had gone,
    /// or the host may not read its memory).
    pub unreadable: u64,
}

impl Observed {
    /// Records `access` once.
    pub fn record(&mut self, access: Access) {
        if self.accesses.len() >= MAX_DISTINCT_ACCESSES && !self.accesses.contains(&access) {
            self.dropped += 1;
            return;
        }
        self.accesses.insert(access);
    }

    /// The distinct accesses, sorted.
    pub fn accesses(&self) -> Vec<&Access> {
        let mut all: Vec<&Access> = self.accesses.iter().collect();
        all.sort();
        all
    }

    /// How many distinct accesses were kept.
    pub fn len(&self) -> usize {
        self.accesses.len()
    }

    /// Whether no access was kept.
    pub fn is_empty(&self) -> bool {
        self.accesses.is_empty()
    }

    /// The counts alone, without the accesses (what a host keeps when it
    /// only explains refusals).
    pub fn counts(&self) -> Observed {
        Observed {
            accesses: HashSet::new(),
            notifications: self.notifications,
            dropped: self.dropped,
            unreadable: self.unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_kept_once_and_bounded() {
        let mut observed = Observed::default();
        for _ in 0..3 {
            observed.record(Access::Read {
                path: "/etc/hosts".into(),
            });
        }
        assert_eq!(observed.len(), 1);
        for i in 0..MAX_DISTINCT_ACCESSES + 10 {
            observed.record(Access::Read {
                path: format!("/f{i}").into(),
            });
        }
        assert_eq!(observed.len(), MAX_DISTINCT_ACCESSES);
        assert_eq!(observed.dropped, 11);
        // One already kept is not counted as dropped.
        observed.record(Access::Read {
            path: "/etc/hosts".into(),
        });
        assert_eq!(observed.dropped, 11);
    }
}
