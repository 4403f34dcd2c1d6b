//! The `--config` file as parsed TOML, kept next to the typed settings read from it so that an
//! error can name the line and key of a value: TOML errors carry a byte span, which the parsed
//! tree maps to the key holding it, and a value found bad after reading is looked up by its
//! key path for its span.

use std::fmt::Display;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::{ConfigError, ProxyArgs};

/// One step of a key path: a table key, or an index in an array (of values or of tables).
#[derive(Clone, Copy, Debug)]
pub(super) enum Seg<'k> {
    Key(&'k str),
    Index(usize),
}

/// A parsed config file.
pub(super) struct Doc<'t> {
    path: &'t Path,
    text: &'t str,
    root: DeTable<'t>,
}

impl<'t> Doc<'t> {
    /// No file: nothing in it, so nothing to locate.
    pub(super) fn empty() -> Doc<'static> {
        Doc {
            path: Path::new(""),
            text: "",
            root: DeTable::new(),
        }
    }

    /// Parses the file's TOML; a syntax error names its line (and its key when it is in a
    /// value, as far as the parser could recover the document).
    pub(super) fn parse(path: &'t Path, text: &'t str) -> Result<Doc<'t>, ConfigError> {
        let (root, errors) = DeTable::parse_recoverable(text);
        let doc = Doc {
            path,
            text,
            root: root.into_inner(),
        };
        match errors.first() {
            Some(e) => Err(doc.toml_error(e)),
            None => Ok(doc),
        }
    }

    /// The typed settings in the file; an unknown key or a value of the wrong type names its
    /// line and key.
    pub(super) fn settings(&self) -> Result<ProxyArgs, ConfigError> {
        toml::from_str(self.text).map_err(|e| self.toml_error(&e))
    }

    /// The error for the value at this key path: `FILE:LINE: key \`k\`: message`, `k` being the
    /// path's last key.
    pub(super) fn at(&self, path: &[Seg], message: impl Display) -> ConfigError {
        let key = path
            .iter()
            .rev()
            .find_map(|s| match s {
                Seg::Key(k) => Some(*k),
                Seg::Index(_) => None,
            })
            .unwrap_or_default()
            .to_string();
        match self.span(path) {
            Some(start) => ConfigError::Key {
                path: self.path.to_path_buf(),
                line: self.line(start),
                key,
                message: message.to_string(),
            },
            // Values checked here were read from the file, so their key is in it; should the
            // tree and the typed settings ever disagree, the error still names the key.
            None => ConfigError::File {
                path: self.path.to_path_buf(),
                message: format!("key `{key}`: {message}"),
            },
        }
    }

    /// Where the value at this key path starts.
    fn span(&self, path: &[Seg]) -> Option<usize> {
        let (first, rest) = path.split_first()?;
        let Seg::Key(k) = first else { return None };
        let mut v: &Spanned<DeValue> = self.root.get(*k)?;
        for s in rest {
            v = match (s, v.get_ref()) {
                (Seg::Key(k), DeValue::Table(t)) => t.get(*k)?,
                (Seg::Index(i), DeValue::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(v.span().start)
    }

    /// A TOML error (syntax, unknown key or wrong type), located by its span.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let path = self.path.to_path_buf();
        let message = e.message().trim_end().to_string();
        let Some(span) = e.span() else {
            return ConfigError::File { path, message };
        };
        let line = self.line(span.start);
        match key_at(&self.root, span.start) {
            Some(key) => ConfigError::Key {
                path,
                line,
                key: key.to_string(),
                message,
            },
            None => ConfigError::Line {
                path,
                line,
                message,
            },
        }
    }

    /// The line (from 1) holding this byte offset.
    fn line(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map_or(1, |t| t.bytes().filter(|&b| b == b'\n').count() + 1)
    }
}

/// The key whose name or value holds this byte offset; the innermost one (of the smallest
/// span) when tables nest, so that an error in `[limits]` names `max_connections`.
fn key_at<'a>(table: &'a DeTable, offset: usize) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    visit(table, offset, &mut best);
    best.map(|(_, k)| k)
}

fn visit<'a>(table: &'a DeTable, offset: usize, best: &mut Option<(usize, &'a str)>) {
    for (k, v) in table.iter() {
        for span in [k.span(), v.span()] {
            let holds = span.contains(&offset) || (span.is_empty() && span.start == offset);
            if holds && best.is_none_or(|(len, _)| span.len() < len) {
                *best = Some((span.len(), k.get_ref().as_ref()));
            }
        }
        match v.get_ref() {
            DeValue::Table(t) => visit(t, offset, best),
            DeValue::Array(a) => {
                for item in a.iter() {
                    if let DeValue::Table(t) = item.get_ref() {
                        visit(t, offset, best);
                    }
                }
            }
            _ => {}
        }
    }
}
