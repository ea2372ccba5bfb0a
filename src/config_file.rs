//! `--config FILE` (or `CHORUS_CONFIG`): options from a file of `NAME=value` lines (dotenv syntax: comments,
//! quotes, `export` allowed), where every NAME is the environment variable of an option, as `--help` lists them.
//! Flags win over the environment, the environment over the file, the file over the defaults; so one file can
//! hold a deployment's settings for every role, and a flag or variable still changes one of them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The global option naming the file, and its variable.
pub const FLAG: &str = "--config";
pub const VARIABLE: &str = "CHORUS_CONFIG";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
    #[error(
        "the config file {path} sets {name}, which is not an option's variable (`chorus <role> --help` lists them)"
    )]
    Unknown { path: PathBuf, name: String },
}

/// The file named by `--config FILE` / `--config=FILE` among `args` (the program name first), else by
/// `CHORUS_CONFIG`.
pub fn path_in(args: &[OsString]) -> Option<PathBuf> {
    let prefix = format!("{FLAG}=");
    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        let Some(word) = word.to_str() else { continue };
        if word == "--" {
            break;
        }
        if word == FLAG {
            return words.next().map(PathBuf::from);
        }
        if let Some(path) = word.strip_prefix(&prefix) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(VARIABLE).map(PathBuf::from)
}

/// Every environment variable an option of `command` or of one of its subcommands reads.
pub fn option_variables(command: &clap::Command) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .filter_map(|name| name.to_str().map(str::to_owned))
        .collect();
    for sub in command.get_subcommands() {
        names.extend(option_variables(sub));
    }
    names
}

/// Reads `path` and sets each of its variables that the environment does not set already. Every name must
/// be in `known`, so a misspelt option stops the start instead of being ignored. Call it before any thread
/// starts (the environment is process-wide). Returns the variables it set.
pub fn load(path: &Path, known: &BTreeSet<String>) -> Result<Vec<String>, ConfigFileError> {
    let read_error = |source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    for entry in dotenvy::from_path_iter(path).map_err(read_error)? {
        let (name, value) = entry.map_err(read_error)?;
        if !known.contains(&name) {
            return Err(ConfigFileError::Unknown {
                path: path.to_owned(),
                name,
            });
        }
        entries.push((name, value));
    }
    let mut set = Vec::new();
    for (name, value) in entries {
        if std::env::var_os(&name).is_none() {
            std::env::set_var(&name, value);
            set.push(name);
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_flag_is_found_in_either_form_before_a_double_dash() {
        assert_eq!(
            path_in(&args(&["chorus", "edge", "--config", "a.env"])),
            Some(PathBuf::from("a.env"))
        );
        assert_eq!(
            path_in(&args(&["chorus", "--config=b.env", "ingest"])),
            Some(PathBuf::from("b.env"))
        );
        assert_eq!(
            path_in(&args(&["chorus", "ingest", "--", "--config=c.env"])),
            std::env::var_os(VARIABLE).map(PathBuf::from)
        );
    }
}
