//! The value log: large values kept out of sled's pages (key–value separation, as in
//! WiscKey). sled's B-tree stores a 24-byte pointer instead of the value; the value itself is
//! appended once to `values.log` beside the database and never rewritten.
//!
//! Why: sled rewrites a whole leaf (16 entries) every few updates and splits leaves as keys
//! grow; with documents, signature records and idempotent answers of several KiB in those
//! leaves, every small change rewrote hundreds of KiB and spilled pages into separate files.
//!
//! Crash safety: the applier thread appends a group's large values and `fdatasync`s them BEFORE it
//! applies the group's batch to sled, so sled never refers to a value that is not on disk.
//! A crash between the two leaves unreferenced bytes at the end of the log, which are never
//! read. Every pointer carries the value's CRC-32: a damaged log is reported as an unreadable
//! record, never returned as data. This module must not know what the values mean.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Values at least this long go to the log; shorter ones stay in sled's pages.
pub const INLINE_MAX: usize = 256;

/// Starts every pointer. A short value that happens to start with it is logged too, so that
/// an inline value is never mistaken for a pointer.
const MAGIC: &[u8; 8] = b"\0pvlog\x01\xff";
const POINTER_LEN: usize = 8 + 8 + 4 + 4;

/// Where a value lives in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    offset: u64,
    len: u32,
    crc: u32,
}

impl Pointer {
    pub fn encode(&self) -> [u8; POINTER_LEN] {
        let mut out = [0u8; POINTER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..20].copy_from_slice(&self.len.to_be_bytes());
        out[20..24].copy_from_slice(&self.crc.to_be_bytes());
        out
    }

    /// The pointer stored in `value`, if it is one.
    pub fn decode(value: &[u8]) -> Option<Pointer> {
        if value.len() != POINTER_LEN || !value.starts_with(MAGIC) {
            return None;
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&value[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&value[i..i + 4]);
            u32::from_be_bytes(b)
        };
        Some(Pointer {
            offset: u64_at(8),
            len: u32_at(16),
            crc: u32_at(20),
        })
    }
}

/// Whether `value` must go to the log rather than inline.
pub fn goes_to_log(value: &[u8]) -> bool {
    value.len() >= INLINE_MAX || value.starts_with(MAGIC)
}

#[derive(Debug, thiserror::Error)]
pub enum ValueLogError {
    #[error("value log i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("value of {len} bytes at offset {offset} is damaged (checksum mismatch)")]
    Damaged { offset: u64, len: u32 },
    #[error("value too large for the value log ({0} bytes)")]
    TooLarge(usize),
}

/// The append-only file. Appends come from the applier thread only; reads from anywhere.
pub struct ValueLog {
    file: File,
}

impl ValueLog {
    pub fn open(dir: &Path) -> Result<(ValueLog, u64), ValueLogError> {
        let file = super::files::private_file()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("values.log"))?;
        let end = file.metadata()?.len();
        Ok((ValueLog { file }, end))
    }

    /// Writes `bytes` at `offset` (the end of the log) and makes them durable.
    pub fn append_durable(&self, offset: u64, bytes: &[u8]) -> Result<(), ValueLogError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(bytes, offset)?;
        self.file.sync_data()?;
        Ok(())
    }

    /// Cuts the log back to `end` when it is longer (the bytes of a failed append, which no
    /// record refers to), durably.
    pub fn truncate(&self, end: u64) -> Result<(), ValueLogError> {
        if self.file.metadata()?.len() > end {
            self.file.set_len(end)?;
            self.file.sync_all()?;
        }
        Ok(())
    }

    /// The value a pointer designates, checked against its CRC.
    pub fn read(&self, p: Pointer) -> Result<Vec<u8>, ValueLogError> {
        let mut buf = vec![0u8; p.len as usize];
        self.file.read_exact_at(&mut buf, p.offset)?;
        if crc32fast::hash(&buf) != p.crc {
            return Err(ValueLogError::Damaged {
                offset: p.offset,
                len: p.len,
            });
        }
        Ok(buf)
    }
}

/// A group's large values on their way to the log.
pub struct Appender {
    start: u64,
    buf: Vec<u8>,
}

impl Appender {
    pub fn new(start: u64) -> Appender {
        Appender {
            start,
            buf: Vec::new(),
        }
    }

    /// Queues `value`; returns the pointer to store instead.
    pub fn push(&mut self, value: &[u8]) -> Result<Pointer, ValueLogError> {
        let len = u32::try_from(value.len()).map_err(|_| ValueLogError::TooLarge(value.len()))?;
        let p = Pointer {
            offset: self.start + self.buf.len() as u64,
            len,
            crc: crc32fast::hash(value),
        };
        self.buf.extend_from_slice(value);
        Ok(p)
    }

    /// The bytes to append at [`Appender::start`].
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    /// The end of the log once these bytes are written.
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_round_trip_and_plain_values_are_not_pointers() {
        let p = Pointer {
            offset: 1 << 40,
            len: 70_000,
            crc: 0xdead_beef,
        };
        assert_eq!(Pointer::decode(&p.encode()), Some(p));
        assert_eq!(Pointer::decode(b"{\"a\":1}"), None);
        let mut almost = p.encode().to_vec();
        almost.push(0);
        assert_eq!(Pointer::decode(&almost), None);
        assert!(
            goes_to_log(&p.encode()[..10]),
            "a value that looks like a pointer is logged"
        );
        assert!(!goes_to_log(b"short"));
        assert!(goes_to_log(&[b'x'; INLINE_MAX]));
    }

    #[test]
    fn values_are_read_back_and_damage_is_detected() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (log, end) = ValueLog::open(dir.path()).expect("open");
        assert_eq!(end, 0);
        let mut a = Appender::new(end);
        let p1 = a.push(b"first value").expect("push");
        let p2 = a.push(&[7u8; 1000]).expect("push");
        log.append_durable(a.start(), a.bytes()).expect("append");
        assert_eq!(log.read(p1).expect("read"), b"first value");
        assert_eq!(log.read(p2).expect("read"), vec![7u8; 1000]);
        drop(log);
        let (log, end) = ValueLog::open(dir.path()).expect("reopen");
        assert_eq!(end, a.end());
        log.file.write_all_at(b"X", p2.offset + 10).expect("damage");
        assert!(matches!(log.read(p2), Err(ValueLogError::Damaged { .. })));
        assert_eq!(log.read(p1).expect("read"), b"first value");
    }
}
