//! The decision on arbitrary requests against fixed policies: never a
//! panic, and every plan keeps the invariants (cwd in the repo, only the
//! policy's program, no denied variable).
#![no_main]

use arbitrary::Arbitrary;
use jobwarden::contract::JobSpawnRequest;
use jobwarden::decision::{DecisionContext, decide};
use jobwarden::policy::{Policy, builtin_deny_patterns};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    plugin: String,
    binary: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    timeout_secs: u64,
    label: String,
    host_env: Vec<(String, String)>,
}

const STRICT: &str = r#"
version = 1
search_path = ["/usr/bin", "/bin"]
[env]
inherit = ["LANG", "LC_*"]
allow = ["RUST_*", "FUZZ_?", "X*"]
deny = ["*KEY*"]
set = { PATH = "/usr/bin:/bin", HOME = "{tmp}" }
on_disallowed = "drop"
[limits]
timeout_secs = 60
max_timeout_secs = 600
on_long_timeout = "clamp"
[binaries.sh]
path = "/bin/sh"
[binaries.sh.args]
deny = ["-c*", "--*=*"]
max_count = 8
max_bytes = 256
[binaries.env]
[binaries.env.args]
subcommands = ["a", "b"]
[plugins.p]
binaries = ["sh", "env"]
[plugins."*"]
binaries = ["sh"]
"#;

struct Fixture {
    policies: Vec<Arc<Policy>>,
    repo: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let repo = std::env::temp_dir().join(format!("jobwarden-fuzz-repo-{}", std::process::id()));
        std::fs::create_dir_all(repo.join("src/deep")).unwrap();
        let repo = repo.canonicalize().unwrap();
        Fixture {
            policies: vec![
                Policy::embedded_default(),
                Policy::from_toml("strict.toml", STRICT).unwrap().policy,
            ],
            repo,
        }
    })
}

fuzz_target!(|input: Input| {
    let fixture = fixture();
    let policy = &fixture.policies[input.policy as usize % fixture.policies.len()];
    let job_tmp = fixture.repo.join(".job-tmp");
    let ctx = DecisionContext {
        repo: &fixture.repo,
        home: Some(Path::new("/home/fuzz")),
        job_tmp: &job_tmp,
        host_env: &input.host_env,
    };
    let mut request = JobSpawnRequest::new(input.binary, input.args).with_label(input.label);
    for (name, value) in input.env {
        request = request.with_env(name, value);
    }
    request.cwd = input.cwd;
    request.timeout_secs = input.timeout_secs;
    match decide(policy, &input.plugin, &request, &ctx) {
        Ok(plan) => {
            assert!(
                plan.cwd.starts_with(&fixture.repo),
                "{}",
                plan.cwd.display()
            );
            for name in plan.env.keys() {
                assert!(
                    !builtin_deny_patterns().iter().any(|p| p.matches(name)),
                    "{name} passed"
                );
            }
            assert!(plan.program.is_absolute());
            let _ = plan.to_string();
        }
        Err(denial) => {
            assert!(!denial.rule.is_empty());
            let _ = denial.to_string();
        }
    }
});
