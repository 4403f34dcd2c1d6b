//! The decision file on disk, read as untrusted input. Whoever can create files in its
//! directory may have planted a symbolic link, a FIFO, a device or a huge file at the path, or
//! links at names the writer might use. So: only a regular file is read (checked with
//! `symlink_metadata` before opening, opened without following links and without blocking,
//! checked again on the open descriptor), at most [`MAX_FILE_BYTES`], with every text value at
//! most [`MAX_VALUE_BYTES`]; anything else is refused whole. A write goes to a new file with a
//! random name, created exclusively (`create_new`, `O_NOFOLLOW`) with mode 0600, synced, and
//! renamed over the path: a rename replaces a link planted at the path, never its target.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::Decision;

/// The largest decision file read: 8 MiB. A written entry takes about 200 bytes, so this holds
/// some 40,000 hosts; the writer keeps the newest entries that fit.
pub(crate) const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// The longest text value (host, profile name, reason) read from the file: 4 KiB. Host names
/// are at most 253 bytes; reasons are cut to this length when written.
pub(crate) const MAX_VALUE_BYTES: usize = 4096;

#[derive(Serialize, Deserialize)]
pub(super) struct FileEntry {
    pub(super) host: String,
    pub(super) port: u16,
    #[serde(flatten)]
    pub(super) decision: Decision,
}

#[derive(Serialize, Deserialize)]
pub(super) struct FileBody {
    pub(super) version: u32,
    pub(super) hosts: Vec<FileEntry>,
}

/// Why the decision file was not loaded: each says what was found and what is expected.
#[derive(Debug)]
pub(super) enum Refused {
    /// Not a regular file (a link, FIFO, device, directory or socket).
    NotAFile(&'static str),
    /// Bigger than [`MAX_FILE_BYTES`].
    TooBig(u64),
    /// A text value longer than [`MAX_VALUE_BYTES`].
    ValueTooLong { field: &'static str, len: usize },
    /// Not a decision file (bad JSON, truncated, wrong shape).
    Corrupt(serde_json::Error),
    /// It could not be read.
    Io(std::io::Error),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::NotAFile(kind) => write!(
                f,
                "it is {kind}, not a regular file (links are not followed and FIFOs or devices \
                 never opened); expected a regular file or nothing"
            ),
            Refused::TooBig(len) => write!(
                f,
                "it is {len} bytes, over the limit of {MAX_FILE_BYTES} bytes for a decision file"
            ),
            Refused::ValueTooLong { field, len } => write!(
                f,
                "a {field} is {len} bytes long, longer than the limit of {MAX_VALUE_BYTES} bytes"
            ),
            Refused::Corrupt(e) => write!(
                f,
                "it is corrupt or truncated ({e}); expected the JSON this crate writes"
            ),
            Refused::Io(e) => write!(f, "it cannot be read: {e}"),
        }
    }
}

/// What a file of this type is, if it is anything but a regular file.
pub(super) fn not_a_file(t: std::fs::FileType) -> Option<&'static str> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_block_device() || t.is_char_device() {
            return Some("a device");
        }
        if t.is_socket() {
            return Some("a socket");
        }
    }
    if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if !t.is_file() {
        Some("not a regular file")
    } else {
        None
    }
}

/// The file's bytes; `Ok(None)` when there is no file.
pub(super) fn read(path: &Path) -> Result<Option<Vec<u8>>, Refused> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Refused::Io(e)),
    };
    check(&meta)?;
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Swapped for a link or a FIFO since the check: fail, or open without blocking.
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(Refused::Io)?;
    check(&file.metadata().map_err(Refused::Io)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Refused::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Refused::TooBig(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

fn check(meta: &std::fs::Metadata) -> Result<(), Refused> {
    if let Some(kind) = not_a_file(meta.file_type()) {
        return Err(Refused::NotAFile(kind));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Refused::TooBig(meta.len()));
    }
    Ok(())
}

/// The file's contents, if they are a decision file within the limits (the whole file is
/// refused otherwise: a file with one absurd value was not written by this crate).
pub(super) fn parse(bytes: &[u8]) -> Result<FileBody, Refused> {
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Refused::TooBig(bytes.len() as u64));
    }
    let body: FileBody = serde_json::from_slice(bytes).map_err(Refused::Corrupt)?;
    for e in &body.hosts {
        for (field, value) in [
            ("host", &*e.host),
            ("profile", &*e.decision.profile),
            ("reason", &*e.decision.reason),
        ] {
            if value.len() > MAX_VALUE_BYTES {
                return Err(Refused::ValueTooLong {
                    field,
                    len: value.len(),
                });
            }
        }
    }
    Ok(body)
}

/// `reason` cut to at most [`MAX_VALUE_BYTES`], on a character boundary.
pub(super) fn clip(reason: &str) -> &str {
    let mut end = reason.len().min(MAX_VALUE_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// A warning, when the directory of `path` can be written by other users: they can replace
/// the decision file (a rename needs only the directory's write permission).
#[cfg(unix)]
pub(super) fn directory_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mode = std::fs::metadata(dir).ok()?.permissions().mode();
    (mode & 0o022 != 0).then(|| {
        format!(
            "the decision file's directory {} can be written by other users (mode {:o}): they \
             can replace the file and choose where a host's walk starts; use a directory only \
             this user can write (e.g. mode 700)",
            dir.display(),
            mode & 0o7777
        )
    })
}

#[cfg(not(unix))]
pub(super) fn directory_warning(_path: &Path) -> Option<String> {
    None
}

/// Writes `body` to `path` through a new 0600 file and a rename ([`crate::files::replace_private`]).
pub(super) fn replace(path: &Path, body: &[u8]) -> std::io::Result<()> {
    crate::files::replace_private(path, body)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_acceptable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"{}").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let kind = |p: &Path| not_a_file(std::fs::symlink_metadata(p).unwrap().file_type());
        assert_eq!(kind(&file), None);
        assert_eq!(kind(&link), Some("a symbolic link"));
        assert_eq!(kind(dir.path()), Some("a directory"));
        assert_eq!(kind(Path::new("/dev/null")), Some("a device"));
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        let s = "é".repeat(MAX_VALUE_BYTES);
        let c = clip(&s);
        assert!(c.len() <= MAX_VALUE_BYTES && c.len() >= MAX_VALUE_BYTES - 1);
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn a_temporary_name_is_never_reused_and_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.json");
        let (a, _) = crate::files::create_temporary(&path).unwrap();
        let (b, _) = crate::files::create_temporary(&path).unwrap();
        assert_ne!(a, b);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&a).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
