//! Every rule of the policy loader, one small policy per rule, with what
//! `jobwarden check` prints for it.
//!
//! `tests/policy_diagnostics.rs` shows whole broken files as an admin would
//! write them; this file pins each rule on its own (every diagnostic's code,
//! wording, span and notes, at its exact boundary), so a change to any rule
//! shows up as a snapshot difference. The cases avoid paths that differ
//! between machines, so the snapshot is the same everywhere.

use jobwarden::policy::{LoadError, Policy};

/// `(name, policy text)`. A policy that loads renders its warnings, if any,
/// after `loads`.
const CASES: &[(&str, &str)] = &[
    // ---- the document ------------------------------------------------
    ("toml_duplicate_key", "version = 1\nversion = 1\n"),
    ("version_wrong_type", "version = \"1\"\n"),
    ("version_zero", "version = 0\n"),
    ("empty_file", ""),
    ("top_not_a_table_key", "version = 1\nenv = 3\n"),
    ("unknown_top_key_far_from_any", "version = 1\nzzzzzz = 1\n"),
    (
        "enforcement_choices",
        "version = 1\nenforcement = \"best-effort\"\n",
    ),
    ("enforcement_far_off", "version = 1\nenforcement = \"x\"\n"),
    (
        "enforcement_wrong_type",
        "version = 1\nenforcement = true\n",
    ),
    (
        "search_path_placeholders",
        "version = 1\nsearch_path = [\"{repo}/bin\", \"{tmp}\", \"{home}/bin\", \"/usr/bin\"]\n",
    ),
    (
        "search_path_not_a_list",
        "version = 1\nsearch_path = \"/usr/bin\"\n",
    ),
    (
        "search_path_items",
        "version = 1\nsearch_path = [\"/usr/bin\", 3, \"/usr/bin\", \"bin\", \"/a/../b\", \"/a/{home}\", \"{repo\", \"{hme}/x\", \"{nope}/x\"]\n",
    ),
    // ---- binaries ----------------------------------------------------
    ("binaries_not_a_table", "version = 1\nbinaries = 1\n"),
    (
        "binary_names",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.\"a/b\"]\n[binaries.\"..\"]\n[binaries.\".\"]\n[binaries.\"\"]\n[binaries.ok-name_1.2]\n[binaries.\"c++\"]\n",
    ),
    ("binary_not_a_table", "version = 1\n[binaries]\ngit = 1\n"),
    (
        "binary_path",
        "version = 1\n[binaries.a]\npath = \"{tmp}/a\"\n[binaries.b]\npath = \"bin/b\"\n[binaries.c]\npath = 3\n[binaries.d]\npath = \"{repo}/../d\"\n",
    ),
    (
        "binary_sha256",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a]\nsha256 = \"abc\"\n[binaries.b]\nsha256 = \"sha256:zz00000000000000000000000000000000000000000000000000000000000000\"\n[binaries.c]\nsha256 = \"sha256:00000000000000000000000000000000000000000000000000000000000000\"\n[binaries.d]\nsha256 = 1\n",
    ),
    (
        "binary_no_path_no_search_path",
        "version = 1\n[binaries.a]\n[binaries.b]\npath = \"/bin/sh\"\n[binaries.c]\n",
    ),
    (
        "binary_missing_on_this_machine",
        "version = 1\n[binaries.a]\npath = \"/nonexistent/jobwarden-test/a\"\n[binaries.r]\npath = \"{repo}/x\"\n",
    ),
    (
        "binary_helpers",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a]\nhelpers = [\"/bin/sh\", \"sh\", \"/bin/sh\"]\n[binaries.b]\nhelpers = \"/bin/sh\"\n",
    ),
    (
        "binary_unknown_key",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a]\nhelper = []\n",
    ),
    // ---- args --------------------------------------------------------
    (
        "args_not_a_table",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a]\nargs = []\n",
    ),
    (
        "args_deny_globs",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.args]\ndeny = [\"\", \"[abc\", \"a]b[\", \"[z-a]\", \"ok\", \"ok\", \"**x\", 4, \"[]\", \"[!]\", \"a[]]b\", \"[]x\", \"***\"]\n",
    ),
    (
        "args_deny_long_options",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.args]\ndeny_long_options = [\"\", \"--\", \"a=b\", \"a b\", \"--exec\", \"-x\", \"plain\", \"tab\\there\"]\n",
    ),
    (
        "args_subcommands",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.args]\nsubcommands = [\"status\", 1, \"status\"]\n",
    ),
    (
        "args_max_count",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.args]\nmax_count = 0\n[binaries.b.args]\nmax_count = -1\n[binaries.c.args]\nmax_count = \"3\"\n[binaries.d.args]\nmax_count = 1.5\n",
    ),
    (
        "args_max_bytes",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.args]\nmax_bytes = 0\n[binaries.b.args]\nmax_bytes = \"unlimited\"\n[binaries.c.args]\nmax_bytes = \"1 KiB\"\n[binaries.d.args]\nmax_bytes = -5\n[binaries.e.args]\nmax_bytes = true\n[binaries.f.args]\nmax_bytes = \"0 B\"\n",
    ),
    (
        "args_allow",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.args]\nallow = []\n[binaries.b.args]\nallow = [\"run\"]\n[binaries.c.args]\nallow = [[\"run\", 1], [\"...\", \"x\"], [\"run\", \"[abc\"]]\n[binaries.d.args]\nallow = [[\"run\", \"...\"], [\"run\", \"...\"]]\n[binaries.e.args]\nallow = [[\"...\"]]\n[binaries.f.args]\nallow = \"run\"\n",
    ),
    (
        "plugin_args_allow",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a]\n[binaries.b]\n[plugins.p]\nbinaries = [\"a\"]\n[plugins.p.args.a]\nallow = [[\"x\"]]\nfoo = 1\n[plugins.p.args.b]\nallow = [[\"y\"]]\n[plugins.p.args.nope]\nallow = [[\"z\"]]\n[plugins.p.args.a.limits]\n",
    ),
    // ---- plugins -----------------------------------------------------
    (
        "plugin_names",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.git]\n[plugins.\"a b\"]\nbinaries = [\"git\"]\n[plugins.\"c+d\"]\nbinaries = [\"git\"]\n[plugins.\"*\"]\nbinaries = [\"git\"]\n[plugins.ok-1_x.y]\nbinaries = [\"git\"]\n",
    ),
    ("plugins_not_a_table", "version = 1\nplugins = []\n"),
    (
        "plugin_binaries",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.git]\n[binaries.cargo]\n[plugins.p]\nbinaries = [\"gitt\", \"zzz\", \"a/b\", \"git\", \"git\", 5]\n",
    ),
    (
        "plugin_without_binaries",
        "version = 1\n[plugins.p]\nmax_concurrent = 2\n[plugins.\"*\"]\n",
    ),
    (
        "plugin_max_concurrent",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.g]\n[plugins.a]\nbinaries = [\"g\"]\nmax_concurrent = 0\n[plugins.b]\nbinaries = [\"g\"]\nmax_concurrent = -2\n[plugins.c]\nbinaries = [\"g\"]\nmax_concurrent = \"many\"\n",
    ),
    // ---- env ---------------------------------------------------------
    (
        "env_lists",
        "version = 1\n[env]\ninherit = [\"LANG\", \"LANG\", \"[x\"]\nallow = \"X\"\ndeny = [\"\"]\n",
    ),
    (
        "env_set",
        "version = 1\n[env]\nset = { \"\" = \"a\", \"A=B\" = \"b\", OK = 1, T = \"{tmp\", U = \"{nope}\", V = \"{hoem}/x\", W = \"{{literal}}\" }\n",
    ),
    (
        "env_set_not_a_table",
        "version = 1\n[env]\nset = [\"A=1\"]\n",
    ),
    (
        "env_on_disallowed",
        "version = 1\nsearch_path = [\"/bin\"]\n[env]\non_disallowed = \"dorp\"\n[binaries.a.env]\non_disallowed = \"ignore\"\n",
    ),
    (
        "env_deny_defaults_off",
        "version = 1\n[env]\ndeny_defaults = false\n",
    ),
    (
        "env_deny_defaults_type",
        "version = 1\n[env]\ndeny_defaults = \"no\"\n",
    ),
    (
        "env_deny_defaults_below_the_top",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.env]\ndeny_defaults = false\n[plugins.p]\nbinaries = [\"a\"]\n[plugins.p.env]\ndeny_defaults = true\n",
    ),
    (
        "env_set_always_dropped",
        "version = 1\nsearch_path = [\"/bin\"]\n[env]\ndeny = [\"MY_*\"]\nset = { LD_PRELOAD = \"/x\", MY_VAR = \"1\", FINE = \"2\" }\n[binaries.a.env]\ndeny = [\"LOCAL\"]\nset = { LOCAL = \"3\", GITHUB_TOKEN = \"t\" }\n[plugins.p]\nbinaries = [\"a\"]\n[plugins.p.env]\nset = { MY_OTHER = \"4\" }\n",
    ),
    (
        "env_set_with_defaults_off",
        "version = 1\n[env]\ndeny_defaults = false\nset = { LD_PRELOAD = \"/x\" }\n",
    ),
    ("env_unknown_key", "version = 1\n[env]\ninherits = []\n"),
    // ---- filesystem --------------------------------------------------
    (
        "filesystem",
        "version = 1\n[filesystem]\nread = [\"/usr\", \"usr\", \"/usr\"]\nread_write = [\"{repo}\", \"{repo}x\", \"{tmp}/../x\"]\nexecute = \"/bin\"\nwrite = []\n",
    ),
    (
        "filesystem_not_a_table",
        "version = 1\nfilesystem = \"/\"\n",
    ),
    // ---- network -----------------------------------------------------
    (
        "network_ports",
        "version = 1\n[network]\nconnect = [0, 1, 65535, 65536, -1, 443, 443, \"80\"]\nbind = [0, 65535, 65536, -1, 0]\n",
    ),
    (
        "network_not_lists",
        "version = 1\n[network]\nconnect = 443\n",
    ),
    (
        "network_unrestricted_with_ports",
        "version = 1\nsearch_path = [\"/bin\"]\n[network]\nunrestricted = true\nbind = [8080]\n[binaries.a.network]\nunrestricted = true\nconnect = [443]\n[binaries.b.network]\nunrestricted = false\nconnect = [443]\n[binaries.c.network]\nunrestricted = true\n",
    ),
    (
        "network_unrestricted_with_each_socket_family",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.network]\nunrestricted = true\nudp = false\n[binaries.b.network]\nunrestricted = true\nnetlink_route = true\n[binaries.c.network]\nunrestricted = true\nunix = [\"/run/x.sock\"]\n[binaries.d.network]\nunrestricted = true\nunix_any = false\n[binaries.e.network]\nunrestricted = true\n[binaries.f.network]\nunrestricted = false\nudp = true\nunix_any = true\n",
    ),
    (
        "network_unrestricted_type",
        "version = 1\n[network]\nunrestricted = 1\n",
    ),
    // ---- limits ------------------------------------------------------
    (
        "limits_counts",
        "version = 1\nsearch_path = [\"/bin\"]\n[limits]\ncpu_secs = 0\nprocesses = \"lots\"\nopen_files = -1\n[binaries.a.limits]\ncpu_secs = \"unlimited\"\nprocesses = 1\nopen_files = true\n",
    ),
    (
        "limits_open_files_floor",
        "version = 1\nsearch_path = [\"/bin\"]\n[limits]\nopen_files = 3\n[binaries.a.limits]\nopen_files = 4\n[binaries.b.limits]\nopen_files = 1\n",
    ),
    (
        "limits_sizes",
        "version = 1\nsearch_path = [\"/bin\"]\n[limits]\nmemory = \"12 parsecs\"\nfile_size = \"0 B\"\n[binaries.a.limits]\nmemory = \"unlimited\"\nfile_size = 0\n[binaries.b.limits]\nmemory = -1\nfile_size = \"99999999999 TiB\"\n[binaries.c.limits]\nmemory = [1]\nfile_size = \"MiB\"\n",
    ),
    (
        "limits_timeouts",
        "version = 1\n[limits]\ntimeout_secs = 0\nmax_timeout_secs = \"1h\"\non_long_timeout = \"clip\"\n",
    ),
    (
        "limits_kill_grace",
        "version = 1\nsearch_path = [\"/bin\"]\n[limits]\nkill_grace_secs = -0.5\n[binaries.a.limits]\nkill_grace_secs = 3600.5\n[binaries.b.limits]\nkill_grace_secs = \"2\"\n[binaries.c.limits]\nkill_grace_secs = nan\n[binaries.d.limits]\nkill_grace_secs = 3600\n[binaries.e.limits]\nkill_grace_secs = 0\n",
    ),
    (
        "limits_core_dumps",
        "version = 1\n[limits]\ncore_dumps = \"yes\"\n",
    ),
    (
        "timeout_default_above_builtin_maximum",
        "version = 1\n[limits]\ntimeout_secs = 3601\n",
    ),
    (
        "timeout_maximum_below_builtin_default",
        "version = 1\n[limits]\nmax_timeout_secs = 599\n",
    ),
    (
        "timeout_equal_is_fine",
        "version = 1\n[limits]\ntimeout_secs = 700\nmax_timeout_secs = 700\n",
    ),
    (
        "timeout_per_plugin_and_binary",
        "version = 1\nsearch_path = [\"/bin\"]\n[limits]\nmax_timeout_secs = 100\ntimeout_secs = 50\n[binaries.a.limits]\ntimeout_secs = 200\n[binaries.b]\n[binaries.c.limits]\nmax_timeout_secs = 10\n[plugins.p]\nbinaries = [\"a\", \"b\", \"c\"]\n[plugins.p.limits]\ntimeout_secs = 150\n[plugins.q]\nbinaries = [\"a\"]\n[plugins.\"*\"]\nbinaries = [\"b\"]\n[plugins.\"*\".limits]\nmax_timeout_secs = 20\n",
    ),
    // ---- output ------------------------------------------------------
    (
        "output_choices",
        "version = 1\n[output]\nmode = \"chunk\"\nsanitize = \"none\"\n",
    ),
    (
        "output_line_bytes",
        "version = 1\nsearch_path = [\"/bin\"]\n[output]\nmax_line_bytes = 79\n[binaries.a.output]\nmax_line_bytes = 80\n[binaries.b.output]\nmax_line_bytes = \"1 KiB\"\n[binaries.c.output]\nmax_line_bytes = 0\n",
    ),
    (
        "output_tail_bytes",
        "version = 1\nsearch_path = [\"/bin\"]\n[output]\ntail_bytes = 0\n[binaries.a.output]\ntail_bytes = -1\n[binaries.b.output]\ntail_bytes = \"2 KiB\"\n[binaries.c.output]\ntail_bytes = false\n[binaries.d.output]\ntail_bytes = \"0 B\"\n",
    ),
    (
        "output_queue_bounds",
        "version = 1\n[output]\nmax_queued_events = 15\nmax_queued_bytes = 65535\n[plugins.p.output]\nmax_queued_events = 16\nmax_queued_bytes = \"64 KiB\"\n[plugins.q.output]\nmax_queued_events = 0\nmax_queued_bytes = \"63 KiB\"\n",
    ),
    (
        "output_queue_bounds_per_binary",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a.output]\nmax_queued_events = 100\nmax_queued_bytes = \"1 MiB\"\nmode = \"chunks\"\n",
    ),
    // ---- progress ----------------------------------------------------
    (
        "progress_interval",
        "version = 1\nsearch_path = [\"/bin\"]\n[progress]\ninterval_ms = 199\n[binaries.a.progress]\ninterval_ms = 200\n[binaries.b.progress]\ninterval_ms = 0\n[binaries.c.progress]\ninterval_ms = 1\n",
    ),
    (
        "progress_patterns",
        "version = 1\n[progress]\npatterns = [\"(?P<percent>\\\\d+)%\", \"(?P<step>\\\\w+)\", \"(?P<current>\\\\d+)/(?P<total>\\\\d+)\", \"(?P<current>\\\\d+)\", \"(?P<total>\\\\d+)\", \"(unclosed\", \"x{2,1}\", \"plain\"]\nsample = 1\n",
    ),
    // ---- seccomp -----------------------------------------------------
    (
        "seccomp",
        "version = 1\nsearch_path = [\"/bin\"]\n[seccomp]\ndeny_dangerous = \"yes\"\ndeny_all = true\n[binaries.a.seccomp]\ndeny_dangerous = false\n",
    ),
    // ---- names at their length limit ---------------------------------
    (
        "names_of_128_and_129_characters",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb]\n[binaries.ccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc]\n[plugins.pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp]\nbinaries = [\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"]\n[plugins.qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq]\n",
    ),
    // ---- placeholders, where the text around them moves them --------
    (
        "placeholder_offsets",
        "version = 1\nsearch_path = [\"{repo}/{tmp}\", \"/{{x}}/{home}\", \"/a}}b/{home}\", \"/x\\u0000y\", \"\"]\n[env]\nset = { A = \"{{{{ {tmp} }} {nope}\", B = \"a}b{hoem}\", C = \"{{x\", D = \"x{{{tmp\" }\n",
    ),
    (
        "a_table_where_a_value_belongs",
        "version = 1\nsearch_path = [\"/bin\"]\n[binaries.a]\nsha256 = { x = 1 }\n",
    ),
    // ---- sections in the wrong shape ---------------------------------
    (
        "sections_not_tables",
        "version = 1\nsearch_path = [\"/bin\"]\nlimits = 1\noutput = \"x\"\nprogress = []\nseccomp = true\nnetwork = 1.5\n[binaries.a]\nlimits = 1\n[plugins.p]\nenv = 2\n",
    ),
];

fn render(text: &str) -> String {
    match Policy::from_toml("policy.toml", text) {
        Ok(loaded) if loaded.warnings.diagnostics.is_empty() => "loads\n".to_string(),
        Ok(loaded) => format!("loads, with warnings:\n{}", loaded.warnings.render()),
        Err(LoadError::Invalid(report)) => report.render(),
        Err(other) => format!("{other}\n"),
    }
}

#[test]
fn every_rule() {
    let mut out = String::new();
    for (name, text) in CASES {
        out.push_str(&format!("### {name}\n{text}---\n{}\n", render(text)));
    }
    // A path the machine check prints is shown the platform's way; the
    // snapshot holds the Unix spelling.
    if cfg!(windows) {
        out = out.replace(
            r"\nonexistent\jobwarden-test\",
            "/nonexistent/jobwarden-test/",
        );
    }
    insta::assert_snapshot!(out);
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = CASES.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "two cases share a name");
}
