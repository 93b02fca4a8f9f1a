//! The value log: large values kept out of sled's pages (key–value separation, as in
//! WiscKey). sled's B-tree stores a 24-byte pointer instead of the value; the value itself is
//! appended once to the log beside the database and never rewritten in place.
//!
//! Generations: the log is a set of files, `values.log` (generation 0, the only one of older
//! versions) and `values.{g}.log`; a pointer names its value's generation (the top 16 bits of
//! its offset field, 0 in every pointer older versions wrote). Appends go to the greatest
//! generation present. Compaction (see `compact`) copies the live values into a new
//! generation, moves the pointers to it and only then removes the older files: every file a
//! pointer names stays until no durable pointer names it.
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

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Values at least this long go to the log; shorter ones stay in sled's pages.
pub const INLINE_MAX: usize = 256;

/// Starts every pointer. A short value that happens to start with it is logged too, so that
/// an inline value is never mistaken for a pointer.
const MAGIC: &[u8; 8] = b"\0pvlog\x01\xff";
const POINTER_LEN: usize = 8 + 8 + 4 + 4;

/// Bits of the offset field that hold the offset; the rest holds the generation.
const OFFSET_BITS: u32 = 48;
/// The largest offset within one generation's file (256 TiB).
const MAX_OFFSET: u64 = (1 << OFFSET_BITS) - 1;

/// Where a value lives in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    generation: u16,
    offset: u64,
    len: u32,
    crc: u32,
}

impl Pointer {
    pub fn encode(&self) -> [u8; POINTER_LEN] {
        let mut out = [0u8; POINTER_LEN];
        out[..8].copy_from_slice(MAGIC);
        let field = (u64::from(self.generation) << OFFSET_BITS) | (self.offset & MAX_OFFSET);
        out[8..16].copy_from_slice(&field.to_be_bytes());
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
        let field = u64_at(8);
        Some(Pointer {
            generation: (field >> OFFSET_BITS) as u16,
            offset: field & MAX_OFFSET,
            len: u32_at(16),
            crc: u32_at(20),
        })
    }

    /// The generation (file) the value is in.
    pub fn generation(&self) -> u16 {
        self.generation
    }

    /// The value's length in bytes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// The CRC-32 of the whole value.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// The damage error for this value (its checksum did not match).
    pub fn damaged(&self) -> ValueLogError {
        ValueLogError::Damaged {
            offset: self.offset,
            len: self.len,
        }
    }
}

/// The file of generation `g` in `dir`.
pub fn file_of(dir: &Path, g: u16) -> PathBuf {
    match g {
        0 => dir.join("values.log"),
        g => dir.join(format!("values.{g}.log")),
    }
}

/// The generations whose files `dir` holds, in order.
pub fn generations_in(dir: &Path) -> Result<Vec<u16>, ValueLogError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name == "values.log" {
            out.push(0);
        } else if let Some(g) = name
            .strip_prefix("values.")
            .and_then(|r| r.strip_suffix(".log"))
            .and_then(|g| g.parse::<u16>().ok())
            .filter(|g| *g > 0)
        {
            out.push(g);
        }
    }
    out.sort_unstable();
    Ok(out)
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
    #[error("value of {len} bytes at offset {offset} of generation {generation} refers to a file that is not there")]
    Missing {
        generation: u16,
        offset: u64,
        len: u32,
    },
    #[error("the value log's file of generation {0} is full")]
    Full(u16),
}

/// The append-only files. Appends come from the applier thread only, to the current (greatest)
/// generation; reads from anywhere, from any generation present when the log was opened.
pub struct ValueLog {
    files: BTreeMap<u16, File>,
    current: u16,
}

