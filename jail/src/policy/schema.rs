//! The file schema: what may be written in a policy, before any check.
//!
//! Every key is `Option<Spanned<_>>` so a missing key can take its default and a bad one can
//! be reported at its line. Enumerated keys (`cache`, `restart`, `sandbox`, `log_level`) are
//! read as strings and checked in [`super::check`], which lists the accepted values; ids are
//! read as `i64` (TOML's integer) so a negative or huge id gets a message of ours.
//!
//! Adding a key: one field here, one in `ShareConfig`, one check.

use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{line_of, Diagnostic, PolicyError};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    pub broker: Option<Spanned<RawBroker>>,
    #[serde(default)]
    pub share: Vec<Spanned<RawShare>>,
}

/// `[broker]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBroker {
    pub runtime_dir: Option<Spanned<String>>,
    pub log_level: Option<Spanned<String>>,
}

/// One `[[share]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShare {
    pub tag: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub create: Option<Spanned<bool>>,
    pub socket: Option<Spanned<String>>,
    pub readonly: Option<Spanned<bool>>,
    pub cache: Option<Spanned<String>>,
    pub xattr: Option<Spanned<bool>>,
    pub uid_map: Option<Spanned<Vec<Spanned<RawIdMap>>>>,
    pub gid_map: Option<Spanned<Vec<Spanned<RawIdMap>>>>,
    pub rlimit_nofile: Option<Spanned<i64>>,
    pub restart: Option<Spanned<String>>,
    pub sandbox: Option<Spanned<String>>,
    pub allow_devices: Option<Spanned<bool>>,
    pub special_files: Option<Spanned<String>>,
    pub ownership: Option<Spanned<String>>,
    pub num_request_queues: Option<Spanned<i64>>,
    pub thread_pool_size: Option<Spanned<i64>>,
    pub poll_max_us: Option<Spanned<i64>>,
    pub seccomp: Option<Spanned<String>>,
    pub dax_window: Option<Spanned<RawSize>>,
    pub blksize: Option<Spanned<i64>>,
    pub announce_submounts: Option<Spanned<bool>>,
    pub migration_on_error: Option<Spanned<String>>,
    pub config_tag: Option<Spanned<bool>>,
    pub landlock: Option<Spanned<String>>,
}

/// A size in bytes: an integer, or a string with a K/M/G suffix (`"1G"`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawSize {
    Bytes(i64),
    Text(String),
}

/// `{ guest = 0, host = 1000, count = 1 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdMap {
    pub guest: Spanned<i64>,
    pub host: Spanned<i64>,
    pub count: Spanned<i64>,
}

/// Parses `text` into the raw schema; the first syntax or schema error is returned with its
/// line and, when it sits inside a `[[share]]` or `[broker]`, that table and key.
pub(crate) fn parse(file: &Path, text: &str) -> Result<RawPolicy, PolicyError> {
    toml::from_str::<RawPolicy>(text).map_err(|e| {
        let (line, context, message) = match e.span() {
            Some(span) => {
                let (context, key) = locate(text, span.start);
                let message = match key {
                    Some(key) => format!("{key}: {}", e.message()),
                    None => e.message().to_owned(),
                };
                (Some(line_of(text, span.start)), context, message)
            }
            None => (None, None, e.message().to_owned()),
        };
        PolicyError::Syntax(Diagnostic {
            file: file.to_path_buf(),
            line,
            context,
            message,
        })
    })
}

/// How a share is named in messages: by its tag when it has a usable one, else by its
/// position (`share #2`, 1-based).
pub(crate) fn share_name(index: usize, tag: Option<&str>) -> String {
    match tag {
        Some(tag) if !tag.is_empty() && tag.len() <= 64 && !tag.chars().any(char::is_control) => {
            format!("share {tag:?}")
        }
        _ => format!("share #{}", index + 1),
    }
}

/// For an error at byte `offset`: the table it is in (`share "home"`, `[broker]`) and the key
/// whose *value* holds it. A key is not returned when the error is on the key itself (an
/// unknown key: the message already names it). Uses toml's spanned document parser, which
/// accepts any syntactically valid file, so a schema error can still be located.
fn locate(text: &str, offset: usize) -> (Option<String>, Option<String>) {
    let Ok(doc) = DeTable::parse(text) else {
        return (None, None);
    };
    for (key, value) in doc.get_ref().iter() {
        let in_key = key.span().contains(&offset);
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("share", DeValue::Array(items)) => {
                for (index, item) in items.iter().enumerate() {
                    let DeValue::Table(table) = item.get_ref() else {
                        continue;
                    };
                    if let Some(found) = key_in(table, offset) {
                        let tag = table.iter().find_map(|(k, v)| match v.get_ref() {
                            DeValue::String(s) if k.get_ref() == "tag" => Some(s.as_ref()),
                            _ => None,
                        });
                        return (Some(share_name(index, tag)), found);
                    }
                }
            }
            ("broker", DeValue::Table(table)) => {
                if let Some(found) = key_in(table, offset) {
                    return (Some("[broker]".to_owned()), found);
                }
            }
            _ => {}
        }
        if in_key {
            return (None, None);
        }
        if value.span().contains(&offset) {
            return (None, Some(key.get_ref().to_string()));
        }
    }
    (None, None)
}

/// Within one table: `Some(Some(key))` when `offset` is in that key's value, `Some(None)`
/// when it is on a key name, `None` when the table does not hold it.
fn key_in(table: &DeTable<'_>, offset: usize) -> Option<Option<String>> {
    for (key, value) in table.iter() {
        if key.span().contains(&offset) {
            return Some(None);
        }
        if value.span().contains(&offset) {
            return Some(Some(key.get_ref().to_string()));
        }
    }
    None
}
