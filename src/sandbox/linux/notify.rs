//! The host's side of observation: reading each notification of a job's
//! observation filter (`observe.rs`), recording what the call asks for as
//! an [`Access`], and letting the call continue.
//!
//! The invariant: every notification received is answered "continue" —
//! whatever could or could not be read of it — so an observed job behaves
//! as an unobserved one, only slower. Arguments are read from the calling
//! thread's memory (`process_vm_readv`) and its `/proc` entries (working
//! directory, descriptors) while the call waits; the notification is then
//! checked to be still pending (`SECCOMP_IOCTL_NOTIF_ID_VALID`), so what
//! was read belongs to the thread that asked, not to a process that reused
//! its pid.

use crate::observe::{Access, GrantContext, Observed};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::ffi::OsStr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Notifications handled per call of [`Observer::service`] before other
/// jobs get a turn.
const BUDGET: usize = 256;
/// The longest path read (`PATH_MAX`).
const PATH_MAX: usize = 4096;

/// What a service round left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObserverState {
    /// Nothing pending now.
    Drained,
    /// The budget ran out with notifications pending: come back soon.
    MoreLater,
    /// Every process of the job has ended: nothing more will come.
    Closed,
}

/// A job's observation listener, held by the host.
#[derive(Debug)]
pub(crate) struct Observer {
    listener: OwnedFd,
    /// What the layers added to the plan's grants, for explaining.
    context: GrantContext,
    buf: Vec<u8>,
}

impl Observer {
    pub(crate) fn new(listener: OwnedFd, context: GrantContext) -> Self {
        Self {
            listener,
            context,
            buf: vec![0; PATH_MAX],
        }
    }

    /// What the layers added to the plan's grants, for explaining.
    pub fn context(&self) -> &GrantContext {
        &self.context
    }

