//! Command-line interface. Each subcommand has its own file; this one holds
//! the argument definitions and what they share.

// First: its macros are used by every subcommand's file.
#[macro_use]
mod output;
mod check;
mod doctor;
mod error;
mod explain;
mod learn;
mod run;
mod signals;
mod test;
mod timings;

pub(crate) use error::{CliError, Failure};

use clap::{Args, Parser, Subcommand};
use jobwarden::policy::{EMBEDDED_DEFAULT, EMBEDDED_DEFAULT_NAME, LoadedPolicy, Policy};
use jobwarden::sandbox::SupportOptions;
use jobwarden::{JobSpawnRequest, decision::DecisionContext};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "jobwarden",
    version,
    about = "Runs plugin-requested jobs under an admin-written trust policy",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    simulate: Simulate,
    /// Never move this process into a delegated cgroup of its own (a
    /// non-root user's way to whole-tree limits; `doctor` shows it).
    #[arg(long, global = true)]
    no_cgroup_delegation: bool,
}

/// Testing aids that make this machine look weaker than it is, to prove
/// that reports and refusals match the kernel's answers. Hidden from
/// `--help`; never read from the environment.
#[derive(Args, Clone, Default)]
struct Simulate {
    /// Pretend the kernel's Landlock ABI is at most N (0: no Landlock).
    #[arg(long, global = true, hide = true, value_name = "N")]
    simulate_landlock_abi: Option<u32>,
    /// Pretend this machine has no usable cgroups.
    #[arg(long, global = true, hide = true)]
    simulate_no_cgroups: bool,
    /// Enable this cgroup v2 controller too in a delegated cgroup, and
    /// count it as a reason to move there (repeatable): lets a machine
    /// whose unified hierarchy lacks pids and memory test delegation.
    #[arg(long, global = true, hide = true, value_name = "CONTROLLER")]
    test_delegate_controller: Vec<String>,
}