impl ValueLog {
    /// Opens every generation in `dir` (creating generation 0 in a new directory); returns the
    /// log and the end of its current generation.
    pub fn open(dir: &Path) -> Result<(ValueLog, u64), ValueLogError> {
        let mut generations = generations_in(dir)?;
        if generations.is_empty() {
            generations.push(0);
        }
        let mut files = BTreeMap::new();
        for g in generations {
            let file = super::files::private_file()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(file_of(dir, g))?;
            files.insert(g, file);
        }
        let (current, end) = match files.last_key_value() {
            Some((g, f)) => (*g, f.metadata()?.len()),
            None => (0, 0),
        };
        Ok((ValueLog { files, current }, end))
    }

    /// The generation appends go to.
    pub fn current(&self) -> u16 {
        self.current
    }

    /// Writes `parts` one after the other from `offset` (the end of the current generation)
    /// and makes them durable.
    pub fn append_durable(&self, offset: u64, parts: &[sled::IVec]) -> Result<(), ValueLogError> {
        if parts.iter().all(|p| p.is_empty()) {
            return Ok(());
        }
        let file = self
            .files
            .get(&self.current)
            .ok_or(ValueLogError::Full(self.current))?;
        let mut at = offset;
        for part in parts {
            file.write_all_at(part, at)?;
            at += part.len() as u64;
        }
        file.sync_data()?;
        Ok(())
    }

    /// Cuts the log back to `end` when it is longer (the bytes of a failed append, which no
    /// record refers to), durably.
    pub fn truncate(&self, end: u64) -> Result<(), ValueLogError> {
        let file = self
            .files
            .get(&self.current)
            .ok_or(ValueLogError::Full(self.current))?;
        if file.metadata()?.len() > end {
            file.set_len(end)?;
            file.sync_all()?;
        }
        Ok(())
    }

    /// `len` bytes of the value `p` designates, from `from` within it (not checked: the
    /// caller checks the whole value against [`Pointer::crc`] once it has read it all).
    pub fn read_range(&self, p: Pointer, from: u64, len: usize) -> Result<Vec<u8>, ValueLogError> {
        let missing = ValueLogError::Missing {
            generation: p.generation,
            offset: p.offset,
            len: p.len,
        };
        let file = self.files.get(&p.generation).ok_or(missing)?;
        let end = from.saturating_add(len as u64);
        if end > u64::from(p.len) {
            return Err(ValueLogError::Damaged {
                offset: p.offset,
                len: p.len,
            });
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, p.offset + from)?;
        Ok(buf)
    }

    /// The value a pointer designates, checked against its CRC.
    pub fn read(&self, p: Pointer) -> Result<Vec<u8>, ValueLogError> {
        let file = self
            .files
            .get(&p.generation)
            .ok_or(ValueLogError::Missing {
                generation: p.generation,
                offset: p.offset,
                len: p.len,
            })?;
        let mut buf = vec![0u8; p.len as usize];
        file.read_exact_at(&mut buf, p.offset)?;
        if crc32fast::hash(&buf) != p.crc {
            return Err(ValueLogError::Damaged {
                offset: p.offset,
                len: p.len,
            });
        }
        Ok(buf)
    }
}

/// A new generation written by compaction: values appended one by one, made durable together
/// by [`NewGeneration::sync`] before any pointer to them is stored.
pub struct NewGeneration {
    generation: u16,
    file: File,
    end: u64,
}

impl NewGeneration {
    /// Creates generation `generation`'s file in `dir`; refuses one that exists.
    pub fn create(dir: &Path, generation: u16) -> Result<NewGeneration, ValueLogError> {
        let file = super::files::private_file()
            .read(true)
            .write(true)
            .create_new(true)
            .open(file_of(dir, generation))?;
        Ok(NewGeneration {
            generation,
            file,
            end: 0,
        })
    }

    /// Writes `value` at the end; returns its pointer (durable after [`NewGeneration::sync`]).
    pub fn append(&mut self, value: &[u8]) -> Result<Pointer, ValueLogError> {
        let mut one = Appender::new(self.generation, self.end);
        let p = one.place(value)?;
        self.file.write_all_at(value, self.end)?;
        self.end = one.end();
        Ok(p)
    }

