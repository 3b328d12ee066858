//! The Lua jobs API (feature `lua` or `luajit`): its tables are the wire
//! format (the goldens of `contract_wire.rs`, back to JSON byte for byte
//! but for a chunk's bytes, a Lua string), and real Lua scripts drive real
//! jobs under the real sandbox — spawn, drain to the end, cancel, a denial,
//! bad arguments, and two plugins that cannot reach each other's jobs.

#![cfg(any(feature = "lua", feature = "luajit"))]

#[path = "support/wire_goldens.rs"]
mod wire_goldens;

use jobwarden::contract::JobEvent;
use jobwarden::lua::{event_to_json, event_to_lua, install};
use mlua::{Lua, LuaSerdeExt, Value};

#[test]
fn every_event_table_converts_back_to_its_golden_json() {
    let lua = Lua::new();
    for (event, golden) in wire_goldens::event_goldens() {
        let table = event_to_lua(&lua, &event).unwrap();
        if let (JobEvent::JobOutputChunk { data, .. }, Value::Table(t)) = (&event, &table) {
            // The deviation, on purpose: bytes are a binary-safe Lua string.
            let bytes: mlua::String = t.get::<mlua::Table>("data").unwrap().get("bytes").unwrap();
            assert_eq!(bytes.as_bytes().to_vec(), data.bytes);
        }
        let back = event_to_json(&lua, table).unwrap();
        let expected: serde_json::Value = serde_json::from_str(golden).unwrap();
        assert_eq!(back, expected, "{golden}");
        // A Lua table has no key order; read back as the contract's type,
        // it writes the golden's very bytes.
        let event: JobEvent = serde_json::from_value(back).unwrap();
        assert_eq!(serde_json::to_string(&event).unwrap(), golden);
    }
}

#[test]
fn every_status_table_converts_back_to_its_golden_json() {
    let lua = Lua::new();
    for (status, golden) in wire_goldens::status_goldens() {
        let table = lua.to_value(&status).unwrap();
        let back: serde_json::Value = lua.from_value(table).unwrap();
        let expected: serde_json::Value = serde_json::from_str(golden).unwrap();
        assert_eq!(back, expected, "{golden}");
        let status: jobwarden::contract::JobStatus = serde_json::from_value(back).unwrap();
        assert_eq!(serde_json::to_string(&status).unwrap(), golden);
    }
}

#[cfg(target_os = "linux")]
#[path = "sandbox/harness.rs"]
#[allow(dead_code)]
mod harness;

#[cfg(target_os = "linux")]
#[path = "support/skip.rs"]
mod skip;

/// Real Lua scripts against the real confined host.
#[cfg(target_os = "linux")]
mod scripts {
    use super::*;
    use crate::harness::Fixture;

