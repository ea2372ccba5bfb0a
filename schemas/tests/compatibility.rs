//! Schema evolution, enforced. Every schema `avro/<Name>.avsc` has a history `avro/history/<Name>/<n>.avsc`
//! (n = 1, 2, ...): every change to a schema adds the new version there. The current schema must be
//! compatible in both directions with every historical version (backward: a reader with the new schema reads
//! data written with the old one; forward: a reader still on the old schema reads data written with the new
//! one), and the newest history version must equal the current file byte for byte, so no change can skip
//! the history. See `schemas/README.md`, "Schema evolution".
//!
//! The check is apache-avro's `SchemaCompatibility` plus two corrections where it departs from the Avro
//! specification's schema resolution rules (see `compatibility_problems`).

use std::error::Error as _;
use std::fs;
use std::path::{Path, PathBuf};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde_json::{json, Value};

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("avro")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every reason why `new` cannot replace `old`: empty when each can read data written with the other.
/// This is the one check function; the history test and the fixture tests all go through it.
fn compatibility_problems(old: &str, new: &str) -> Vec<String> {
    let mut parsed = Vec::new();
    for (which, text) in [("old", old), ("new", new)] {
        let json: Value = match serde_json::from_str(text) {
            Ok(json) => json,
            Err(e) => return vec![format!("the {which} schema is not JSON: {e}")],
        };
        if let Err(e) = Schema::parse(&json) {
            return vec![format!("the {which} schema does not parse: {e}")];
        }
        parsed.push(json);
    }
    let (old, new) = (&parsed[0], &parsed[1]);

    // apache-avro accepts a union field's default if it fits any branch of the union; the specification
    // requires it to fit the first branch (`["string","null"]` with default null is invalid, and Java and
    // fastavro reject it). Only the new schema is checked: older versions were checked when they were new.
    let mut problems = union_defaults_off_the_first_branch(new);

    for (direction, writer, reader) in [
        ("backward (new reader, old data)", old, new),
        ("forward (old reader, new data)", new, old),
    ] {
        let writer_schema = Schema::parse(writer).expect("parsed above");
        let reader_schema = Schema::parse(&with_unknown_symbols_defaulted(reader, writer))
            .expect("adding enum symbols keeps a schema valid");
        if let Err(e) = SchemaCompatibility::can_read(&writer_schema, &reader_schema) {
            let mut message = format!("{direction}: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            problems.push(message);
        }
    }
    problems
}

/// The reader schema as apache-avro's checker should see it. The checker requires a reader enum to list every
/// symbol of the writer's enum, but the specification resolves a symbol the reader does not know to the
/// reader enum's `default` when it has one (that is what `EventKind`'s default `OTHER` is for). So each reader
/// enum that has a default is given the writer's extra symbols of the same-named enum before checking; enums
/// without a default are left alone and still fail on a missing symbol.
fn with_unknown_symbols_defaulted(reader: &Value, writer: &Value) -> Value {
    fn unqualified(name: &str) -> &str {
        name.rsplit('.').next().unwrap_or(name)
    }
    fn enums<'v>(value: &'v Value, found: &mut Vec<(&'v str, &'v [Value])>) {
        match value {
            Value::Object(map) => {
                if let (Some("enum"), Some(name), Some(Value::Array(symbols))) = (
                    map.get("type").and_then(Value::as_str),
                    map.get("name").and_then(Value::as_str),
                    map.get("symbols"),
                ) {
                    found.push((unqualified(name), symbols));
                }
                map.values().for_each(|v| enums(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| enums(v, found)),
            _ => {}
        }
    }
    fn extend(value: &mut Value, writer_enums: &[(&str, &[Value])]) {
        match value {
            Value::Object(map) => {
                let is_enum_with_default = map.get("type").and_then(Value::as_str) == Some("enum")
                    && map.contains_key("default");
                let name = map
                    .get("name")
                    .and_then(Value::as_str)
                    .map(unqualified)
                    .map(str::to_owned);
                if let (true, Some(name), Some(Value::Array(symbols))) =
                    (is_enum_with_default, name, map.get_mut("symbols"))
                {
                    for (_, writer_symbols) in writer_enums.iter().filter(|(n, _)| *n == name) {
                        for symbol in writer_symbols.iter() {
                            if !symbols.contains(symbol) {
                                symbols.push(symbol.clone());
                            }
                        }
                    }
                }
                map.values_mut().for_each(|v| extend(v, writer_enums));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| extend(v, writer_enums)),
            _ => {}
        }
    }
    let mut writer_enums = Vec::new();
    enums(writer, &mut writer_enums);
    let mut reader = reader.clone();
    extend(&mut reader, &writer_enums);
    reader
}

/// Fields whose type is a union and whose default does not fit the union's first branch.
fn union_defaults_off_the_first_branch(schema: &Value) -> Vec<String> {
    fn fits(branch: &Value, default: &Value) -> bool {
        let kind = match branch {
            Value::String(name) => name.as_str(),
            Value::Object(map) => map.get("type").and_then(Value::as_str).unwrap_or(""),
            _ => return false, // a union directly inside a union is invalid anyway
        };
        match kind {
            "null" => default.is_null(),
            "boolean" => default.is_boolean(),
            "int" | "long" => default.is_i64() || default.is_u64(),
            "float" | "double" => default.is_number(),
            "string" | "bytes" | "enum" | "fixed" => default.is_string(),
            "array" => default.is_array(),
            "map" | "record" => default.is_object(),
            // A reference to a named type (record, enum or fixed): never null. apache-avro already checked
            // that the default fits some branch, which is as far as this simple check goes.
            _ => !default.is_null(),
        }
    }
    fn walk(value: &Value, problems: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(fields)) = map.get("fields") {
                    for field in fields {
                        if let (Some(Value::Array(branches)), Some(default)) =
                            (field.get("type"), field.get("default"))
                        {
                            if !branches.first().is_some_and(|first| fits(first, default)) {
                                problems.push(format!(
                                    "field {}: the default {default} does not fit the union's first branch \
                                     {} (the specification requires it to)",
                                    field["name"],
                                    branches.first().unwrap_or(&Value::Null),
                                ));
                            }
                        }
                    }
                }
                map.values().for_each(|v| walk(v, problems));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, problems)),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    walk(schema, &mut problems);
    problems
}

