//! The jobs API for Lua plugins (features `lua`, Lua 5.4 vendored, or
//! `luajit`), on mlua 0.11 — the version the ProGit SDK embeds.
//!
//! [`install`] puts a `jobs` table into a plugin's Lua state, bound to that
//! plugin's [`PluginHandle`], so a plugin's state reaches only its own jobs
//! (even given another plugin's job id):
//!
//! ```no_run
//! use jobwarden::{Policy, PolicyJobHost};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = PolicyJobHost::new(Policy::embedded_default(), "/path/to/repo")?;
//! let lua = mlua::Lua::new(); // one state per plugin
//! jobwarden::lua::install(&lua, host.plugin("citadel"))?;
//! lua.load(r#"plan = jobs.spawn{ binary = "git", args = { "status" } }"#)
//!     .exec()?;
//! // Every frame, the plugin's own code drains: `jobs.drain()`.
//! # Ok(())
//! # }
//! ```
//!
//! In the plugin:
//!
//! ```lua
//! local id = jobs.spawn{ label = "plan", binary = "citadel",
//!                        args = { "plan", "--env", "devnet" }, timeout_secs = 600 }
//! local id, err = jobs.try_spawn{ binary = "bash", args = { "-c", "id" } }
//! if not id then print(err.rule, err.reason, err.hint) end
//! for _, event in ipairs(jobs.drain()) do
//!   if event.type == "job_log_line" then print(event.data.line) end
//! end
//! local status = jobs.status(id)   -- nil for an unknown id
//! local cancelled = jobs.cancel(id) -- false when not this plugin's, or over
//! ```
//!
//! The tables are the wire format (the contract's serde shape, with `data`
//! nested): converted back to JSON, every event and status table is exactly
//! the contract's JSON. One deliberate difference: a `job_output_chunk`'s
//! `data.bytes` is a Lua string (binary-safe, as Lua handles bytes), not an
//! array of numbers; [`event_to_json`] turns it back. JSON `null` is
//! [`mlua::Value::NULL`] (`jobs.null` in Lua), so a field that is `null` on
//! the wire is present in the table, not missing.
//!
//! Bad arguments from Lua — a missing binary, a non-string argument, a NUL
//! byte, a table too big to be a command line — are Lua errors with a
//! message that says what to fix; they never panic the host and never touch
//! another plugin's jobs. A refused request is, as the contract says, a job
//! id whose only event is `job_failed`; `try_spawn` returns `nil, err`
//! instead.

use crate::contract::{JobEvent, JobHost, JobSpawnRequest};
use crate::host::PluginHandle;
use mlua::{Lua, LuaSerdeExt, Table, Value};
use std::collections::HashMap;

/// Most arguments a request from Lua may carry (ProGit's own tools cap raw
/// arguments at 64; a generous bound keeps a runaway table from costing the
/// host memory).
pub const MAX_ARGS: usize = 4096;
/// Most environment variables a request from Lua may carry.
pub const MAX_ENV: usize = 1024;
/// Longest string (argument, variable, label, path) a request may carry.
pub const MAX_STRING: usize = 1 << 20;

/// Installs the `jobs` table as a global of `lua`, bound to `plugin`.
pub fn install(lua: &Lua, plugin: PluginHandle) -> mlua::Result<()> {
    let jobs = jobs_table(lua, plugin)?;
    lua.globals().set("jobs", jobs)
}

/// The `jobs` table for `plugin`, for a host that places it itself.
pub fn jobs_table(lua: &Lua, plugin: PluginHandle) -> mlua::Result<Table> {
    let jobs = lua.create_table()?;

    let handle = plugin.clone();
    jobs.set(
        "spawn",
        lua.create_function(move |_, request: Table| {
            let request = request_from(&request)?;
            Ok(handle.spawn(request))
        })?,
    )?;

    let handle = plugin.clone();
    jobs.set(
        "try_spawn",
        lua.create_function(move |lua, request: Table| {
            let request = request_from(&request)?;
            match handle.try_spawn(request) {
                Ok(id) => Ok((Value::String(lua.create_string(&id)?), Value::Nil)),
                Err(denial) => {
                    let err = lua.create_table()?;
                    err.set("rule", denial.rule)?;
                    err.set("reason", denial.reason)?;
                    err.set("hint", denial.hint)?;
                    Ok((Value::Nil, Value::Table(err)))
                }
            }
        })?,
    )?;

    let handle = plugin.clone();
    jobs.set(
        "cancel",
        lua.create_function(move |_, id: String| Ok(handle.cancel(&id)))?,
    )?;

    let handle = plugin.clone();
    jobs.set(
        "status",
        lua.create_function(move |lua, id: String| match handle.status(&id) {
            Some(status) => lua.to_value(&status),
            None => Ok(Value::Nil),
        })?,
    )?;

    let handle = plugin;
    jobs.set(
        "drain",
        lua.create_function(move |lua, ()| {
            let events = handle.drain_events();
            let list = lua.create_table_with_capacity(events.len(), 0)?;
            for (i, event) in events.iter().enumerate() {
                list.raw_set(i + 1, event_to_lua(lua, event)?)?;
            }
            Ok(list)
        })?,
    )?;

    jobs.set("null", Value::NULL)?;
    Ok(jobs)
}

/// An event as the table Lua gets: the wire format, `data.bytes` of a
/// chunk as a Lua string.
pub fn event_to_lua(lua: &Lua, event: &JobEvent) -> mlua::Result<Value> {
    let value = lua.to_value(event)?;
    if let (JobEvent::JobOutputChunk { data, .. }, Value::Table(table)) = (event, &value) {
        let payload: Table = table.get("data")?;
        payload.set("bytes", lua.create_string(&data.bytes)?)?;
    }
    Ok(value)
}

