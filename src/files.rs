//! Reading a small file the user named (a CA bundle, a client key, a configuration file)
//! safely: only a regular file, opened without blocking and without becoming a controlling
//! terminal (a FIFO or a device in its place is an error, never a wait that holds a reload or
//! a start), at most a bounded size.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The largest CA file read: far more than a bundle needs (Mozilla's is about 220 KB).
pub(crate) const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// The file's bytes, if it is a regular file of at most `max` bytes; otherwise an error that
/// says why (`not a regular file ...`, `N bytes, more than the M read`). What the crate reads
/// a CA file with, for programs that read the files their settings name the same way.
///
/// ```
/// let dir = std::env::temp_dir().join(format!("tls-fallback-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let file = dir.join("roots.pem");
/// std::fs::write(&file, b"pem").unwrap();
/// assert_eq!(tls_fallback::read_bounded_file(&file, 1024).unwrap(), b"pem");
/// assert!(tls_fallback::read_bounded_file(&dir, 1024).is_err(), "a directory is refused");
/// assert!(tls_fallback::read_bounded_file(&file, 2).is_err(), "too large");
/// ```
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, a device or a directory is never read)",
        ));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than the {max} read",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(
            "it grew past the limit while being read",
        ));
    }
    Ok(bytes)
}

/// Replaces the file at `path` with `body`: a new file with a random name next to it (created
/// exclusively, never through a link, mode 0600), synced, then renamed over `path`. A crash
/// never leaves half a file, and a link planted at `path` is replaced, never followed. How the
/// decision file is written, for programs that write a private file the same way (the
/// proxy's interception CA key).
pub fn replace_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    replace(path, body, 0o600)
}

/// [`replace_private`] for a file everyone may read (mode 0644, set on the new file before the
/// rename, never through the path: a certificate that apps trust).
pub fn replace_public(path: &Path, body: &[u8]) -> std::io::Result<()> {
    replace(path, body, 0o644)
}

fn replace(path: &Path, body: &[u8], mode: u32) -> std::io::Result<()> {
    let (tmp, mut file) = create_temporary(path)?;
    let written = (|| {
        file.write_all(body)?;
        #[cfg(unix)]
        if mode != 0o600 {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A new file `<path>.<16 random hex digits>.tmp`; a few tries if a name is taken.
pub(crate) fn create_temporary(path: &Path) -> std::io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..4 {
        let mut random = [0u8; 8];
        openssl::rand::rand_bytes(&mut random).map_err(std::io::Error::other)?;
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        for b in random {
            name.push(format!("{b:02x}"));
        }
        name.push(".tmp");
        let tmp = PathBuf::from(name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_read_and_a_fifo_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let e = read_bounded(&fifo, MAX_BYTES).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let e = read_bounded(dir.path(), MAX_BYTES).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, b"pem").unwrap();
        assert_eq!(read_bounded(&file, MAX_BYTES).unwrap(), b"pem");
    }
}