/// The history of schema `name`: (version, path), ordered by version. Panics unless the folder holds exactly
/// `1.avsc` to `<n>.avsc`.
fn history(name: &str) -> Vec<(u32, PathBuf)> {
    let dir = schemas_dir().join("history").join(name);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; every schema needs a history folder with its versions 1.avsc, 2.avsc, ...",
            dir.display()
        )
    });
    let mut versions: Vec<(u32, PathBuf)> = entries
        .map(|entry| {
            let path = entry.expect("read the history folder").path();
            let version = path
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.strip_suffix(".avsc"))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{}: history files are named <n>.avsc", path.display()));
            (version, path)
        })
        .collect();
    versions.sort();
    let numbers: Vec<u32> = versions.iter().map(|(v, _)| *v).collect();
    let expected: Vec<u32> = (1..=versions.len() as u32).collect();
    assert_eq!(
        numbers,
        expected,
        "{}: versions must be 1..n without gaps",
        dir.display()
    );
    versions
}

/// The current schemas: (name, text) of every `avro/*.avsc`.
fn current_schemas() -> Vec<(String, String)> {
    let mut schemas: Vec<(String, String)> = fs::read_dir(schemas_dir())
        .expect("read schemas/avro")
        .map(|entry| entry.expect("read schemas/avro").path())
        .filter(|path| path.extension().is_some_and(|e| e == "avsc"))
        .map(|path| {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("UTF-8 file name");
            (name.to_owned(), read(&path))
        })
        .collect();
    schemas.sort();
    schemas
}

fn stream_event() -> String {
    read(&schemas_dir().join("StreamEvent.avsc"))
}

fn fixture(name: &str) -> String {
    read(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

#[test]
fn every_schema_is_compatible_both_ways_with_each_of_its_history_versions() {
    let schemas = current_schemas();
    let names: Vec<&str> = schemas.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"StreamEvent"),
        "schemas/avro/*.avsc found: {names:?}"
    );

    let mut failures = Vec::new();
    for (name, current) in &schemas {
        let versions = history(name);
        let (newest, newest_path) = versions.last().expect("at least version 1");
        assert!(
            read(newest_path) == *current,
            "avro/{name}.avsc differs from its newest history version {newest} ({}): every change to a schema \
             adds it as avro/history/{name}/{}.avsc",
            newest_path.display(),
            newest + 1,
        );
        for (version, path) in &versions {
            for problem in compatibility_problems(&read(path), current) {
                failures.push(format!("{name} against its version {version}: {problem}"));
            }
        }
    }
    // No history for a schema that no longer exists: removing a schema is a breaking change too.
    let histories = fs::read_dir(schemas_dir().join("history")).expect("read schemas/avro/history");
    for entry in histories {
        let name = entry.expect("read schemas/avro/history").file_name();
        let name = name.to_str().expect("UTF-8 folder name");
        assert!(
            names.contains(&name),
            "history/{name} has no current avro/{name}.avsc"
        );
    }
    assert!(
        failures.is_empty(),
        "incompatible schema changes:\n{}",
        failures.join("\n")
    );
}

