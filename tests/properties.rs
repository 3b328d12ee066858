//! Property tests: invariants that must hold for every input, not just the
//! ones a table lists.
//!
//! - the working directory of a plan is never outside the repository,
//!   whatever mix of `..`, `.`, repeated slashes, absolute paths and
//!   symlinks (inward, outward, up, looping) the request names;
//! - no variable whose name matches a deny pattern (the policy's or the
//!   built-in list) reaches a plan, whatever the allow and inherit lists say;
//! - sanitised output holds ESC only as the start of a complete SGR
//!   sequence (colour mode) and none at all (strip mode), however the input
//!   is split into chunks;
//! - splitting into lines and joining with the reported separators gives
//!   back the input byte for byte, with every piece within the limit.

// Unix only: the repository fixtures use Unix paths and symlinks.
#![cfg(unix)]

use jobwarden::contract::JobSpawnRequest;
use jobwarden::decision::{DecisionContext, decide};
use jobwarden::output::lines::{LineEnd, LineSplitter};
use jobwarden::output::sanitize::{Sanitizer, Utf8Stream};
use jobwarden::policy::{Policy, Sanitize, builtin_deny_patterns};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

// ---- the working directory -------------------------------------------------

/// A repository with directories and every kind of symlink, next to a
/// directory it must not lead into.
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    policy: Policy,
}

fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().canonicalize().unwrap();
        let root = base.join("repo");
        let outside = base.join("outside");
        for d in [root.join("a/b"), root.join("c"), outside.join("x")] {
            std::fs::create_dir_all(d).unwrap();
        }
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        link(Path::new(".."), "up");
        link(&outside, "out");
        link(Path::new("../outside/x"), "rel_out");
        link(Path::new("a"), "to_a");
        link(&root.join("a/b"), "abs_in");
        link(Path::new("/"), "slash");
        link(Path::new("loop"), "loop");
        std::os::unix::fs::symlink("../..", root.join("a/b/upup")).unwrap();
        let policy = Policy::from_toml(
            "props.toml",
            "version = 1\n[binaries.t]\npath = \"/bin/sh\"\n[plugins.p]\nbinaries = [\"t\"]\n",
        )
        .unwrap()
        .policy
        .as_ref()
        .clone();
        Repo {
            _dir: dir,
            root,
            policy,
        }
    })
}

fn cwd_request() -> impl Strategy<Value = String> {
    let part = prop::sample::select(vec![
        ".", "..", "a", "b", "c", "up", "out", "rel_out", "to_a", "abs_in", "slash", "loop",
        "upup", "missing", "", "x",
    ]);
    let sep = prop::sample::select(vec!["/", "//", "/./"]);
    (
        prop::collection::vec((part, sep), 0..7),
        prop::sample::select(vec!["", "/", "repo"]),
    )
        .prop_map(|(parts, start)| {
            let mut path = match start {
                "repo" => format!("{}/", repo().root.display()),
                other => other.to_string(),
            };
            for (part, sep) in parts {
                path.push_str(part);
                path.push_str(sep);
            }
            path
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_working_directory_never_leaves_the_repository(cwd in cwd_request()) {
        let repo = repo();
        let tmp = repo.root.join("tmp");
        let ctx = DecisionContext { repo: &repo.root, home: None, job_tmp: &tmp, host_env: &[] };
        let request = JobSpawnRequest::new("t", Vec::<String>::new()).with_cwd(cwd.clone());
        if let Ok(plan) = decide(&repo.policy, "p", &request, &ctx) {
            prop_assert!(plan.cwd.starts_with(&repo.root), "{cwd:?} → {}", plan.cwd.display());
            // And it is the real path, not one that a symlink could redirect.
            prop_assert_eq!(plan.cwd.canonicalize().unwrap(), plan.cwd.clone());
        }
    }
}

/// The property above has teeth: the fixture offers ways both in and out.
#[test]
fn the_fixture_has_symlinks_that_stay_in_and_ones_that_lead_out() {
    let repo = repo();
    let tmp = repo.root.join("tmp");
    let ctx = DecisionContext {
        repo: &repo.root,
        home: None,
        job_tmp: &tmp,
        host_env: &[],
    };
    let cwd = |path: &str| {
        let request = JobSpawnRequest::new("t", Vec::<String>::new()).with_cwd(path);
        decide(&repo.policy, "p", &request, &ctx).map(|plan| plan.cwd)
    };
    assert_eq!(cwd("to_a//b/").unwrap(), repo.root.join("a/b"));
    assert_eq!(cwd("up/repo/./c").unwrap(), repo.root.join("c"));
    assert_eq!(cwd("abs_in/..").unwrap(), repo.root.join("a"));
    assert_eq!(cwd("a/b/upup").unwrap(), repo.root);
    for out in [
        "out",
        "rel_out",
        "up",
        "slash/tmp",
        "a/b/upup/..",
        "loop",
        "/",
    ] {
        assert!(cwd(out).is_err(), "{out} must be refused");
    }
}

// ---- the environment -------------------------------------------------------

fn env_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Z][A-Z0-9_]{0,10}",
        prop::sample::select(vec![
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "DYLD_INSERT_LIBRARIES",
            "BASH_ENV",
            "ENV",
            "GITHUB_TOKEN",
            "MY_SECRET_KEY",
            "DB_PASSWORD",
            "AWS_ACCESS_KEY_ID",
            "PATH",
            "HOME",
        ])
        .prop_map(String::from),
    ]
}

