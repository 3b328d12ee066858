//! Checks on the request itself, whatever the policy says: a malformed request
//! is refused before any rule is consulted.

use super::Denial;
use crate::contract::JobSpawnRequest;
use crate::policy::check_env_name;

/// Longest label a TUI will be asked to print.
pub const MAX_LABEL_BYTES: usize = 256;
/// Most arguments a request may carry when the binary sets no `max_count`.
pub const MAX_ARGS: usize = 1024;
/// Most argument bytes a request may carry when the binary sets no `max_bytes`.
pub const MAX_ARG_BYTES: usize = 256 * 1024;
/// Most variables a request may inject.
pub const MAX_ENV_VARS: usize = 128;
/// Most bytes of injected names and values together.
pub const MAX_ENV_BYTES: usize = 64 * 1024;

/// Refuses requests that no policy could allow.
pub fn validate(request: &JobSpawnRequest) -> Result<(), Denial> {
    let label = &request.label;
    if label.len() > MAX_LABEL_BYTES {
        return Err(Denial::new(
            "request.label",
            format!(
                "the label is {} bytes; the limit is {MAX_LABEL_BYTES}",
                label.len()
            ),
            "shorten the label",
        ));
    }
    if let Some(c) = label.chars().find(|c| c.is_control()) {
        return Err(Denial::new(
            "request.label",
            format!(
                "the label contains the control character U+{:04X}, which a TUI would print verbatim",
                c as u32
            ),
            "use printable text in labels",
        ));
    }

    let binary = &request.binary;
    if binary.is_empty() {
        return Err(Denial::new(
            "request.binary",
            "the request names no binary",
            "name a binary the policy trusts, e.g. `git`",
        ));
    }
    if binary.contains('\0') {
        return Err(Denial::new(
            "request.binary",
            "the binary name contains a NUL byte",
            "name a binary the policy trusts, e.g. `git`",
        ));
    }
    if binary.contains('/') || binary.contains('\\') || binary == ".." || binary == "." {
        return Err(Denial::new(
            "request.binary",
            format!(
                "`{binary}` is a path; requests name a trusted binary, and the policy decides which file runs"
            ),
            "use the binary's name as the policy defines it under [binaries], e.g. `git`",
        ));
    }
    if !crate::policy::valid_binary_name(binary) {
        return Err(Denial::new(
            "request.binary",
            format!("`{}` is not a valid binary name", binary.escape_debug()),
            "binary names use letters, digits, `.`, `_`, `+` and `-`",
        ));
    }

    if let Some(i) = request.args.iter().position(|a| a.contains('\0')) {
        return Err(Denial::new(
            "request.args",
            format!(
                "argument {} contains a NUL byte, which cannot be passed to a program",
                i + 1
            ),
            "remove the NUL byte",
        ));
    }

    if let Some(cwd) = &request.cwd
        && cwd.contains('\0')
    {
        return Err(Denial::new(
            "request.cwd",
            "the working directory contains a NUL byte",
            "remove the NUL byte",
        ));
    }

    if request.env.len() > MAX_ENV_VARS {
        return Err(Denial::new(
            "request.env",
            format!(
                "the request injects {} variables; the limit is {MAX_ENV_VARS}",
                request.env.len()
            ),
            "inject fewer variables",
        ));
    }
    let mut bytes = 0;
    let mut names: Vec<&String> = request.env.keys().collect();
    names.sort();
    for name in names {
        let value = &request.env[name];
        if let Err(why) = check_env_name(name) {
            return Err(Denial::new(
                "request.env",
                format!(
                    "`{}` is not a valid variable name: {why}",
                    name.escape_debug()
                ),
                "variable names cannot be empty or contain `=` or NUL",
            ));
        }
        if value.contains('\0') {
            return Err(Denial::new(
                "request.env",
                format!("the value of {name} contains a NUL byte"),
                "remove the NUL byte",
            ));
        }
        bytes += name.len() + value.len() + 2;
    }
    if bytes > MAX_ENV_BYTES {
        return Err(Denial::new(
            "request.env",
            format!("the injected variables take {bytes} bytes; the limit is {MAX_ENV_BYTES}"),
            "inject less",
        ));
    }
    Ok(())
}