#[test]
fn an_incompatible_change_is_reported() {
    let problems =
        compatibility_problems(&stream_event(), &fixture("StreamEvent.incompatible.avsc"));
    println!("{problems:#?}");
    assert!(
        !problems.is_empty(),
        "StreamEvent.incompatible.avsc passed the check"
    );
}

#[test]
fn a_compatible_change_passes() {
    let problems = compatibility_problems(&stream_event(), &fixture("StreamEvent.compatible.avsc"));
    assert!(
        problems.is_empty(),
        "StreamEvent.compatible.avsc failed the check: {problems:#?}"
    );
}

/// The allowed and forbidden changes listed in schemas/README.md, each applied alone to the current
/// StreamEvent, so each rule is known to be enforced by the check (not just the first failure of a fixture).
#[test]
fn the_evolution_rules_of_the_readme_hold() {
    let current: Value = serde_json::from_str(&stream_event()).expect("StreamEvent.avsc is JSON");
    let changed = |change: &dyn Fn(&mut Vec<Value>)| {
        let mut schema = current.clone();
        change(schema["fields"].as_array_mut().expect("fields"));
        schema.to_string()
    };
    let field = |fields: &mut Vec<Value>, name: &str| -> usize {
        fields
            .iter()
            .position(|f| f["name"] == name)
            .expect("field exists")
    };
    type Change<'a> = (&'a str, bool, Box<dyn Fn(&mut Vec<Value>) + 'a>);
    let cases: Vec<Change> = vec![
        (
            "add an optional field with a default",
            true,
            Box::new(|f: &mut Vec<Value>| {
                f.push(json!({"name": "client", "type": ["null", "string"], "default": null}))
            }),
        ),
        (
            "add a string field with a default",
            true,
            Box::new(|f: &mut Vec<Value>| {
                f.push(json!({"name": "client", "type": "string", "default": "unknown"}))
            }),
        ),
        (
            "add an enum symbol (EventKind has a default)",
            true,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "kind");
                f[i]["type"]["symbols"]
                    .as_array_mut()
                    .expect("symbols")
                    .push(json!("REACTION"))
            }),
        ),
        (
            "remove a field that has a default",
            true,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "text");
                f.remove(i);
            }),
        ),
        (
            "drop the timestamp-millis logical type",
            true,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "created_ms");
                f[i]["type"] = json!("long")
            }),
        ),
        (
            "add a field without a default",
            false,
            Box::new(|f: &mut Vec<Value>| f.push(json!({"name": "client", "type": "string"}))),
        ),
        (
            "remove a field that has no default",
            false,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "origin");
                f.remove(i);
            }),
        ),
        (
            "rename a field",
            false,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "user_id");
                f[i]["name"] = json!("viewer_id")
            }),
        ),
        (
            "rename a field with an alias",
            false,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "user_id");
                f[i]["name"] = json!("viewer_id");
                f[i]["aliases"] = json!(["user_id"])
            }),
        ),
        (
            "change a field's type",
            false,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "user_id");
                f[i]["type"] = json!("long")
            }),
        ),
        (
            "make a field nullable",
            false,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "origin");
                f[i]["type"] = json!(["null", "string"]);
                f[i]["default"] = json!(null)
            }),
        ),
        (
            "make a nullable field required",
            false,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "text");
                f[i]["type"] = json!("string");
                f[i]["default"] = json!("")
            }),
        ),
        (
            "change timestamp-millis to timestamp-micros",
            false,
            Box::new(|f: &mut Vec<Value>| {
                // Same Parsing Canonical Form, so the same fingerprint: readers could not even tell the versions
                // apart. apache-avro rejects it; the specification's resolution rules ignore logical types.
                let i = field(f, "created_ms");
                f[i]["type"]["logicalType"] = json!("timestamp-micros")
            }),
        ),
        (
            "remove an enum symbol from an enum without a default",
            false,
            Box::new(|f: &mut Vec<Value>| {
                let i = field(f, "kind");
                let kind = f[i]["type"].as_object_mut().expect("enum");
                kind.remove("default");
                kind["symbols"] = json!(["COMMENT", "LIKE"])
            }),
        ),
        (
            "a union default that is not of the first branch",
            false,
            Box::new(|f: &mut Vec<Value>| {
                // apache-avro alone accepts this one; see union_defaults_off_the_first_branch.
                f.push(json!({"name": "client", "type": ["string", "null"], "default": null}))
            }),
        ),
    ];
    let mut wrong = Vec::new();
    for (what, allowed, change) in &cases {
        let problems = compatibility_problems(&current.to_string(), &changed(change.as_ref()));
        println!("{what}: {problems:?}");
        if problems.is_empty() != *allowed {
            wrong.push(format!(
                "{what}: expected {}, got {problems:?}",
                if *allowed { "allowed" } else { "rejected" }
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the check does not enforce the README's rules:\n{}",
        wrong.join("\n")
    );
}
