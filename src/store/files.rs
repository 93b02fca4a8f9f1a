//! Who may read the data directory: its owner only. The directory is created `0700` and the
//! files the store creates `0600`; on opening, an existing directory (or anything in it) open
//! to others is tightened, with a log line naming what was changed. The engines create their own
//! files: they are tightened right after the engine opened them, and any they create later sit
//! in a directory nobody else may enter.
//!
//! This module must not know what the files hold.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A directory's mode.
const DIR_MODE: u32 = 0o700;
/// A file's mode.
const FILE_MODE: u32 = 0o600;

/// The bytes the files under `dir` take on disk (allocated blocks, so a sparse file counts for
/// what it holds); files that vanish while it walks are skipped.
pub fn disk_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let Ok(entry) = entry else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                total = total.saturating_add(meta.blocks().saturating_mul(512));
            }
        }
    }
    Ok(total)
}

/// Creates `dir` (and its missing parents) owner-only.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Options that create a file readable and writable by its owner only.
pub fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Removes every permission of group and others from `dir` and everything under it (symbolic
/// links are left alone); returns what was changed, with its mode before.
pub fn tighten(dir: &Path) -> std::io::Result<Vec<(PathBuf, u32)>> {
    let mut changed = Vec::new();
    tighten_into(dir, &mut changed)?;
    Ok(changed)
}

fn tighten_into(path: &Path, changed: &mut Vec<(PathBuf, u32)>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode & !0o077))?;
        changed.push((path.to_path_buf(), mode));
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten_into(&entry?.path(), changed)?;
        }
    }
    Ok(())
}

/// [`tighten`], logging each change as a warning when `report` (a directory found open to
/// others), silently otherwise (files an engine has just created).
pub fn tighten_and_report(dir: &Path, report: bool) -> std::io::Result<()> {
    for (path, before) in tighten(dir)? {
        if report {
            tracing::warn!(
                path = %path.display(),
                before = format!("{before:o}"),
                after = format!("{:o}", before & !0o077),
                "the data directory was readable by others: permissions tightened to its owner only"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_lose_every_permission_of_others() {
        let root = tempfile::tempdir().expect("temporary directory");
        let dir = root.path().join("a/b");
        create_dir(&dir).expect("create");
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        private_file()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&f)
            .expect("open");
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(&f, Permissions::from_mode(0o644)).expect("chmod");
        let changed = tighten(&dir).expect("tighten");
        assert_eq!(changed, vec![(dir.clone(), 0o755), (f.clone(), 0o644)]);
        assert_eq!((mode(&dir), mode(&f)), (0o700, 0o600));
        assert!(tighten(&dir).expect("again").is_empty());
    }
}
