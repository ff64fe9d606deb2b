//! The `imcore.format` file that marks a database directory as the
//! crate's, and says which format wrote it.
//!
//! sled itself happily starts a new database over files it does not
//! recognise, which would destroy them: a directory is opened only when it
//! is missing, empty, or marked. A directory marked with a format this
//! version migrates ([`migrate`](super::migrate)) is opened too, and its
//! marker is rewritten once the database inside has been brought up to
//! date; a crash in between leaves the old marker over a current database,
//! which opens the same way.

use std::io::Write;
use std::path::Path;

use super::{migrate, old_format, BACKEND, FORMAT_VALUE};
use crate::error::{Error, Result};

/// The marker file's name, in the database directory.
const MARKER_FILE: &str = "imcore.format";

/// What [`claim_directory`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// Missing or empty: now marked with the current format.
    Fresh,
    /// Marked with the current format.
    Current,
    /// Marked with a format this version migrates when it opens the
    /// database; [`mark_current`] once it has.
    Migrate,
}

fn io(e: std::io::Error) -> Error {
    Error::Storage {
        backend: BACKEND,
        source: Box::new(e),
    }
}

/// The marker's contents for the current format.
fn current() -> Vec<u8> {
    let mut expected = FORMAT_VALUE.to_vec();
    expected.push(b'\n');
    expected
}

/// Checks that `path` is missing, empty, or marked as an imcore database of
/// a format this version reads, and marks it when it is new.
pub(super) fn claim_directory(path: &Path) -> Result<Claim> {
    let fresh = match std::fs::read_dir(path) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(io(e)),
    };
    let marker = path.join(MARKER_FILE);
    if fresh {
        std::fs::create_dir_all(path).map_err(io)?;
        std::fs::write(&marker, current()).map_err(io)?;
        return Ok(Claim::Fresh);
    }
    match std::fs::read(&marker) {
        Ok(v) if v.trim_ascii_end() == FORMAT_VALUE => Ok(Claim::Current),
        Ok(v) if migrate::MIGRATED.contains(&v.trim_ascii_end()) => Ok(Claim::Migrate),
        Ok(v) => Err(old_format(v.trim_ascii_end()).unwrap_or_else(|| {
            Error::corrupt(format!(
                "{} says {:?}, expected {:?}",
                marker.display(),
                String::from_utf8_lossy(&v),
                String::from_utf8_lossy(FORMAT_VALUE)
            ))
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::corrupt(format!(
            "{} is not empty and has no {MARKER_FILE}: not an imcore database",
            path.display()
        ))),
        Err(e) => Err(io(e)),
    }
}

/// Rewrites the marker of `path` to the current format, after its database
/// was migrated: a new file, synced, renamed over the old one, so that a
/// crash leaves one marker or the other, never a torn one.
pub(super) fn mark_current(path: &Path) -> Result<()> {
    let next = path.join(format!("{MARKER_FILE}.next"));
    let mut file = std::fs::File::create(&next).map_err(io)?;
    file.write_all(&current()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&next, path.join(MARKER_FILE)).map_err(io)?;
    // The rename is durable once the directory is synced.
    std::fs::File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io)
}