fn env_glob() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("*".to_string()),
        "[A-Z_]{1,6}\\*",
        "\\*[A-Z_]{1,6}",
        "[A-Z][A-Z0-9_]{0,8}",
    ]
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|g| format!("\"{g}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn no_denied_name_ever_reaches_a_plan(
        allow in prop::collection::vec(env_glob(), 0..4),
        inherit in prop::collection::vec(env_glob(), 0..4),
        deny in prop::collection::vec(env_glob(), 0..3),
        set in prop::collection::vec(env_name(), 0..3),
        host in prop::collection::vec((env_name(), "[a-z]{0,4}"), 0..8),
        injected in prop::collection::vec((env_name(), "[a-z]{0,4}"), 0..6),
        drop in any::<bool>(),
    ) {
        // The loader refuses repeated entries: keep each once.
        let unique = |list: Vec<String>| -> Vec<String> {
            list.into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect()
        };
        let (allow, inherit, deny) = (unique(allow), unique(inherit), unique(deny));
        let set: Vec<String> = unique(set).iter().map(|n| format!("{n} = \"v\"")).collect();
        let text = format!(
            "version = 1\n[env]\nallow = [{}]\ninherit = [{}]\ndeny = [{}]\non_disallowed = \"{}\"\n[env.set]\n{}\n[binaries.t]\npath = \"/bin/sh\"\n[plugins.p]\nbinaries = [\"t\"]\n",
            quoted(&allow), quoted(&inherit), quoted(&deny),
            if drop { "drop" } else { "reject" },
            set.join("\n"),
        );
        let policy = match Policy::from_toml("env.toml", &text) {
            Ok(loaded) => loaded.policy,
            Err(e) => return Err(TestCaseError::fail(format!("a valid policy was refused: {e}\n{text}"))),
        };
        let dir = std::env::temp_dir();
        let ctx = DecisionContext { repo: &dir, home: None, job_tmp: &dir, host_env: &host };
        let mut request = JobSpawnRequest::new("t", Vec::<String>::new());
        for (name, value) in &injected {
            request = request.with_env(name.clone(), value.clone());
        }
        let denied = |name: &str| {
            builtin_deny_patterns().iter().any(|p| p.matches(name))
                || deny.iter().any(|g| glob::Pattern::new(g).unwrap().matches(name))
        };
        if let Ok(plan) = decide(&policy, "p", &request, &ctx) {
            for name in plan.env.keys() {
                prop_assert!(!denied(name), "{name} passed; policy:\n{text}");
            }
        }
    }
}

// ---- the sanitiser ---------------------------------------------------------

