//! Job objects: one per job, holding its whole process tree.

use super::{HostProcess, Limits, REFUSED, Snapshot, Support, WINE};
use crate::decision::Plan;
use crate::policy::Limit;
use crate::sandbox::DismantleError;
use crate::sandbox::unreaped::ProcessId;
use std::collections::HashSet;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::sync::Arc;
use std::time::Instant;
use windows_sys::Win32::Foundation::{
    DuplicateHandle, ERROR_MORE_DATA, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, TH32CS_SNAPTHREAD, THREADENTRY32, Thread32First, Thread32Next,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_ACTIVE_PROCESS,
    JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION, JOB_OBJECT_LIMIT_JOB_MEMORY,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOB_OBJECT_LIMIT_PROCESS_TIME,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_EXTENDED_LIMIT_INFORMATION,
    JOBOBJECTINFOCLASS, JobObjectBasicAccountingInformation, JobObjectBasicProcessIdList,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    TerminateJobObject,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenThread, ResumeThread, THREAD_SUSPEND_RESUME,
};

/// The rights the host keeps on a job object once its limits are set:
/// assign, query, terminate — not `JOB_OBJECT_SET_ATTRIBUTES`, so a job
/// that duplicates the handle out of the host (same user: it may) still
/// cannot lift its limits, kill-on-close or breakaway rules.
const JOB_OBJECT_ASSIGN_PROCESS: u32 = 0x0001;
const JOB_OBJECT_QUERY: u32 = 0x0004;
const JOB_OBJECT_TERMINATE: u32 = 0x0008;

/// A job object (shared by the spawn and the tree; the kernel kills its
/// processes when the last handle closes).
#[derive(Clone)]
pub(crate) struct JobObject(Arc<OwnedHandle>);

impl JobObject {
    pub fn new() -> io::Result<Self> {
        // SAFETY: an anonymous job object with default security.
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh handle we own.
        Ok(Self(Arc::new(unsafe {
            OwnedHandle::from_raw_handle(handle)
        })))
    }

