//! The job's private directory (`{tmp}`): created before the job's rules
//! name it, removed when the job ends — by dropping this guard, so no path
//! out of preparing or running a job can forget it.

use super::PrepareError;
use std::path::{Path, PathBuf};

/// The job's `{tmp}`; removed with everything in it when dropped.
#[derive(Debug)]
pub(crate) struct JobDir {
    path: Option<PathBuf>,
}

impl JobDir {
    /// Creates `path`, readable only by the host's user.
    pub fn create(path: &Path) -> Result<Self, PrepareError> {
        crate::platform::create_private_dir(path).map_err(|source| PrepareError::CreateJobDir {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: Some(path.to_path_buf()),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Removes the directory now, reporting a failure (dropping removes it
    /// silently).
    pub fn remove(mut self) -> std::io::Result<()> {
        match self.path.take() {
            Some(path) => match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}
