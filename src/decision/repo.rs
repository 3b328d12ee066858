//! Which directories may serve as `{repo}`. The repository is usually
//! writable by jobs, so a root that is really `/`, a home directory or a
//! system directory would hand jobs the machine — a job run from `~` could
//! read `~/.ssh`. Pure: path comparisons only.

use std::path::Path;

/// Top-level system directories (and their exact paths only: a project
/// below `/opt` or `/srv` is fine).
const SYSTEM_DIRS: &[&str] = &[
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
    "/Users",
    "/System",
    "/Library",
    "/Applications",
];

/// Why `repo` (canonical) must not be a job's repository, if it must not.
pub fn repo_refusal(repo: &Path, home: Option<&Path>) -> Option<String> {
    if SYSTEM_DIRS.iter().any(|d| repo == Path::new(d)) {
        return Some(format!(
            "{} is a system directory, not a repository: jobs would get it as `{{repo}}`, usually writable",
            repo.display()
        ));
    }
    if let Some(home) = home
        && (repo == home || home.starts_with(repo))
    {
        return Some(format!(
            "{} is {} home directory, not a repository: jobs would get it as `{{repo}}`, usually writable, with its dotfiles and keys",
            repo.display(),
            if repo == home { "the" } else { "above the" }
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_homes_and_system_directories_are_refused_their_children_are_not() {
        let home = Path::new("/home/ana");
        for refused in ["/", "/usr", "/etc", "/tmp", "/home", "/home/ana"] {
            assert!(
                repo_refusal(Path::new(refused), Some(home)).is_some(),
                "{refused}"
            );
        }
        for allowed in [
            "/home/ana/src/app",
            "/tmp/build-1",
            "/srv/git/app",
            "/opt/project",
        ] {
            assert_eq!(
                repo_refusal(Path::new(allowed), Some(home)),
                None,
                "{allowed}"
            );
        }
        assert_eq!(repo_refusal(Path::new("/home/bob"), None), None);
    }
}
