//! The child's side of the mount layer (see `mounts.rs`): entering the
//! job's own (user and) mount namespace, making the prepared mounts and
//! opening the working directory again inside it.
//!
//! This runs in the `CLONE_VM` child between `clone` and `execve`, under the
//! rules of `spawn.rs`: raw system calls only, on data the parent prepared;
//! no allocation, no locks, nothing that can panic.

use super::mounts::{MountOp, Namespace};
use super::spawn::{Stage, errno};

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// `openat2` in the child: no allocation, the result or -1.
unsafe fn openat2(
    dir: libc::c_int,
    path: *const libc::c_char,
    flags: libc::c_int,
    resolve: u64,
) -> libc::c_int {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: a valid NUL-terminated path and an open_how of the right size.
    unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path,
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        ) as libc::c_int
    }
}

/// Writes `text` (NUL excluded) to `path` in the child.
unsafe fn write_file(path: &std::ffi::CStr, text: &[u8]) -> Result<(), i32> {
    // SAFETY: open/write/close with a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(errno());
        }
        let written = libc::write(fd, text.as_ptr() as *const libc::c_void, text.len());
        let result = if written == text.len() as isize {
            Ok(())
        } else {
            Err(errno())
        };
        libc::close(fd);
        result
    }
}

/// The child enters its own (user and) mount namespace, makes the spec's
/// mounts and returns the working directory opened again inside it. Only
/// raw system calls on data prepared by the parent.
pub(super) unsafe fn enter_namespace(ns: &Namespace) -> Result<libc::c_int, (Stage, i32)> {
    // SAFETY: every call gets NUL-terminated strings and live locals.
    unsafe {
        if libc::unshare(ns.unshare_flags) != 0 {
            return Err((Stage::Unshare, errno()));
        }
        if let Some((uid_map, gid_map)) = &ns.maps {
            write_file(c"/proc/self/setgroups", b"deny").map_err(|e| (Stage::UserMaps, e))?;
            write_file(c"/proc/self/uid_map", uid_map.as_bytes())
                .map_err(|e| (Stage::UserMaps, e))?;
            write_file(c"/proc/self/gid_map", gid_map.as_bytes())
                .map_err(|e| (Stage::UserMaps, e))?;
        }
        // Nothing mounted here propagates back to the host.
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err((Stage::Mounts, errno()));
        }
        for op in &ns.ops {
            mount_op(op).map_err(|e| (Stage::Mounts, e))?;
        }
        let repo = openat2(
            libc::AT_FDCWD,
            ns.repo.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY,
            RESOLVE_NO_SYMLINKS,
        );
        if repo < 0 {
            return Err((Stage::Chdir, errno()));
        }
        let Some(relative) = &ns.cwd else {
            return Ok(repo);
        };
        let cwd = openat2(
            repo,
            relative.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY,
            RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        );
        let error = errno();
        libc::close(repo);
        if cwd < 0 {
            return Err((Stage::Chdir, error));
        }
        Ok(cwd)
    }
}

/// A recursive bind of `op.path` onto itself with its attributes, through
/// descriptors: a path that became a symlink fails (`RESOLVE_NO_SYMLINKS`),
/// one that changed kind fails (`ENOTDIR`/`EISDIR`).
unsafe fn mount_op(op: &MountOp) -> Result<(), i32> {
    // SAFETY: raw system calls on a NUL-terminated path, locals, and the
    // descriptors opened here, all closed before returning.
    unsafe {
        let target = openat2(
            libc::AT_FDCWD,
            op.path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW,
            RESOLVE_NO_SYMLINKS,
        );
        if target < 0 {
            return Err(errno());
        }
        let mut stat: libc::stat = std::mem::zeroed();
        let is_dir =
            libc::fstat(target, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let is_file = stat.st_mode & libc::S_IFMT == libc::S_IFREG;
        if (op.dir && !is_dir) || (!op.dir && !is_file) {
            libc::close(target);
            return Err(if op.dir { libc::ENOTDIR } else { libc::EISDIR });
        }
        let tree = libc::syscall(
            libc::SYS_open_tree,
            target,
            c"".as_ptr(),
            OPEN_TREE_CLONE
                | libc::O_CLOEXEC as libc::c_uint
                | libc::AT_EMPTY_PATH as libc::c_uint
                | AT_RECURSIVE,
        ) as libc::c_int;
        if tree < 0 {
            let e = errno();
            libc::close(target);
            return Err(e);
        }
        let attr = MountAttr {
            attr_set: op.set,
            attr_clr: op.clear,
            propagation: 0,
            userns_fd: 0,
        };
        let mut result = Ok(());
        if libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) != 0
            || libc::syscall(
                libc::SYS_move_mount,
                tree,
                c"".as_ptr(),
                target,
                c"".as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
            ) != 0
        {
            result = Err(errno());
        }
        libc::close(tree);
        libc::close(target);
        result
    }
}
