//! A bounds check of a GGUF header before candle parses it.
//!
//! candle's reader trusts every length in the header and allocates what it says; a corrupt length (a
//! flipped bit in a string or array size) asks for exabytes and aborts the process instead of returning
//! an error. This walk reads the same structure without allocating by declared sizes and rejects any
//! length that runs past the end of the file, so a bad file is an error, never a crash.

use std::io::{BufReader, Read, Seek, SeekFrom};

const MAGIC: &[u8; 4] = b"GGUF";
const MAX_DIMS: u32 = 8;

struct Walker<R> {
    reader: BufReader<R>,
    pos: u64,
    len: u64,
    wide: bool,
}

impl<R: Read> Walker<R> {
    fn take(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.len.saturating_sub(self.pos) {
            return Err(format!("{what} of {n} bytes runs past the end of the file at byte {}", self.pos));
        }
        std::io::copy(&mut (&mut self.reader).take(n), &mut std::io::sink()).map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(())
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        if (N as u64) > self.len.saturating_sub(self.pos) {
            return Err(format!("{what} runs past the end of the file at byte {}", self.pos));
        }
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf).map_err(|e| format!("{what}: {e}"))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.bytes::<4>(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.bytes::<8>(what)?))
    }

    /// Sizes and counts are u32 in GGUF v1 and u64 from v2 on.
    fn size(&mut self, what: &str) -> Result<u64, String> {
        if self.wide { self.u64(what) } else { self.u32(what).map(u64::from) }
    }

    fn string(&mut self, what: &str) -> Result<(), String> {
        let n = self.size(what)?;
        self.take(n, what)
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<(), String> {
        match ty {
            0 | 1 | 7 => self.take(1, "value"),
            2 | 3 => self.take(2, "value"),
            4..=6 => self.take(4, "value"),
            10..=12 => self.take(8, "value"),
            8 => self.string("string value"),
            9 if depth < 4 => {
                let elem = self.u32("array type")?;
                let count = self.size("array length")?;
                let min_size = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    10..=12 => 8,
                    8 if self.wide => 8,
                    _ => 4,
                };
                if count.saturating_mul(min_size) > self.len.saturating_sub(self.pos) {
                    return Err(format!("array of {count} elements runs past the end of the file"));
                }
                for _ in 0..count {
                    self.value(elem, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("unknown metadata value type {other}")),
        }
    }
}

/// Walks the header (metadata and tensor table) and checks every declared length against `file_len`.
/// Leaves the reader at the start of the file.
pub(crate) fn check_header<R: Read + Seek>(file: &mut R, file_len: u64) -> Result<(), String> {
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut w = Walker { reader: BufReader::new(&mut *file), pos: 0, len: file_len, wide: true };
    if &w.bytes::<4>("magic")? != MAGIC {
        return Err("the file does not start with the GGUF magic".into());
    }
    let version = w.u32("version")?;
    if !(1..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version}"));
    }
    w.wide = version >= 2;
    let tensors = w.size("tensor count")?;
    let kvs = w.size("metadata count")?;
    for _ in 0..kvs {
        w.string("metadata key")?;
        let ty = w.u32("metadata type")?;
        w.value(ty, 0)?;
    }
    for _ in 0..tensors {
        w.string("tensor name")?;
        let dims = w.u32("tensor rank")?;
        if dims > MAX_DIMS {
            return Err(format!("tensor rank {dims} is implausible"));
        }
        let mut elems: u64 = 1;
        for _ in 0..dims {
            let d = w.size("tensor dimension")?;
            elems = elems.checked_mul(d).ok_or("tensor dimensions overflow")?;
        }
        w.u32("tensor type")?;
        w.u64("tensor offset")?;
    }
    drop(w);
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(kv_len: u64) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"GGUF");
        v.extend_from_slice(&3u32.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes()); // tensors
        v.extend_from_slice(&1u64.to_le_bytes()); // kvs
        v.extend_from_slice(&3u64.to_le_bytes());
        v.extend_from_slice(b"key");
        v.extend_from_slice(&8u32.to_le_bytes()); // string
        v.extend_from_slice(&kv_len.to_le_bytes());
        v.extend_from_slice(b"abc");
        v
    }

    #[test]
    fn well_formed_header_passes() {
        let h = header(3);
        assert!(check_header(&mut Cursor::new(&h), h.len() as u64).is_ok());
    }

    #[test]
    fn huge_declared_length_is_an_error_not_an_allocation() {
        let h = header(u64::MAX / 2);
        let err = check_header(&mut Cursor::new(&h), h.len() as u64).unwrap_err();
        assert!(err.contains("past the end"), "{err}");
    }

    #[test]
    fn wrong_magic_is_rejected() {
        let mut h = header(3);
        h[0] = b'X';
        assert!(check_header(&mut Cursor::new(&h), h.len() as u64).is_err());
    }
}
