//! The spec and the spawner on Windows: the process is created suspended,
//! put into its job object, then resumed, so nothing it starts escapes the
//! job.

use super::io::{ExitWatch, Pipe};
use super::job::{self, JobObject, Tree};
use crate::decision::Plan;
use crate::sandbox::{JobDir, PrepareError, SpawnError, Spawned};
use std::fs::File;
use std::io::{self, PipeWriter};
use std::os::windows::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use windows_sys::Win32::System::Threading::{CREATE_NO_WINDOW, CREATE_SUSPENDED};

/// Everything the spawn needs, built in the parent.
pub(crate) struct Spec {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    stdout: PipeWriter,
    stderr: PipeWriter,
    output: (Pipe, Pipe),
    dir: JobDir,
    /// Job object layer: the job object the process joins before it runs.
    pub job: Option<JobObject>,
    /// Program layer: a pinned program, held open without write or delete
    /// sharing from the hash until the process has started.
    pub program_file: Option<File>,
}

impl Spec {
    /// The base of a spec: everything the plan says about the process itself.
    pub fn new(plan: &Plan, dir: JobDir) -> Result<Self, PrepareError> {
        let (stdout_r, stdout_w) = io::pipe().map_err(PrepareError::syscall("CreatePipe"))?;
        let (stderr_r, stderr_w) = io::pipe().map_err(PrepareError::syscall("CreatePipe"))?;
        Ok(Self {
            program: plan.program.clone(),
            args: plan.args.clone(),
            env: plan
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            cwd: checked_cwd(&plan.repo, &plan.cwd)?,
            stdout: stdout_w,
            stderr: stderr_w,
            output: (Pipe::new(stdout_r), Pipe::new(stderr_r)),
            dir,
            job: None,
            program_file: None,
        })
    }
}

/// Starts jobs: suspended, into their job object, then resumed.
pub(crate) struct Spawner;

impl Spawner {
    pub fn new() -> Result<Self, SpawnError> {
        Ok(Self)
    }

    pub fn spawn(&mut self, spec: Spec) -> Result<Spawned, SpawnError> {
        let Spec {
            program,
            args,
            env,
            cwd,
            stdout,
            stderr,
            output: (out, err),
            dir,
            job,
            program_file,
        } = spec;
        let mut command = Command::new(&program);
        command
            .args(&args)
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .creation_flags(CREATE_SUSPENDED | CREATE_NO_WINDOW);
        let mut child = command.spawn().map_err(SpawnError::Exec)?;
        drop(command);
        drop(program_file);
        let fail = |child: &mut std::process::Child, error: SpawnError| {
            let _ = child.kill();
            let _ = child.wait();
            Err(error)
        };
        if let Some(job) = &job
            && let Err(e) = job.assign(&child)
        {
            return fail(&mut child, SpawnError::Assign(e));
        }
        if let Err(e) = job::resume(child.id()) {
            return fail(&mut child, SpawnError::Resume(e));
        }
        let pid = child.id() as i32;
        Ok(Spawned {
            pid,
            exit: ExitWatch::new(child),
            tree: Tree::new(job),
            stdout: out,
            stderr: err,
            dir,
            observer: None,
        })
    }
}

/// The working directory, resolved again and checked to still be inside
/// the repository (a directory on the way may have been replaced by a link
/// since the decision), without the `\\?\` prefix `CreateProcess` dislikes.
fn checked_cwd(repo: &Path, dir: &Path) -> Result<PathBuf, PrepareError> {
    let resolve = |p: &Path| {
        std::fs::canonicalize(p).map_err(|source| PrepareError::OpenWorkingDir {
            path: p.to_path_buf(),
            source,
        })
    };
    let (repo, actual) = (resolve(repo)?, resolve(dir)?);
    if !actual.starts_with(&repo) {
        return Err(PrepareError::WorkingDirEscaped {
            path: dir.to_path_buf(),
            actual,
        });
    }
    let text = actual.to_string_lossy();
    Ok(match text.strip_prefix(r"\\?\") {
        Some(rest) if rest.as_bytes().get(1) == Some(&b':') => PathBuf::from(rest),
        _ => actual,
    })
}