    /// The same job object through a handle without the right to change
    /// it; the full handle is closed.
    pub fn restrict(self) -> io::Result<Self> {
        let mut restricted: HANDLE = std::ptr::null_mut();
        // SAFETY: duplicates our own valid handle within this process.
        let ok = unsafe {
            DuplicateHandle(
                GetCurrentProcess(),
                self.raw(),
                GetCurrentProcess(),
                &mut restricted,
                JOB_OBJECT_ASSIGN_PROCESS | JOB_OBJECT_QUERY | JOB_OBJECT_TERMINATE,
                0,
                0,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh handle we own; the full one closes when `self` drops.
        Ok(Self(Arc::new(unsafe {
            OwnedHandle::from_raw_handle(restricted)
        })))
    }

    fn raw(&self) -> HANDLE {
        self.0.as_raw_handle() as HANDLE
    }

    fn query<T: Default>(&self, class: JOBOBJECTINFOCLASS) -> Option<T> {
        let mut info = T::default();
        // SAFETY: the class's structure is `T`, of the size given.
        let ok = unsafe {
            QueryInformationJobObject(
                self.raw(),
                class,
                &mut info as *mut T as *mut _,
                std::mem::size_of::<T>() as u32,
                std::ptr::null_mut(),
            )
        };
        (ok != 0).then_some(info)
    }

    fn set_extended(&self, info: &JOBOBJECT_EXTENDED_LIMIT_INFORMATION) -> io::Result<()> {
        // SAFETY: an extended limit structure of the size given.
        let ok = unsafe {
            SetInformationJobObject(
                self.raw(),
                JobObjectExtendedLimitInformation,
                info as *const _ as *const _,
                std::mem::size_of_val(info) as u32,
            )
        };
        if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Kill-on-close, no crash dialogs, and the plan's limits.
    pub(super) fn set_limits(&self, plan: &Plan, support: &Support) -> Limits {
        let l = &plan.limits;
        let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        let base = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION;
        let basic = &mut info.BasicLimitInformation;
        basic.LimitFlags = base;
        if let Limit::Value(n) = l.processes.value {
            basic.LimitFlags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
            basic.ActiveProcessLimit = n.min(u32::MAX as u64) as u32;
        }
        if let Limit::Value(secs) = l.cpu_secs.value {
            basic.LimitFlags |= JOB_OBJECT_LIMIT_PROCESS_TIME;
            // In 100-nanosecond units.
            basic.PerProcessUserTimeLimit =
                secs.saturating_mul(10_000_000).min(i64::MAX as u64) as i64;
        }
        if let Limit::Value(n) = l.memory.value {
            info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
            info.JobMemoryLimit = n.min(usize::MAX as u64) as usize;
        }
        match self.set_extended(&info) {
            Ok(()) => Limits {
                kill_on_close: true,
                enforced: if support.wine { Err(WINE) } else { Ok(()) },
                problem: None,
            },
            Err(e) => {
                let mut fallback = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
                fallback.BasicLimitInformation.LimitFlags = base;
                let kill_on_close = self.set_extended(&fallback).is_ok();
                Limits {
                    kill_on_close,
                    enforced: Err(REFUSED),
                    problem: Some(format!("the job object refused its limits: {e}")),
                }
            }
        }
    }

    /// Puts a (suspended) process into the job object.
    pub fn assign(&self, child: &std::process::Child) -> io::Result<()> {
        use std::os::windows::io::AsRawHandle;
        // SAFETY: both handles are valid for the call.
        let ok = unsafe { AssignProcessToJobObject(self.raw(), child.as_raw_handle() as HANDLE) };
        if ok == 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Ends every process in the job object.
    pub fn terminate(&self) {
        // SAFETY: a valid job handle.
        unsafe { TerminateJobObject(self.raw(), 1) };
    }

    /// Pids of the processes in the job object now.
    pub fn members(&self) -> Vec<i32> {
        // JOBOBJECT_BASIC_PROCESS_ID_LIST: two u32 counts, then the ids as
        // usize; grown until every id fits.
        let header = 8 / std::mem::size_of::<usize>();
        let mut room = 256;
        loop {
            let mut list = vec![0usize; header + room];
            // SAFETY: a buffer of the size given, aligned for usize.
            let ok = unsafe {
                QueryInformationJobObject(
                    self.raw(),
                    JobObjectBasicProcessIdList,
                    list.as_mut_ptr().cast(),
                    (list.len() * std::mem::size_of::<usize>()) as u32,
                    std::ptr::null_mut(),
                )
            };
            // SAFETY: the first eight bytes are the two counts.
            let (assigned, listed) = unsafe {
                let counts = list.as_ptr() as *const u32;
                (*counts as usize, *counts.add(1) as usize)
            };
            let more = io::Error::last_os_error().raw_os_error() == Some(ERROR_MORE_DATA as i32);
            if ok == 0 && more && room < 1 << 20 {
                room = assigned.max(room * 2) + 16;
                continue;
            }
            if ok == 0 {
                return Vec::new();
            }
            let n = listed.min(room);
            return list[header..header + n].iter().map(|p| *p as i32).collect();
        }
    }

    /// How many processes ever ran in the job object.
    pub fn total_processes(&self) -> Option<u32> {
        self.query::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>(JobObjectBasicAccountingInformation)
            .map(|a| a.TotalProcesses)
    }

    /// Peak memory committed by the whole job.
    pub fn peak_memory(&self) -> Option<u64> {
        self.query::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>(JobObjectExtendedLimitInformation)
            .map(|i| i.PeakJobMemoryUsed as u64)
    }
}

/// Resumes every thread of a process created suspended.
pub(crate) fn resume(pid: u32) -> io::Result<()> {
    // SAFETY: a thread snapshot, walked with a correctly sized entry; every
    // handle opened here is closed here.
    unsafe {
        let snapshot = CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
        if snapshot == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        let snapshot = OwnedHandle::from_raw_handle(snapshot);
        let mut entry = THREADENTRY32 {
            dwSize: std::mem::size_of::<THREADENTRY32>() as u32,
            ..Default::default()
        };
        let mut resumed = false;
        let mut more = Thread32First(snapshot.as_raw_handle() as HANDLE, &mut entry) != 0;
        while more {
            if entry.th32OwnerProcessID == pid {
                let thread = OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID);
                if thread.is_null() {
                    return Err(io::Error::last_os_error());
                }
                let thread = OwnedHandle::from_raw_handle(thread);
                if ResumeThread(thread.as_raw_handle() as HANDLE) == u32::MAX {
                    return Err(io::Error::last_os_error());
                }
                resumed = true;
            }
            more = Thread32Next(snapshot.as_raw_handle() as HANDLE, &mut entry) != 0;
        }
        if resumed {
            Ok(())
        } else {
            Err(io::Error::other("no thread of the new process was found"))
        }
    }
}

/// One job's process tree: its job object.
pub(crate) struct Tree {
    pub leader_start: u64,
    pub next_scan: Instant,
    job: Option<JobObject>,
}

impl Tree {
    pub fn new(job: Option<JobObject>) -> Self {
        Self {
            leader_start: 0,
            next_scan: Instant::now(),
            job,
        }
    }

    /// No scan is needed: the job object lists the members.
    pub fn snapshot() -> Snapshot {
        Snapshot::default()
    }

    /// Nothing to forget: no zombie scan here.
    pub fn leader_reaped(&self) {}

    /// The job object lists its members exactly.
    pub fn exact(&self) -> bool {
        true
    }

    /// Nothing to track between samples.
    pub fn track(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) {}

    /// Pids in the job object.
    pub fn member_pids(&mut self, _: &Snapshot, _: HostProcess, _: &HashSet<i32>) -> Vec<i32> {
        self.job
            .as_ref()
            .map(JobObject::members)
            .unwrap_or_default()
    }

    /// Windows has no polite stop for a windowless console program: false,
    /// so the caller ends the tree at once.
    pub fn terminate(&mut self, _: HostProcess, _: &HashSet<i32>) -> bool {
        false
    }

    /// Ends the whole job object; returns what was in it.
    pub fn kill_all(&mut self, _: HostProcess, _: &HashSet<i32>) -> Vec<ProcessId> {
        let Some(job) = &self.job else {
            return Vec::new();
        };
        let members = job.members();
        job.terminate();
        members.into_iter().map(|p| (p, 0)).collect()
    }

    /// A job object's memory limit makes allocations fail rather than kill.
    pub fn oom_kills(&self) -> u64 {
        0
    }

    /// A job object's process limit makes process creation fail; it
    /// records no count of refusals.
    pub fn process_limit_hits(&self) -> u64 {
        0
    }

    pub fn memory_peak(&self) -> Option<u64> {
        self.job.as_ref().and_then(JobObject::peak_memory)
    }

    /// Ends what is left; the handle closes when the tree is dropped.
    pub fn dismantle(&mut self) -> Result<(), DismantleError> {
        if let Some(job) = &self.job {
            job.terminate();
        }
        Ok(())
    }

    /// Whether more than one process ever ran in the job.
    pub fn ever_forked(&self) -> bool {
        self.job
            .as_ref()
            .and_then(JobObject::total_processes)
            .is_none_or(|n| n > 1)
    }
}
