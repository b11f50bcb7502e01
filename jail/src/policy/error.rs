//! Policy errors. Every problem found in a file names the file, the line and the key, in the
//! compiler-like form `policy.toml:12: share "home": path "/nope" does not exist`, so an
//! operator (or an editor) can jump to it.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why a policy was refused.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{}: cannot read the policy: {source}", file.display())]
    Read { file: PathBuf, source: io::Error },
    #[error("{}: not a regular file", file.display())]
    NotAFile { file: PathBuf },
    #[error("{}: larger than {limit} bytes; not a policy file?", file.display())]
    TooLarge { file: PathBuf, limit: u64 },
    /// The file is not valid TOML or does not follow the schema (wrong key, wrong type).
    /// Parsing stops at the first such error.
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The file parsed, but the settings are wrong. Every problem found is listed, one per
    /// line, in file order.
    #[error("{}", Diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

/// Collects the diagnostics of one file as its checks find them.
pub(crate) struct Diags<'a> {
    file: &'a Path,
    text: &'a str,
    pub list: Vec<Diagnostic>,
}

impl<'a> Diags<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        Diags {
            file,
            text,
            list: Vec::new(),
        }
    }

    /// The 1-based line of byte `offset` of the file.
    pub fn line_of(&self, offset: usize) -> usize {
        line_of(self.text, offset)
    }

    /// Records `message` about `context` at the line where `span` starts.
    pub fn at(&mut self, span: Range<usize>, context: &str, message: String) {
        self.list.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: Some(line_of(self.text, span.start)),
            context: Some(context.to_owned()),
            message,
        });
    }
}

/// One problem at one place of a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; `None` for problems of the whole file (no shares at all).
    pub line: Option<usize>,
    /// What the problem is about: `share "home"`, `share #2` (a share without a usable tag),
    /// `[broker]`; `None` at top level.
    pub context: Option<String>,
    /// Starts with the key, e.g. `path "/nope" does not exist`.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(context) = &self.context {
            write!(f, "{context}: ")?;
        }
        f.write_str(&self.message)
    }
}

struct Diagnostics<'a>(&'a [Diagnostic]);

impl fmt::Display for Diagnostics<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl PolicyError {
    /// Every diagnostic carried (empty when the file could not be read); handy for tests and for `fsjail check`.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Read { .. }
            | PolicyError::NotAFile { .. }
            | PolicyError::TooLarge { .. } => &[],
            PolicyError::Syntax(d) => std::slice::from_ref(d),
            PolicyError::Invalid(ds) => ds,
        }
    }
}

/// 1-based line of byte `offset` in `text` (an offset past the end counts as the last line).
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    // Offsets from toml always fall on char boundaries; `get` keeps a bad one from panicking.
    let prefix = text.as_bytes().get(..end).unwrap_or(text.as_bytes());
    prefix.iter().filter(|&&b| b == b'\n').count() + 1
}