/// A table Lua got back as JSON: the wire format again (a chunk's bytes as
/// an array of numbers).
pub fn event_to_json(lua: &Lua, value: Value) -> mlua::Result<serde_json::Value> {
    let bytes = match &value {
        Value::Table(table)
            if table.get::<String>("type").ok().as_deref() == Some("job_output_chunk") =>
        {
            let payload: Table = table.get("data")?;
            let bytes: mlua::String = payload.get("bytes")?;
            Some(bytes.as_bytes().to_vec())
        }
        _ => None,
    };
    let mut json: serde_json::Value = lua.from_value(value)?;
    if let Some(bytes) = bytes {
        json["data"]["bytes"] = serde_json::Value::from(bytes);
    }
    Ok(json)
}

/// Reads a request table, refusing what no command line would be.
fn request_from(table: &Table) -> mlua::Result<JobSpawnRequest> {
    let binary: String = match table.get::<Value>("binary")? {
        Value::String(s) => text("binary", s)?,
        Value::Nil => {
            return Err(bad(
                "jobs.spawn needs `binary`, the name of a binary the policy trusts (e.g. binary = \"git\")",
            ));
        }
        other => {
            return Err(bad(format!(
                "`binary` must be a string, not {}",
                other.type_name()
            )));
        }
    };
    let label = match table.get::<Value>("label")? {
        Value::String(s) => text("label", s)?,
        Value::Nil => binary.clone(),
        other => {
            return Err(bad(format!(
                "`label` must be a string, not {}",
                other.type_name()
            )));
        }
    };
    let args = match table.get::<Value>("args")? {
        Value::Nil => Vec::new(),
        Value::Table(list) => {
            let n = list.raw_len();
            if n > MAX_ARGS {
                return Err(bad(format!(
                    "`args` has {n} entries; a request may carry at most {MAX_ARGS}"
                )));
            }
            let mut args = Vec::with_capacity(n);
            for i in 1..=n {
                match list.raw_get::<Value>(i)? {
                    Value::String(s) => args.push(text(&format!("args[{i}]"), s)?),
                    other => {
                        return Err(bad(format!(
                            "args[{i}] must be a string, not {} (write numbers as strings: \"{}\")",
                            other.type_name(),
                            other.to_string().unwrap_or_default()
                        )));
                    }
                }
            }
            args
        }
        other => {
            return Err(bad(format!(
                "`args` must be a list of strings, not {}",
                other.type_name()
            )));
        }
    };
    let cwd = match table.get::<Value>("cwd")? {
        Value::Nil => None,
        Value::String(s) => Some(text("cwd", s)?),
        other => {
            return Err(bad(format!(
                "`cwd` must be a string, not {}",
                other.type_name()
            )));
        }
    };
    let mut env = HashMap::new();
    match table.get::<Value>("env")? {
        Value::Nil => {}
        Value::Table(vars) => {
            for pair in vars.pairs::<Value, Value>() {
                let (name, value) = pair?;
                if env.len() >= MAX_ENV {
                    return Err(bad(format!("`env` has more than {MAX_ENV} variables")));
                }
                let (Value::String(name), Value::String(value)) = (name, value) else {
                    return Err(bad(
                        "`env` must map variable names (strings) to values (strings)",
                    ));
                };
                let name = text("an env name", name)?;
                let value = text(&format!("env.{name}"), value)?;
                env.insert(name, value);
            }
        }
        other => {
            return Err(bad(format!(
                "`env` must be a table, not {}",
                other.type_name()
            )));
        }
    }
    let timeout_secs = match table.get::<Value>("timeout_secs")? {
        Value::Nil => 0,
        Value::Integer(n) if n >= 0 => n as u64,
        Value::Number(n) if n >= 0.0 && n.fract() == 0.0 => n as u64,
        other => {
            return Err(bad(format!(
                "`timeout_secs` must be a whole number of seconds (0: the policy's default), not {}",
                other
                    .to_string()
                    .unwrap_or_else(|_| other.type_name().to_string())
            )));
        }
    };
    for key in table.pairs::<Value, Value>() {
        let (key, _) = key?;
        let known = matches!(&key, Value::String(k) if matches!(
            k.to_str().as_deref().unwrap_or(""),
            "binary" | "label" | "args" | "cwd" | "env" | "timeout_secs"
        ));
        if !known {
            return Err(bad(format!(
                "unknown field {} in a jobs.spawn request; expected binary, label, args, cwd, env, timeout_secs",
                key.to_string()
                    .unwrap_or_else(|_| key.type_name().to_string())
            )));
        }
    }
    Ok(JobSpawnRequest {
        label,
        binary,
        args,
        cwd,
        env,
        timeout_secs,
    })
}

/// A Lua string as a request string: UTF-8, no NUL, not huge.
fn text(what: &str, s: mlua::String) -> mlua::Result<String> {
    let bytes = s.as_bytes();
    if bytes.len() > MAX_STRING {
        return Err(bad(format!(
            "{what} is {} bytes; a request string may be at most {MAX_STRING}",
            bytes.len()
        )));
    }
    if bytes.contains(&0) {
        return Err(bad(format!(
            "{what} contains a NUL byte, which no command line can carry"
        )));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(format!("{what} is not valid UTF-8")))
}

fn bad(message: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(message.into())
}