    /// A Lua state with `jobs` bound to `plugin` and a `wait_end(id)`
    /// helper that drains until the job's terminal event and returns the
    /// events it saw.
    fn state(fx: &Fixture, plugin: &str) -> Lua {
        let lua = Lua::new();
        install(&lua, fx.host.plugin(plugin)).unwrap();
        let sleep = lua
            .create_function(|_, ms: u64| {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            })
            .unwrap();
        lua.globals().set("sleep_ms", sleep).unwrap();
        lua.load(
            r#"
            function wait_end(id)
              local seen = {}
              for _ = 1, 600 do
                for _, e in ipairs(jobs.drain()) do
                  if e.job_id == id then
                    seen[#seen + 1] = e
                    if e.type == "job_completed" or e.type == "job_failed"
                       or e.type == "job_cancelled" then
                      return seen
                    end
                  end
                end
                sleep_ms(50)
              end
              error("job " .. id .. " did not end")
            end
            "#,
        )
        .exec()
        .unwrap();
        lua
    }

    #[test]
    fn a_plugin_script_spawns_drains_and_sees_its_output() {
        let fx = Fixture::new("");
        let lua = state(&fx, "tests");
        let (kind, line, pid): (String, String, bool) = lua
            .load(
                r#"
                local id = jobs.spawn{ label = "hello", binary = "probe",
                                       args = { "print", "from lua" } }
                local events = wait_end(id)
                local line, pid = nil, false
                for _, e in ipairs(events) do
                  if e.type == "job_started" then pid = type(e.data.pid) == "number" end
                  if e.type == "job_log_line" and e.data.stream == "stdout" then line = e.data.line end
                end
                local status = jobs.status(id)
                assert(status.Completed.exit_code == 0)
                return events[#events].type, line, pid
                "#,
            )
            .eval()
            .unwrap();
        assert_eq!(kind, "job_completed");
        assert_eq!(line, "probe: print from lua: ok");
        assert!(pid);
    }

    #[test]
    fn a_plugin_script_cancels_its_job() {
        let fx = Fixture::new("");
        let lua = state(&fx, "tests");
        let (cancelled, last): (bool, String) = lua
            .load(
                r#"
                local id = jobs.spawn{ binary = "probe", args = { "sleep", "30" } }
                sleep_ms(200)
                local ok = jobs.cancel(id)
                local events = wait_end(id)
                return ok, events[#events].type
                "#,
            )
            .eval()
            .unwrap();
        assert!(cancelled);
        assert_eq!(last, "job_cancelled");
    }

    #[test]
    fn a_denial_is_one_job_failed_or_nil_and_a_reason() {
        let fx = Fixture::new("");
        let lua = state(&fx, "tests");
        let (count, kind, rule, hint): (i64, String, String, String) = lua
            .load(
                r#"
                local id = jobs.spawn{ binary = "bash", args = { "-c", "id" } }
                local events = wait_end(id)
                local none, err = jobs.try_spawn{ binary = "bash" }
                assert(none == nil)
                return #events, events[1].type, err.rule, err.hint
                "#,
            )
            .eval()
            .unwrap();
        assert_eq!((count, kind.as_str()), (1, "job_failed"));
        assert_eq!(rule, "plugins.tests.binaries");
        assert!(hint.contains("bash"), "{hint}");
    }

    #[test]
    fn bad_arguments_are_lua_errors_that_say_what_to_fix() {
        let fx = Fixture::new("");
        let lua = state(&fx, "tests");
        let cases = [
            (r#"jobs.spawn{ args = { "x" } }"#, "needs `binary`"),
            (r#"jobs.spawn{ binary = 42 }"#, "`binary` must be a string"),
            (
                r#"jobs.spawn{ binary = "probe", args = { "print", 7 } }"#,
                "args[2] must be a string",
            ),
            (
                r#"jobs.spawn{ binary = "probe", args = { "a\0b" } }"#,
                "NUL byte",
            ),
            (
                r#"jobs.spawn{ binary = "probe", env = { A = 1 } }"#,
                "`env` must map",
            ),
            (
                r#"jobs.spawn{ binary = "probe", timeout_secs = -1 }"#,
                "`timeout_secs`",
            ),
            (
                r#"jobs.spawn{ binary = "probe", colour = "red" }"#,
                "unknown field",
            ),
            (
                r#"local a = {} for i = 1, 5000 do a[i] = "x" end jobs.spawn{ binary = "probe", args = a }"#,
                "at most 4096",
            ),
            (r#"jobs.spawn("probe")"#, "table"),
            (r#"jobs.cancel({})"#, "string"),
        ];
        for (code, expected) in cases {
            let err = lua.load(code).exec().unwrap_err().to_string();
            assert!(err.contains(expected), "{code}: {err}");
        }
        // The host and its other jobs are unaffected.
        let fine: String = lua
            .load(
                r#"local e = wait_end(jobs.spawn{ binary = "probe", args = { "print", "still" } })
                   return e[#e].type"#,
            )
            .eval()
            .unwrap();
        assert_eq!(fine, "job_completed");
    }

    #[test]
    fn a_plugin_state_cannot_see_cancel_or_drain_another_plugins_job() {
        let fx = Fixture::new("");
        let mine = state(&fx, "tests");
        let theirs = state(&fx, "other");
        let id: String = mine
            .load(r#"return jobs.spawn{ binary = "probe", args = { "sleep", "30" } }"#)
            .eval()
            .unwrap();
        theirs.globals().set("their_id", id.clone()).unwrap();
        let (status_is_nil, cancelled, drained): (bool, bool, i64) = theirs
            .load(
                r#"
                sleep_ms(200)
                local n = 0
                for _, e in ipairs(jobs.drain()) do
                  if e.job_id == their_id then n = n + 1 end
                end
                return jobs.status(their_id) == nil, jobs.cancel(their_id), n
                "#,
            )
            .eval()
            .unwrap();
        assert!(status_is_nil);
        assert!(!cancelled);
        assert_eq!(drained, 0);
        // The owner still can.
        mine.globals().set("id", id).unwrap();
        let last: String = mine
            .load(r#"assert(jobs.cancel(id)); local e = wait_end(id); return e[#e].type"#)
            .eval()
            .unwrap();
        assert_eq!(last, "job_cancelled");
    }
}