    pub fn sync(&self) -> Result<(), ValueLogError> {
        self.file.sync_data()?;
        Ok(())
    }
}

/// Values at least this long are written from their own buffer rather than copied into the
/// group's: a group of large documents is not held twice in memory.
const SHARED_MIN: usize = 64 * 1024;

/// A group's large values on their way to the log.
pub struct Appender {
    generation: u16,
    start: u64,
    len: u64,
    /// The bytes to write, in order: small values copied together, large ones shared.
    parts: Vec<sled::IVec>,
    small: Vec<u8>,
}

impl Appender {
    /// Values to append to generation `generation` from `start` (its end) on.
    pub fn new(generation: u16, start: u64) -> Appender {
        Appender {
            generation,
            start,
            len: 0,
            parts: Vec::new(),
            small: Vec::new(),
        }
    }

    /// The pointer of `value` placed at the end, which it then moves past.
    fn place(&mut self, value: &[u8]) -> Result<Pointer, ValueLogError> {
        let len = u32::try_from(value.len()).map_err(|_| ValueLogError::TooLarge(value.len()))?;
        let offset = self.start + self.len;
        if offset + u64::from(len) > MAX_OFFSET {
            return Err(ValueLogError::Full(self.generation));
        }
        self.len += u64::from(len);
        Ok(Pointer {
            generation: self.generation,
            offset,
            len,
            crc: crc32fast::hash(value),
        })
    }

    /// Queues `value` (copied); returns the pointer to store instead.
    pub fn push(&mut self, value: &[u8]) -> Result<Pointer, ValueLogError> {
        let p = self.place(value)?;
        self.small.extend_from_slice(value);
        Ok(p)
    }

    /// Queues `value`, shared rather than copied when it is large.
    pub fn push_shared(&mut self, value: &sled::IVec) -> Result<Pointer, ValueLogError> {
        if value.len() < SHARED_MIN {
            return self.push(value);
        }
        let p = self.place(value)?;
        if !self.small.is_empty() {
            let small = std::mem::take(&mut self.small);
            self.parts.push(sled::IVec::from(small));
        }
        self.parts.push(value.clone());
        Ok(p)
    }

    /// The bytes to append at [`Appender::start`], in order.
    pub fn parts(&mut self) -> &[sled::IVec] {
        if !self.small.is_empty() {
            let small = std::mem::take(&mut self.small);
            self.parts.push(sled::IVec::from(small));
        }
        &self.parts
    }

    pub fn start(&self) -> u64 {
        self.start
    }

    /// The end of the log once these bytes are written.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_round_trip_and_plain_values_are_not_pointers() {
        let p = Pointer {
            generation: 0,
            offset: 1 << 40,
            len: 70_000,
            crc: 0xdead_beef,
        };
        assert_eq!(Pointer::decode(&p.encode()), Some(p));
        // Generation 0 is the layout older versions wrote: the whole field is the offset.
        assert_eq!(&p.encode()[8..16], &(1u64 << 40).to_be_bytes());
        let later = Pointer { generation: 7, ..p };
        assert_eq!(Pointer::decode(&later.encode()), Some(later));
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
        let mut a = Appender::new(log.current(), end);
        let p1 = a.push(b"first value").expect("push");
        let p2 = a.push(&[7u8; 1000]).expect("push");
        let start = a.start();
        log.append_durable(start, a.parts()).expect("append");
        assert_eq!(log.read(p1).expect("read"), b"first value");
        assert_eq!(log.read(p2).expect("read"), vec![7u8; 1000]);
        drop(log);
        let (log, end) = ValueLog::open(dir.path()).expect("reopen");
        assert_eq!(end, a.end());
        log.files[&0]
            .write_all_at(b"X", p2.offset + 10)
            .expect("damage");
        assert!(matches!(log.read(p2), Err(ValueLogError::Damaged { .. })));
        assert_eq!(log.read(p1).expect("read"), b"first value");
    }
}