fn terminal_bytes() -> impl Strategy<Value = Vec<u8>> {
    let atom = prop_oneof![
        3 => prop::sample::select(vec![
            &b"\x1b"[..], b"\x1b[", b"[", b"31", b"1;32", b";", b"m", b"\x1b[0m", b"\x1b[38;5;196m",
            b"\x1b]0;title\x07", b"\x1b]8;;http://x\x1b\\", b"\x07", b"\x1bP", b"\x1b\\", b"\x1b[?25l",
            b"\x1b[2J", b"\x1b[1;31", b"\x1b[>c", b"\xc2\x9b31m", b"\x1bc", b"\x1b(B", b"\r", b"\n",
            b"\t", b"\x00", b"\x7f", b"\xe2\x82\xac", b"\xff", b"\xc2",
        ]).prop_map(<[u8]>::to_vec),
        2 => prop::collection::vec(any::<u8>(), 1..4),
        2 => "[ -~]{1,8}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(atom, 0..40).prop_map(|atoms| atoms.concat())
}

/// Feeds `bytes` through UTF-8 decoding and the sanitiser in the chunks
/// given by `cuts` (a streaming split anywhere, even inside a sequence).
fn sanitize_streamed(bytes: &[u8], cuts: &[usize], mode: Sanitize) -> String {
    let mut decoder = Utf8Stream::default();
    let mut sanitizer = Sanitizer::new(mode, true);
    let (mut text, mut out) = (String::new(), String::new());
    let mut at = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    bounds.sort_unstable();
    bounds.push(bytes.len());
    for end in bounds {
        text.clear();
        decoder.push(&bytes[at..end.max(at)], &mut text);
        sanitizer.push(&text, &mut out);
        at = end.max(at);
    }
    text.clear();
    decoder.finish(&mut text);
    sanitizer.push(&text, &mut out);
    out
}

/// Every ESC starts a complete SGR sequence: ESC [ params m.
fn only_sgr(out: &str) -> Result<(), String> {
    let bytes = out.as_bytes();
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|b| *b == 0x1b) {
        let start = i + off;
        let rest = &bytes[start + 1..];
        let params = rest
            .iter()
            .skip(1)
            .take_while(|b| b.is_ascii_digit() || **b == b';' || **b == b':')
            .count();
        if rest.first() != Some(&b'[') || rest.get(1 + params) != Some(&b'm') {
            return Err(format!(
                "ESC not starting an SGR at byte {start}: {:?}",
                &out[start..]
            ));
        }
        i = start + 2 + params + 1;
    }
    if out.contains('\u{9b}') {
        return Err("an 8-bit CSI survived".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn colour_mode_keeps_only_complete_sgr_sequences(
        bytes in terminal_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let out = sanitize_streamed(&bytes, &cuts, Sanitize::Colors);
        prop_assert!(only_sgr(&out).is_ok(), "{}\ninput {:?}", only_sgr(&out).unwrap_err(), String::from_utf8_lossy(&bytes));
        prop_assert!(!out.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\x1b'), "{out:?}");
    }

    #[test]
    fn strip_mode_leaves_no_escape_at_all(
        bytes in terminal_bytes(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let out = sanitize_streamed(&bytes, &cuts, Sanitize::Strip);
        prop_assert!(!out.contains('\x1b') && !out.contains('\u{9b}'), "{out:?}");
        prop_assert!(!out.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{out:?}");
    }

    #[test]
    fn a_line_sanitised_whole_holds_the_same_guarantee(bytes in terminal_bytes()) {
        let line = String::from_utf8_lossy(&bytes).replace(['\n', '\r'], "");
        let out = Sanitizer::new(Sanitize::Colors, false).line(&line);
        prop_assert!(only_sgr(&out).is_ok(), "{}", only_sgr(&out).unwrap_err());
        let out = Sanitizer::new(Sanitize::Strip, false).line(&line);
        prop_assert!(!out.contains('\x1b'), "{out:?}");
    }
}

// ---- the line splitter -----------------------------------------------------

fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    let atom = prop_oneof![
        prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\r", b"\r\r\n", b"\n\r"])
            .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..20),
        "[a-z ]{1,30}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(atom, 0..30).prop_map(|atoms| atoms.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn splitting_then_joining_gives_back_every_byte(
        bytes in line_bytes(),
        max in 1usize..40,
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut splitter = LineSplitter::new(max);
        let mut joined = Vec::new();
        let mut longest = 0;
        let mut emit = |piece: &[u8], end: LineEnd| {
            longest = longest.max(piece.len());
            joined.extend_from_slice(piece);
            joined.extend_from_slice(end.separator());
        };
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        bounds.sort_unstable();
        bounds.push(bytes.len());
        let mut at = 0;
        for end in bounds {
            splitter.push(&bytes[at..end.max(at)], &mut emit);
            at = end.max(at);
        }
        splitter.finish(&mut emit);
        prop_assert_eq!(joined, bytes);
        // The documented floor: a piece can always hold one UTF-8 character.
        let limit = max.max(4);
        prop_assert!(longest <= limit, "a piece of {longest} bytes over the limit {limit}");
    }
}