impl Simulate {
    fn options(&self) -> SupportOptions {
        SupportOptions {
            landlock_abi_max: self.simulate_landlock_abi,
            no_cgroups: self.simulate_no_cgroups,
            delegation_extra_controllers: self.test_delegate_controller.clone(),
            ..SupportOptions::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Validate policy files and judge them against this machine: exit 0
    /// when valid (warnings allowed), 1 when not.
    Check {
        /// Policy files to check.
        #[arg(required = true, value_name = "POLICY")]
        policies: Vec<PathBuf>,
        /// The policy is for other machines: a binary path that is not a
        /// program here, or a sha256 pin that does not match the file here,
        /// is a warning instead of an error.
        #[arg(long)]
        portable: bool,
    },
    /// Show what a request would run, or which rule refuses it:
    /// exit 0 allowed, 1 denied, 2 usage or policy error.
    Explain {
        #[command(flatten)]
        job: JobArgs,
        /// Print the plan or denial as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What this machine can enforce, probed with real jobs; with --policy,
    /// what each of its jobs would get (exit 1 when a required policy
    /// could not be honoured, or a probe shows confinement failing).
    Doctor {
        /// A policy to assess against this machine.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Print the AppArmor profile that lets this binary give jobs their
        /// own mount namespace where AppArmor restricts user namespaces
        /// (Ubuntu 23.10 and later), naming this binary's path; nothing else.
        #[arg(long, conflicts_with_all = ["policy", "json"])]
        apparmor_profile: bool,
    },
    /// Print the JSON Schema of the policy format (for editors: `#:schema`).
    Schema,
    /// Run policy test files: exit 0 when every case passed, 1 when one
    /// failed, 2 when a file is unusable.
    Test {
        /// Test files (see policy/README.md for the format).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Fail live cases this machine cannot confine (or prove) instead
        /// of skipping them: for CI, where a run that could not confine
        /// must be red. Cases whose program is not installed still skip.
        #[arg(long)]
        require_live: bool,
        /// How to print the results: `text` (one line per case), `junit`
        /// (JUnit XML, as CI systems render it) or `json` (one object).
        #[arg(long, value_enum, default_value = "text")]
        format: test::Format,
        /// Run only the cases whose name contains NAME (repeatable; a case
        /// runs if it matches any).
        #[arg(long, value_name = "NAME")]
        filter: Vec<String>,
    },
    /// Run one job under the policy: exit with its status; 124 timeout,
    /// 125 jobwarden error, 126 denied, 128+N signal, 130 Ctrl-C.
    Run {
        #[command(flatten)]
        job: JobArgs,
        /// Print every event as one JSON line on stdout, in the wire format of
        /// progit-plugin-sdk 0.4: `{"type", "job_id", "data": {…}}`.
        #[arg(long)]
        json: bool,
        /// Observe the job and end it with each access the sandbox refused,
        /// and the policy key that would allow it (the job stays confined;
        /// observed calls are slower).
        #[arg(long)]
        why: bool,
    },
    /// Run one trusted command observed, without the path and port
    /// restrictions that would stop it, and print the smallest policy
    /// addition that lets exactly that run pass (exit: the command's own;
    /// 125 jobwarden error; 126 the policy refuses the request).
    Learn {
        #[command(flatten)]
        job: JobArgs,
        /// Also write the base policy with the addition merged in to FILE
        /// (it may be the base policy itself).
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
    },
}

/// The request flags shared by `explain` and `run`.
#[derive(Args, Clone)]
pub(crate) struct JobArgs {
    /// Policy file (default: the embedded default policy).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Repository root (default: the git top-level of the current directory,
    /// else the current directory).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// The plugin the request comes from.
    #[arg(long, value_name = "NAME", default_value = "cli")]
    pub plugin: String,
    /// Working directory, relative to the repo or absolute inside it.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// A variable to inject (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Timeout in seconds (0 = the policy's default).
    #[arg(long = "timeout", value_name = "SECS", default_value_t = 0)]
    pub timeout_secs: u64,
    /// Label of the job.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// The binary (a name the policy trusts) and its arguments.
    #[arg(last = true, required = true, value_name = "BINARY [ARGS]...")]
    pub command: Vec<String>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{text}` is not K=V")),
    }
}

pub fn main() -> ExitCode {
    let mut timings = timings::Timings::start();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => error_with_tips(error).exit(),
    };
    timings.mark("args");
    let mut support = cli.simulate.options();
    if cli.no_cgroup_delegation {
        support.cgroup_delegation = jobwarden::sandbox::CgroupDelegation::Never;
    }
    let result = match cli.command {
        Command::Check { policies, portable } => Ok(check::run(&policies, portable)),
        Command::Explain { job, json } => explain::run(&job, json, &support),
        Command::Run { job, json, why } => run::run(&job, json, why, &support, &mut timings),
        Command::Learn { job, write } => learn::run(&job, write.as_deref(), &support),
        Command::Test {
            files,
            require_live,
            format,
            filter,
        } => Ok(test::run(
            &files,
            &test::Options {
                require_live,
                format,
                filter,
            },
            &support,
        )),
        Command::Doctor {
            apparmor_profile: true,
            ..
        } => Ok(doctor::apparmor_profile()),
        Command::Doctor { policy, json, .. } => doctor::run(policy.as_deref(), json, &support),
        Command::Schema => {
            let schema = jobwarden::policy::schema::json_schema();
            outln!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("a schema serialises")
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(Failure::report)
}

/// A command-line error, with a tip where a common mistake caused it:
/// `jobwarden run git status` (clap reads `git` as an unknown argument)
/// needs `--` before the command.
fn error_with_tips(mut error: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(position) = args
        .iter()
        .position(|a| a == "run" || a == "explain" || a == "learn")
    else {
        return error;
    };
    let misread = matches!(
        error.kind(),
        ErrorKind::UnknownArgument | ErrorKind::MissingRequiredArgument
    );
    if !misread || args.iter().any(|a| a == "--") {
        return error;
    }
    // The flags jobwarden knows stay before `--`; the first word that is
    // not one of them (or its value) starts the command.
    let subcommand = &args[position];
    let mut flags = Vec::new();
    let mut rest = args[position + 1..].iter().peekable();
    while let Some(arg) = rest.next() {
        let takes_value = [
            "--policy",
            "--repo",
            "--plugin",
            "--cwd",
            "--env",
            "--timeout",
            "--label",
            "--write",
        ]
        .contains(&arg.as_str());
        // A command never starts with `-`: every such word is jobwarden's
        // (`--json`, `--why`, `--env=K=V`).
        if arg.starts_with('-') && !takes_value {
            flags.push(arg.clone());
        } else if takes_value {
            flags.push(arg.clone());
            flags.extend(rest.next().cloned());
        } else {
            let command: Vec<String> = std::iter::once(arg.clone()).chain(rest.cloned()).collect();
            let mut suggested = vec!["jobwarden".to_string(), subcommand.clone()];
            suggested.extend(flags);
            suggested.push("--".into());
            suggested.extend(command.iter().map(|w| jobwarden::decision::shell_quote(w)));
            error.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![
                    format!(
                        "the command goes after `--`, so its own options are not read as jobwarden's: `{}`",
                        suggested.join(" ")
                    )
                    .into(),
                ]),
            );
            return error;
        }
    }
    error
}

/// Loads `--policy` or the embedded default, printing its warnings.
pub(crate) fn load_policy(path: Option<&Path>) -> Result<LoadedPolicy, CliError> {
    let loaded = match path {
        Some(path) => Policy::load(path),
        None => Policy::from_toml(EMBEDDED_DEFAULT_NAME, EMBEDDED_DEFAULT),
    }?;
    if !loaded.warnings.diagnostics.is_empty() {
        err!("{}", loaded.warnings.render());
    }
    Ok(loaded)
}

/// The repository root: `--repo`, else the git top-level of the current
/// directory (outside a work tree there is none: an error, never the
/// current directory); always canonical, never `/`, a home or a system
/// directory.
pub(crate) fn repo_root(flag: Option<&Path>) -> Result<PathBuf, CliError> {
    let start = match flag {
        Some(dir) => dir.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| CliError::Repo(format!("cannot read the current directory: {e}")))?,
    };
    let canonical = start.canonicalize().map_err(|e| {
        CliError::Repo(format!(
            "cannot use {} as the repository: {e}",
            start.display()
        ))
    })?;
    if !canonical.is_dir() {
        return Err(CliError::Repo(format!(
            "{} is not a directory",
            canonical.display()
        )));
    }
    let repo = if flag.is_some() {
        canonical
    } else {
        canonical
            .ancestors()
            .find(|dir| dir.join(".git").exists())
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                CliError::Repo(format!(
                    "{} is not inside a git work tree, so there is no repository to run in; give one with `--repo DIR` (it becomes the job's `{{repo}}`, writable under most policies)",
                    canonical.display()
                ))
            })?
    };
    let home = std::env::var_os("HOME").and_then(|h| PathBuf::from(h).canonicalize().ok());
    if let Some(why) = jobwarden::decision::repo_refusal(&repo, home.as_deref()) {
        return Err(CliError::Repo(format!(
            "refusing {} as the repository: {why}",
            repo.display()
        )));
    }
    Ok(repo)
}

/// The host facts a decision needs, captured once.
pub(crate) struct HostFacts {
    pub repo: PathBuf,
    pub home: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

impl HostFacts {
    pub fn capture(repo: PathBuf) -> Self {
        Self {
            repo,
            home: std::env::var_os("HOME").map(PathBuf::from),
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    pub fn context<'a>(&'a self, job_tmp: &'a Path) -> DecisionContext<'a> {
        DecisionContext {
            repo: &self.repo,
            home: self.home.as_deref(),
            job_tmp,
            host_env: &self.env,
        }
    }
}

/// Builds the request from the flags. A BINARY given as a path is mapped back
/// to the policy's name for that file, when the plugin may run it.
pub(crate) fn build_request(
    args: &JobArgs,
    policy: &Policy,
    ctx: &DecisionContext<'_>,
) -> Result<JobSpawnRequest, CliError> {
    let mut command = args.command.iter();
    let given = command.next().expect("clap requires a binary").clone();
    let binary = if given.contains('/') {
        name_for_path(policy, &args.plugin, &given, ctx).map_err(CliError::Request)?
    } else {
        given
    };
    Ok(JobSpawnRequest {
        label: args.label.clone().unwrap_or_else(|| binary.clone()),
        binary,
        args: command.cloned().collect(),
        cwd: args.cwd.clone(),
        env: args.env.iter().cloned().collect::<HashMap<_, _>>(),
        timeout_secs: args.timeout_secs,
    })
}

fn name_for_path(
    policy: &Policy,
    plugin: &str,
    given: &str,
    ctx: &DecisionContext<'_>,
) -> Result<String, String> {
    let real = Path::new(given)
        .canonicalize()
        .map_err(|e| format!("{given}: {e}"))?;
    let allowed = policy
        .plugin_rule(plugin)
        .map(|p| {
            p.binaries
                .iter()
                .map(|b| b.value.clone())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    // The binary named like the file is the likely match; try it first.
    let file_name = real
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let given_name = Path::new(given)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let mut ordered = allowed;
    ordered.sort_by_key(|name| !(name == &file_name || name == &given_name));
    ordered
        .into_iter()
        .find(|name| jobwarden::decision::program_for(policy, name, ctx).is_ok_and(|p| p == real))
        .ok_or_else(|| {
            format!(
                "{given} is not a binary plugin `{plugin}` may run under this policy; requests name trusted binaries (see `[binaries]`), not paths"
            )
        })
}

/// A representative `{tmp}` for commands that do not start a job.
pub(crate) fn example_job_tmp() -> PathBuf {
    std::env::temp_dir()
        .join(format!("jobwarden-{}", std::process::id()))
        .join("job-1")
}
