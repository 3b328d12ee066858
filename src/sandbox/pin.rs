//! Pinned binaries: the sha256 a policy pins is checked against the very
//! file that will be executed, and hashes are cached by file identity so a
//! pinned binary is hashed once per change rather than once per job.

use crate::decision::{Denial, Plan};
use crate::policy::Sourced;
use crate::sandbox::PrepareError;
use std::collections::HashMap;
use std::fs::File;
use std::io;

/// Hashes of binaries, keyed by file identity (see
/// [`crate::platform::file_identity`]; where the platform has none that a
/// user cannot forge, nothing is cached).
#[derive(Debug, Default)]
pub struct HashCache {
    entries: HashMap<crate::platform::FileIdentity, [u8; 32]>,
}

impl HashCache {
    /// The sha256 of `file`, from the cache while its identity is unchanged.
    pub fn get_or_hash(&mut self, file: &File) -> io::Result<[u8; 32]> {
        let Some(key) = crate::platform::file_identity(&file.metadata()?) else {
            return sha256_of(file);
        };
        if let Some(hash) = self.entries.get(&key) {
            return Ok(*hash);
        }
        let hash = sha256_of(file)?;
        if self.entries.len() > 256 {
            self.entries.clear();
        }
        self.entries.insert(key, hash);
        Ok(hash)
    }
}

/// Refuses the job when `file` (the program, open) does not hash to the
/// policy's pin.
pub(crate) fn check_pin(
    plan: &Plan,
    pin: &Sourced<[u8; 32]>,
    file: &File,
    hashes: &mut HashCache,
) -> Result<(), PrepareError> {
    let actual = hashes
        .get_or_hash(file)
        .map_err(|source| PrepareError::HashProgram {
            path: plan.program.clone(),
            source,
        })?;
    if actual == pin.value {
        return Ok(());
    }
    Err(PrepareError::Denied(Denial::new(
        pin.key.clone(),
        format!(
            "{} has sha256 {}, but the policy pins {}",
            plan.program.display(),
            crate::policy::hex(&actual),
            crate::policy::hex(&pin.value)
        ),
        format!("check the new file, then update `{}`", pin.key),
    )))
}

/// sha256 of an open file, streamed.
pub fn sha256_of(mut file: &File) -> io::Result<[u8; 32]> {
    use sha2::Digest;
    use std::io::Read;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
