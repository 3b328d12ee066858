//! A Lua plugin driving jobs through jobwarden, the way ProGit hosts its
//! plugins: `cargo run --example lua_plugin --features lua`.
//!
//! The plugin (`examples/plugins/citadel.lua`) gets a `jobs` table bound to
//! its own handle. Here `citadel` is a stand-in script that plans for a few
//! seconds, printing `::progress::` lines; the host loop plays the TUI:
//! every frame it drains the plugin's events into `on_event`, and a key
//! (`c` and Enter on stdin, or after 50 % when stdin is not a terminal)
//! cancels the plan through the plugin's `cancel` command.

use jobwarden::{Policy, PolicyJobHost};
use mlua::{Function, Lua, Table};
use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git"))?;
    let citadel = dir.path().join("citadel");
    std::fs::write(
        &citadel,
        "#!/bin/sh\nfor i in 1 2 3 4 5 6 7 8 9 10; do\n  echo \"::progress:: $((i * 10)) planning step $i/10\"\n  echo \"resource $i: no changes\"\n  sleep 0.3\ndone\n",
    )?;
    std::fs::set_permissions(
        &citadel,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let policy = Policy::from_toml(
        "example.toml",
        &format!(
            r#"
version = 1
enforcement = {{ confinement = "best_effort", limits = "best_effort", cleanup = "best_effort" }}
[filesystem]
read = ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "{dir}"]
read_write = ["{{repo}}", "{{tmp}}", "/dev/null"]
[binaries.citadel]
path = "{script}"
helpers = ["/bin/sh", "/usr/bin/sleep", "/bin/sleep"]
[binaries.citadel.args]
subcommands = ["plan", "validate"]
[plugins.citadel]
binaries = ["citadel"]
"#,
            dir = dir.path().display(),
            script = citadel.display()
        ),
    )?
    .policy;
    let host = PolicyJobHost::new(policy, &repo)?;
    let plugin = host.plugin("citadel");

    let lua = Lua::new();
    jobwarden::lua::install(&lua, plugin)?;
    let code = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/citadel.lua"),
    )?;
    let this: Table = lua.load(code).set_name("citadel.lua").eval()?;
    let method = |name: &str| this.get::<Function>(name);
    method("on_load")?.call::<()>(&this)?;
    let args = lua.create_table()?;
    args.set("env", "devnet")?;
    method("execute_command")?.call::<bool>((&this, "plan", args))?;

    // Keys arrive on their own thread, as a TUI's input would.
    let (keys, pressed) = mpsc::channel();
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("(press c and Enter to cancel)");
        std::thread::spawn(move || {
            for line in std::io::stdin().lines().map_while(Result::ok) {
                let _ = keys.send(line);
            }
        });
    }
    let drain: Function = lua.load("return jobs.drain").eval()?;
    loop {
        let events: Table = drain.call(())?;
        for event in events.sequence_values::<Table>() {
            method("on_event")?.call::<()>((&this, event?))?;
        }
        let percent: Option<i64> = this.get("percent")?;
        let cancel = match pressed.try_recv() {
            Ok(key) => key.trim() == "c",
            Err(_) => !interactive && percent.is_some_and(|p| p >= 50),
        };
        if cancel {
            method("execute_command")?.call::<bool>((&this, "cancel", lua.create_table()?))?;
        }
        if this.get::<Option<String>>("job")?.is_none() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