    /// Watches the listener under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(
            &mut SourceFd(&self.listener.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Stops watching.
    pub fn deregister(&mut self, registry: &Registry) {
        let _ = registry.deregister(&mut SourceFd(&self.listener.as_raw_fd()));
    }

    /// Answers pending notifications, recording what they ask into
    /// `observed`.
    pub fn service(&mut self, observed: &mut Observed) -> ObserverState {
        let fd = self.listener.as_raw_fd();
        let mut found = Vec::with_capacity(2);
        for _ in 0..BUDGET {
            let mut poll = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: poll on one live descriptor, without waiting.
            if unsafe { libc::poll(&mut poll, 1, 0) } < 0 {
                return ObserverState::Drained;
            }
            if poll.revents & libc::POLLIN == 0 {
                return if poll.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    ObserverState::Closed
                } else {
                    ObserverState::Drained
                };
            }
            // SAFETY: the kernel requires a zeroed structure and fills it.
            let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            // SAFETY: ioctl on the listener with a structure of the
            // kernel's size (checked when the layer was prepared).
            if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut notif) } != 0 {
                // ENOENT: the caller was killed between poll and receive.
                continue;
            }
            observed.notifications += 1;
            found.clear();
            let complete = self.decode(&notif, &mut found);
            // SAFETY: ioctl with a pointer to the notification's id.
            let valid =
                unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &notif.id) } == 0;
            let response = libc::seccomp_notif_resp {
                id: notif.id,
                val: 0,
                error: 0,
                flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
            };
            // SAFETY: ioctl with a response of the kernel's size. A failure
            // means the caller is gone (ENOENT): nothing waits any more.
            unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &response) };
            if !valid {
                continue;
            }
            if !complete {
                observed.unreadable += 1;
            }
            for access in found.drain(..) {
                observed.record(access);
            }
        }
        ObserverState::MoreLater
    }

    /// What one call asks for. Returns false when an argument that names
    /// what it is about could not be read.
    fn decode(&mut self, notif: &libc::seccomp_notif, out: &mut Vec<Access>) -> bool {
        let pid = notif.pid as i32;
        let a = notif.data.args;
        let nr = notif.data.nr as libc::c_long;
        let fd = |i: usize| a[i] as i32;
        let cwd = libc::AT_FDCWD;
        match nr {
            libc::SYS_openat => self.open(pid, fd(0), a[1], a[2] as i32, out),
            libc::SYS_openat2 => {
                // struct open_how starts with its u64 flags.
                let Some(flags) = self.bytes(pid, a[2], 8) else {
                    return false;
                };
                let flags = u64::from_ne_bytes(flags.try_into().unwrap_or([0; 8]));
                if flags & libc::O_PATH as u64 != 0 {
                    return true;
                }
                self.open(pid, fd(0), a[1], flags as i32, out)
            }
            libc::SYS_execve => self.one(pid, cwd, a[0], out, |path| Access::Execute { path }),
            libc::SYS_execveat => {
                if a[4] as i32 & libc::AT_EMPTY_PATH != 0
                    && self.string(pid, a[1]).is_some_and(|s| s.is_empty())
                {
                    match self.fd_path(pid, fd(0)) {
                        Some(path) => out.push(Access::Execute { path }),
                        None => return false,
                    }
                    return true;
                }
                self.one(pid, fd(0), a[1], out, |path| Access::Execute { path })
            }
            libc::SYS_mkdirat | libc::SYS_mknodat => {
                self.one(pid, fd(0), a[1], out, |path| Access::Create { path })
            }
            libc::SYS_unlinkat => self.one(pid, fd(0), a[1], out, |path| Access::Remove { path }),
            libc::SYS_renameat | libc::SYS_renameat2 => {
                self.one(pid, fd(0), a[1], out, |path| Access::Remove { path })
                    & self.one(pid, fd(2), a[3], out, |path| Access::Create { path })
            }
            libc::SYS_linkat => self.one(pid, fd(2), a[3], out, |path| Access::Create { path }),
            libc::SYS_symlinkat => self.one(pid, fd(1), a[2], out, |path| Access::Create { path }),
            libc::SYS_truncate => self.one(pid, cwd, a[0], out, |path| Access::Write { path }),
            libc::SYS_socket => {
                if let Some(access) = socket_access(a[0] as i32, a[1] as i32, a[2] as i32) {
                    out.push(access);
                }
                true
            }
            libc::SYS_connect | libc::SYS_bind | libc::SYS_sendto => {
                let (addr, len) = if nr == libc::SYS_sendto {
                    (a[4], a[5])
                } else {
                    (a[1], a[2])
                };
                self.address(pid, nr, fd(0), addr, len as usize, out)
            }
            libc::SYS_mmap => match self.fd_path(pid, fd(4)) {
                Some(path) => {
                    out.push(Access::MapExecutable { path });
                    true
                }
                // An anonymous inode (a memfd): no path to grant.
                None => true,
            },
            _ => self.legacy(pid, nr, a, out),
        }
    }

    /// The x86_64 calls that aarch64 does not have.
    #[cfg(target_arch = "x86_64")]
    fn legacy(&mut self, pid: i32, nr: libc::c_long, a: [u64; 6], out: &mut Vec<Access>) -> bool {
        let cwd = libc::AT_FDCWD;
        match nr {
            libc::SYS_open => self.open(pid, cwd, a[0], a[1] as i32, out),
            libc::SYS_creat => self.one(pid, cwd, a[0], out, |path| Access::Create { path }),
            libc::SYS_mkdir | libc::SYS_mknod => {
                self.one(pid, cwd, a[0], out, |path| Access::Create { path })
            }
            libc::SYS_rmdir | libc::SYS_unlink => {
                self.one(pid, cwd, a[0], out, |path| Access::Remove { path })
            }
            libc::SYS_rename => {
                self.one(pid, cwd, a[0], out, |path| Access::Remove { path })
                    & self.one(pid, cwd, a[1], out, |path| Access::Create { path })
            }
            libc::SYS_link | libc::SYS_symlink => {
                self.one(pid, cwd, a[1], out, |path| Access::Create { path })
            }
            _ => true,
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn legacy(&mut self, _: i32, _: libc::c_long, _: [u64; 6], _: &mut Vec<Access>) -> bool {
        true
    }

    /// One path argument, turned into an access by `make`.
    fn one(
        &mut self,
        pid: i32,
        dirfd: i32,
        addr: u64,
        out: &mut Vec<Access>,
        make: impl FnOnce(PathBuf) -> Access,
    ) -> bool {
        match self.path(pid, dirfd, addr) {
            Some(path) => {
                out.push(make(path));
                true
            }
            None => false,
        }
    }

    /// An `open` by its flags: reading, writing, or creating.
    fn open(&mut self, pid: i32, dirfd: i32, addr: u64, flags: i32, out: &mut Vec<Access>) -> bool {
        if flags & libc::O_PATH != 0 {
            return true;
        }
        let Some(mut path) = self.path(pid, dirfd, addr) else {
            return false;
        };
        if flags & libc::O_TMPFILE == libc::O_TMPFILE {
            // An unnamed file in this directory: creating in it.
            path.push("(unnamed temporary file)");
            out.push(Access::Create { path });
            return true;
        }
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        // Asked before the call runs: does it create the file?
        let creates = flags & libc::O_CREAT != 0 && std::fs::symlink_metadata(&path).is_err();
        out.push(if creates {
            Access::Create { path }
        } else if writes {
            Access::Write { path }
        } else {
            Access::Read { path }
        });
        true
    }

    /// A socket address argument of `connect`, `bind` or `sendto`.
    fn address(
        &mut self,
        pid: i32,
        nr: libc::c_long,
        fd: i32,
        addr: u64,
        len: usize,
        out: &mut Vec<Access>,
    ) -> bool {
        let len = len.min(std::mem::size_of::<libc::sockaddr_storage>());
        if len < 2 {
            return true;
        }
        let Some(bytes) = self.bytes(pid, addr, len) else {
            return false;
        };
        let family = u16::from_ne_bytes([bytes[0], bytes[1]]) as i32;
        match family {
            libc::AF_UNIX => {
                let path = &bytes[2..];
                let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
                // Abstract sockets (a leading NUL) are confined by the
                // socket scope, not by a path.
                if end > 0 {
                    let path = absolute(pid, Path::new(OsStr::from_bytes(&path[..end])));
                    if nr == libc::SYS_bind {
                        out.push(Access::Create { path: path.clone() });
                    }
                    out.push(Access::UnixSocket { path });
                }
                true
            }
            libc::AF_INET | libc::AF_INET6 => {
                let Some(address) = inet(&bytes) else {
                    return true;
                };
                if nr == libc::SYS_sendto {
                    out.push(Access::Udp);
                    return true;
                }
                match socket_kind(pid, fd) {
                    Some((libc::SOCK_STREAM, protocol))
                        if protocol == 0 || protocol == libc::IPPROTO_TCP =>
                    {
                        out.push(if nr == libc::SYS_bind {
                            Access::Bind { address }
                        } else {
                            Access::Connect { address }
                        });
                    }
                    Some((libc::SOCK_DGRAM, _)) => out.push(Access::Udp),
                    Some(_) => {}
                    None => return false,
                }
                true
            }
            _ => true,
        }
    }

    /// `len` bytes of the calling thread's memory at `addr`.
    fn bytes(&mut self, pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
        let n = read_memory(pid, addr, &mut self.buf[..len.min(PATH_MAX)])?;
        (n == len).then(|| self.buf[..n].to_vec())
    }

    /// The NUL-terminated string at `addr`. Read up to the end of its page
    /// first (most paths end there: one page to look up, not two), then on.
    fn string(&mut self, pid: i32, addr: u64) -> Option<Vec<u8>> {
        if addr == 0 {
            return None;
        }
        let first = ((4096 - addr % 4096) as usize).min(PATH_MAX);
        let n = read_memory(pid, addr, &mut self.buf[..first])?;
        let mut end = self.buf[..n].iter().position(|b| *b == 0);
        if end.is_none() && n == first && first < PATH_MAX {
            let more = read_memory(pid, addr + first as u64, &mut self.buf[first..])?;
            end = self.buf[first..first + more]
                .iter()
                .position(|b| *b == 0)
                .map(|i| first + i);
        }
        Some(self.buf[..end?].to_vec())
    }

    /// The path argument at `addr`, absolute: a relative one joined to the
    /// directory `dirfd` names (or the working directory).
    fn path(&mut self, pid: i32, dirfd: i32, addr: u64) -> Option<PathBuf> {
        let raw = self.string(pid, addr)?;
        if raw.is_empty() {
            return None;
        }
        let path = Path::new(OsStr::from_bytes(&raw));
        if path.is_absolute() {
            return Some(absolute(pid, path));
        }
        let base = if dirfd == libc::AT_FDCWD {
            std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?
        } else {
            self.fd_path(pid, dirfd)?
        };
        Some(base.join(path))
    }

    /// The file a descriptor of the thread refers to, if it has a path.
    fn fd_path(&mut self, pid: i32, fd: i32) -> Option<PathBuf> {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
        target.is_absolute().then_some(target)
    }
}

/// An absolute path as the calling thread means it: its own `/proc/self`,
/// `/proc/thread-self` and `/dev/fd` (which would name the host's here).
fn absolute(pid: i32, path: &Path) -> PathBuf {
    for (prefix, own) in [
        ("/proc/self", format!("/proc/{pid}")),
        ("/proc/thread-self", format!("/proc/{pid}/task/{pid}")),
        ("/dev/fd", format!("/proc/{pid}/fd")),
    ] {
        if let Ok(rest) = path.strip_prefix(prefix) {
            return Path::new(&own).join(rest);
        }
    }
    path.to_path_buf()
}

/// What creating a socket of this kind asks of the policy; TCP sockets
/// ask nothing until they connect or bind.
fn socket_access(family: i32, kind: i32, protocol: i32) -> Option<Access> {
    let kind = kind & 0xf;
    match family {
        libc::AF_INET | libc::AF_INET6 => match kind {
            libc::SOCK_STREAM if protocol == 0 || protocol == libc::IPPROTO_TCP => None,
            libc::SOCK_DGRAM if protocol == 0 || protocol == libc::IPPROTO_UDP => Some(Access::Udp),
            _ => Some(Access::OtherSocket {
                family,
                kind,
                protocol,
            }),
        },
        libc::AF_UNIX => Some(Access::UnixSocketCreated),
        libc::AF_NETLINK if protocol == libc::NETLINK_ROUTE => Some(Access::NetlinkRoute),
        _ => Some(Access::OtherSocket {
            family,
            kind,
            protocol,
        }),
    }
}

/// An IPv4 or IPv6 socket address.
fn inet(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes([bytes[0], bytes[1]]) as i32;
    let port = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    let ip = match family {
        libc::AF_INET => {
            let o: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(o))
        }
        _ => {
            let o: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    Some(SocketAddr::new(ip, port))
}

/// The type and protocol of the thread's socket `fd`, from a copy of the
/// descriptor (`pidfd_getfd`).
fn socket_kind(pid: i32, fd: i32) -> Option<(i32, i32)> {
    // SAFETY: pidfd_open of a thread (PIDFD_THREAD, Linux 6.9) or, failing
    // that, of a process; pidfd_getfd copies one descriptor. Each result is
    // checked and owned.
    let pidfd = unsafe {
        let thread = libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_THREAD);
        if thread >= 0 {
            thread
        } else {
            libc::syscall(libc::SYS_pidfd_open, pid, 0)
        }
    };
    if pidfd < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: see above.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if copy < 0 {
        return None;
    }
    // SAFETY: a fresh descriptor we own.
    let copy = unsafe { OwnedFd::from_raw_fd(copy as i32) };
    let option = |name: libc::c_int| -> Option<i32> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt into a local int of the stated size.
        let ret = unsafe {
            libc::getsockopt(
                copy.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        (ret == 0).then_some(value)
    };
    Some((
        option(libc::SO_TYPE)?,
        option(libc::SO_PROTOCOL).unwrap_or(0),
    ))
}

/// Reads up to `buf.len()` bytes at `addr` of process `pid`, stopping at
/// the first unmapped page. `process_vm_readv` transfers whole iovecs
/// only, so the remote range is split at page boundaries.
fn read_memory(pid: i32, addr: u64, buf: &mut [u8]) -> Option<usize> {
    const PAGE: u64 = 4096;
    let mut remote = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 3];
    let mut count = 0;
    let mut at = addr;
    let mut left = buf.len() as u64;
    while left > 0 && count < remote.len() {
        let in_page = (PAGE - at % PAGE).min(left);
        remote[count] = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: in_page as usize,
        };
        count += 1;
        at += in_page;
        left -= in_page;
    }
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: process_vm_readv writes at most `buf.len()` bytes into `buf`
    // and only reads the other process.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), count as u64, 0) };
    (n > 0).then_some(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_own_paths_are_its_own() {
        assert_eq!(
            absolute(42, Path::new("/proc/self/status")),
            Path::new("/proc/42/status")
        );
        assert_eq!(
            absolute(42, Path::new("/dev/fd/3")),
            Path::new("/proc/42/fd/3")
        );
        assert_eq!(
            absolute(42, Path::new("/etc/hosts")),
            Path::new("/etc/hosts")
        );
    }

    #[test]
    fn sockets_are_named_by_what_the_policy_grants() {
        assert_eq!(socket_access(libc::AF_INET, libc::SOCK_STREAM, 0), None);
        assert_eq!(
            socket_access(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0),
            Some(Access::Udp)
        );
        assert_eq!(
            socket_access(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE),
            Some(Access::NetlinkRoute)
        );
        assert!(matches!(
            socket_access(libc::AF_PACKET, libc::SOCK_RAW, 0),
            Some(Access::OtherSocket { .. })
        ));
        assert!(matches!(
            socket_access(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP),
            Some(Access::OtherSocket { .. })
        ));
    }

    #[test]
    fn memory_is_read_up_to_an_unmapped_page() {
        // Our own memory, through the same call the host uses on jobs.
        let text = b"/etc/hosts\0";
        let mut buf = [0u8; 64];
        let n = read_memory(std::process::id() as i32, text.as_ptr() as u64, &mut buf).unwrap();
        assert!(n >= text.len());
        assert_eq!(&buf[..text.len()], text);
        // A string at the end of a mapping: only what is mapped is read.
        let page = 4096;
        // SAFETY: two fresh anonymous pages, the second made inaccessible.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        } as *mut u8;
        unsafe {
            libc::mprotect(map.add(page) as *mut libc::c_void, page, libc::PROT_NONE);
            std::ptr::copy_nonoverlapping(c"/a".as_ptr().cast(), map.add(page - 3), 3);
        }
        let mut long = [0u8; PATH_MAX];
        let n = read_memory(
            std::process::id() as i32,
            map as u64 + page as u64 - 3,
            &mut long,
        );
        assert_eq!(n, Some(3));
        assert_eq!(&long[..3], b"/a\0");
        unsafe { libc::munmap(map as *mut libc::c_void, 2 * page) };
    }
}
