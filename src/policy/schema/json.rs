//! The JSON Schema of the policy format, generated from the key
//! specification, for editors that validate and complete policy files.

use super::{Builtin, KeySpec, Kind, TOP};
use serde_json::{Value, json};

/// The JSON Schema (draft 2020-12) of the policy format.
pub fn json_schema() -> Value {
    let mut schema = table_schema(TOP);
    let object = schema.as_object_mut().expect("a table schema is an object");
    object.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    object.insert(
        "$id".into(),
        json!("https://jobwarden.invalid/policy/v1.schema.json"),
    );
    object.insert("title".into(), json!("jobwarden trust policy, version 1"));
    object.insert(
        "description".into(),
        json!("Which plugins may run which binaries, and with what environment, paths, ports and limits. Documented key by key in policy/README.md."),
    );
    object.insert("required".into(), json!(["version"]));
    schema
}

fn table_schema(specs: &'static [KeySpec]) -> Value {
    let mut properties = serde_json::Map::new();
    for spec in specs {
        let mut value = kind_schema(spec.kind);
        if let Some(object) = value.as_object_mut() {
            object.insert("description".into(), json!(spec.description()));
            if let Some(default) = spec.default {
                object.insert("default".into(), builtin_json(default));
            }
        }
        properties.insert(spec.name.into(), value);
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

fn builtin_json(default: Builtin) -> Value {
    match default {
        Builtin::Bool(b) => json!(b),
        Builtin::Integer(n) => json!(n),
        Builtin::Number(n) => json!(n),
        Builtin::Word(w) => json!(w),
    }
}

fn kind_schema(kind: Kind) -> Value {
    const SIZE_PATTERN: &str =
        r"^\s*[0-9_]+(\.[0-9]+)?\s*(B|b|K|k|KiB|Ki|M|MiB|Mi|G|GiB|Gi|T|TiB|Ti|kB|KB|MB|GB|TB)?\s*$";
    const PATH_PATTERN: &str = r"^(/|\{(repo|home|tmp)\}(/|$))";
    match kind {
        Kind::Integer { min } => json!({"type": "integer", "minimum": min}),
        Kind::Number { min, max } => json!({"type": "number", "minimum": min, "maximum": max}),
        Kind::Bool => json!({"type": "boolean"}),
        Kind::Str => json!({"type": "string"}),
        Kind::Choice(values) => json!({"enum": values}),
        Kind::ChoiceOrTable(values, specs) => {
            json!({"anyOf": [{"enum": values}, table_schema(specs)]})
        }
        Kind::Size { unlimited, min } => {
            let mut any = vec![
                json!({"type": "integer", "minimum": min}),
                json!({"type": "string", "pattern": SIZE_PATTERN}),
            ];
            if unlimited {
                any.push(json!({"const": "unlimited"}));
            }
            json!({"anyOf": any})
        }
        Kind::CountOrUnlimited { min } => {
            json!({"anyOf": [{"type": "integer", "minimum": min.max(1)}, {"const": "unlimited"}]})
        }
        Kind::Sha256 => json!({"type": "string", "pattern": "^(sha256:)?[0-9a-fA-F]{64}$"}),
        Kind::Path => json!({"type": "string", "pattern": PATH_PATTERN}),
        Kind::PathList => {
            json!({"type": "array", "items": {"type": "string", "pattern": PATH_PATTERN}, "uniqueItems": true})
        }
        Kind::GlobList | Kind::StringList | Kind::RegexList => {
            json!({"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": true})
        }
        Kind::ArgPatterns => json!({
            "type": "array",
            "minItems": 1,
            "items": {"type": "array", "items": {"type": "string"}},
            "uniqueItems": true
        }),
        Kind::Ports { allow_zero } => json!({
            "type": "array",
            "items": {"type": "integer", "minimum": if allow_zero { 0 } else { 1 }, "maximum": 65535},
            "uniqueItems": true
        }),
        Kind::StringTable => json!({
            "type": "object",
            "propertyNames": {"pattern": "^[^=\\u0000]+$"},
            "additionalProperties": {"type": "string"}
        }),
        Kind::Table(specs) => table_schema(specs),
        Kind::NamedTables(specs) => {
            json!({"type": "object", "additionalProperties": table_schema(specs)})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_schema_is_the_generated_one() {
        let generated = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policy/jobwarden.schema.json"
        ))
        .unwrap_or_default();
        assert!(
            generated == shipped,
            "policy/jobwarden.schema.json is out of date: run `cargo run -- schema > policy/jobwarden.schema.json`"
        );
    }
}
