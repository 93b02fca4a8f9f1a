//! Spool files: content on its way into the store (an upload being received) kept on disk in
//! `DATA/spool/` instead of memory. Owner-only like every file of the data directory; a spool
//! file is removed when it is dropped (the upload stored, refused or abandoned), and whatever a
//! crash left there is removed when the store is opened.
//!
//! This module must not know what the files hold.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of the spool files under the data directory.
pub const SPOOL_DIR: &str = "spool";

/// Creates the spool directory of `data` (owner-only) and empties it: nothing in it belongs
/// to a live upload when the store opens.
pub fn prepare(data: &Path) -> std::io::Result<PathBuf> {
    let dir = data.join(SPOOL_DIR);
    super::files::create_dir(&dir)?;
    let mut removed = 0usize;
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(
            files = removed,
            "removed the spool files of uploads a previous run left unfinished"
        );
    }
    Ok(dir)
}

/// One spool file: written in order, read back from the start, removed on drop.
pub struct SpoolFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl SpoolFile {
    /// A new empty spool file in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<SpoolFile> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("upload-{}-{n}", std::process::id()));
        let file = super::files::private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(SpoolFile { file, path, len: 0 })
    }

    /// Appends `bytes` (a full disk is reported as such).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), super::StoreError> {
        self.file.write_all(bytes).map_err(|e| {
            if super::is_no_space(&e) {
                super::StoreError::NoSpace(format!("spooling an upload: {e}"))
            } else {
                super::StoreError::Io(e)
            }
        })?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// The bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Everything written, read back whole.
    pub fn read_all(&mut self) -> Result<Vec<u8>, super::StoreError> {
        let len = usize::try_from(self.len)
            .map_err(|_| std::io::Error::other("spool file larger than memory"))?;
        let out = self.read_into(len)?;
        Ok(out)
    }

    fn read_into(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        use std::io::Seek;
        let mut out = Vec::with_capacity(len);
        self.file.seek(std::io::SeekFrom::Start(0))?;
        (&mut self.file).take(self.len).read_to_end(&mut out)?;
        Ok(out)
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a spool file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_files_are_private_read_back_and_removed_on_drop_and_at_start() {
        use std::os::unix::fs::PermissionsExt;
        let data = tempfile::tempdir().expect("temporary directory");
        let dir = prepare(data.path()).expect("prepare");
        let mut f = SpoolFile::create(&dir).expect("create");
        f.write(b"abc").expect("write");
        f.write(b"def").expect("write");
        assert_eq!(f.read_all().expect("read"), b"abcdef");
        let mode = std::fs::metadata(&f.path)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        drop(f);
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 0);
        std::fs::write(dir.join("upload-left-over"), b"x").expect("write");
        prepare(data.path()).expect("prepare again");
        assert_eq!(std::fs::read_dir(&dir).expect("list").count(), 0);
    }
}
