//! NDR 2.0 marshalling ([C706] 14), little-endian only, with a reader that bounds its work.
//!
//! The reader never trusts a count from the server: every conformance (maximum count),
//! actual count and string length is checked against the bytes left in the message
//! *before* anything is allocated, every element is charged to a per-message budget, and
//! nesting (for DRSUAPI the linked list of replicated objects) is capped. It never panics.
//!
//! Layout rules used throughout (C706 14.2.2, 14.3): a primitive is aligned to its size;
//! a structure to its largest member; a conformant structure or array carries its
//! maximum count first (as an `unsigned long`), then the structure is aligned; embedded
//! pointers are 4-byte referent ids whose referents are *deferred* to after the
//! outermost construct, in member order, each referent followed by its own deferred
//! referents (depth first, as Samba's pidl and Microsoft's MIDL write them).
//!
//! [C706]: https://pubs.opengroup.org/onlinepubs/9629399/chap14.htm

use std::collections::HashMap;

#[cfg(test)]
mod tests;

/// Why a server's NDR stub could not be read; every variant names what was being read and
/// where, so a bug report can point at the byte. None of them carries message content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NdrError {
    /// The message ends before the thing being read.
    #[error("the server's NDR message ends at byte {len}, but {what} at offset {at} needs {need} more bytes")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Offset where it starts.
        at: usize,
        /// Bytes it needs.
        need: usize,
        /// Length of the message.
        len: usize,
    },
    /// A count read from the server cannot fit in what is left of the message.
    #[error("the server's NDR message declares {count} elements for {what} at offset {at}, but only {left} bytes are left and each element takes at least {min_size}")]
    CountExceedsMessage {
        /// What the count is for.
        what: &'static str,
        /// The count read.
        count: u64,
        /// Offset of the count.
        at: usize,
        /// Bytes left after it.
        left: usize,
        /// The smallest wire size of one element.
        min_size: usize,
    },
    /// The message holds more elements in all than this reader accepts.
    #[error(
        "the server's NDR message holds more than {limit} elements in all (reached at {what})"
    )]
    TooManyElements {
        /// Where the budget ran out.
        what: &'static str,
        /// The element budget.
        limit: usize,
    },
    /// The message nests deeper (or a linked list runs longer) than this reader accepts.
    #[error("the server's NDR message nests deeper than {limit} levels (at {what})")]
    TooDeep {
        /// What was nested.
        what: &'static str,
        /// The depth cap.
        limit: usize,
    },
    /// A conformant-varying array whose offset/actual count do not fit its maximum count.
    #[error("the server's NDR message has {what} at offset {at} with offset {offset} and actual count {actual}, outside its maximum count {max}")]
    BadVariance {
        /// What the array is.
        what: &'static str,
        /// Offset of the variance.
        at: usize,
        /// Offset field (this client accepts only 0, as every encoder writes).
        offset: u32,
        /// Actual count.
        actual: u32,
        /// Maximum count.
        max: u64,
    },
    /// A full pointer that refers back to a referent still being read.
    #[error("the server's NDR message reuses pointer {id:#x} for {what} while its referent is still being read (a pointer loop)")]
    PointerLoop {
        /// What the pointer is.
        what: &'static str,
        /// The referent id.
        id: u32,
    },
    /// A pointer that must not be null is null.
    #[error("the server's NDR message has a null pointer for {what} at offset {at}, which must not be null")]
    NullPointer {
        /// What the pointer is.
        what: &'static str,
        /// Offset of the pointer.
        at: usize,
    },
    /// A value outside what the structure allows (a count that disagrees with a size,
    /// an unknown union arm, …).
    #[error("the server's NDR message has an invalid {what}: {value}")]
    Invalid {
        /// What the value is.
        what: &'static str,
        /// The value read.
        value: u64,
    },
    /// A string that is not UTF-16 or lacks its terminator.
    #[error("the server's NDR message has a malformed string for {what} at offset {at}")]
    BadString {
        /// What the string is.
        what: &'static str,
        /// Offset of its characters.
        at: usize,
    },
}

/// Caps on what one message may make the reader do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Elements (array members, string characters, list nodes) per message; each costs
    /// a small, bounded allocation, so this caps memory independently of the byte count.
    pub max_elements: usize,
    /// Nesting depth; a linked list's length counts as its depth, because in NDR each
    /// node's successor is a referent nested inside it (this reader walks it iteratively,
    /// so the cap bounds memory and time, not the stack).
    pub max_depth: usize,
}

impl Default for Limits {
    /// 8 Mi elements (a 64 MiB reply cannot honestly hold more of the smallest
    /// DRSUAPI element) and 100,000 levels (Samba sends at most 1,000 objects a reply).
    fn default() -> Self {
        Self {
            max_elements: 8 << 20,
            max_depth: 100_000,
        }
    }
}

/// An NDR 2.0 little-endian writer. Referent ids start at 0x00020000 and step by 4, as
/// Samba and MIDL write them.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
    next_ref: u32,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            next_ref: 0x0002_0000,
        }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Current offset (alignment is relative to the start of the stub).
    pub fn position(&self) -> usize {
        self.buf.len()
    }

    /// Zero padding up to a multiple of `n` (1, 2, 4 or 8).
    pub fn align(&mut self, n: usize) {
        while !self.buf.len().is_multiple_of(n) {
            self.buf.push(0);
        }
    }

    /// An unsigned byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// An aligned `unsigned short`.
    pub fn u16(&mut self, v: u16) {
        self.align(2);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An aligned `unsigned long`.
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An aligned `hyper`.
    pub fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An aligned signed `hyper`.
    pub fn i64(&mut self, v: i64) {
        self.u64(v as u64);
    }

    /// Raw bytes (a fixed array of `byte`), no alignment.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A GUID (`{ulong, ushort, ushort, byte[8]}`, 4-aligned) given in wire order.
    pub fn guid(&mut self, g: &[u8; 16]) {
        self.align(4);
        self.bytes(g);
    }

    /// A unique or embedded reference pointer: a fresh referent id, or 0 for null. The
    /// caller writes the referent where NDR defers it.
    pub fn pointer(&mut self, present: bool) {
        if present {
            let id = self.next_ref;
            self.next_ref = self.next_ref.wrapping_add(4);
            self.u32(id);
        } else {
            self.u32(0);
        }
    }

    /// The maximum count of a conformant array or structure.
    pub fn conformance(&mut self, count: usize) {
        self.u32(count_u32(count));
    }

    /// A conformant byte array: maximum count, then the bytes.
    pub fn byte_array(&mut self, b: &[u8]) {
        self.conformance(b.len());
        self.bytes(b);
    }

    /// A `[string] wchar_t*` referent: conformant-varying UTF-16 with its terminator.
    pub fn wstring(&mut self, s: &str) {
        let units: Vec<u16> = s.encode_utf16().chain(std::iter::once(0)).collect();
        self.conformance(units.len());
        self.u32(0);
        self.u32(count_u32(units.len()));
        for u in units {
            self.buf.extend_from_slice(&u.to_le_bytes());
        }
    }
}

/// Counts this client writes are small (its own requests); saturate rather than wrap.
fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What a full pointer read says about its referent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPtr {
    /// Null.
    Null,
    /// First time this id is seen: the referent follows where NDR defers it; call
    /// [`Reader::full_ptr_done`] once it has been read.
    New(u32),
    /// An id whose referent was already read completely (an alias).
    Seen(u32),
}

/// A bounded NDR 2.0 little-endian reader over one stub.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    elements_left: usize,
    limits: Limits,
    depth: usize,
    /// Full-pointer ids: `true` once the referent is complete.
    full: HashMap<u32, bool>,
}

impl<'a> Reader<'a> {
    /// A reader over `buf` with the given caps.
    pub fn new(buf: &'a [u8], limits: Limits) -> Self {
        Self {
            buf,
            pos: 0,
            elements_left: limits.max_elements,
            limits,
            depth: 0,
            full: HashMap::new(),
        }
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn need(&self, what: &'static str, n: usize) -> Result<(), NdrError> {
        if self.remaining() < n {
            return Err(NdrError::Truncated {
                what,
                at: self.pos,
                need: n,
                len: self.buf.len(),
            });
        }
        Ok(())
    }

    /// Skip padding up to a multiple of `n`.
    pub fn align(&mut self, what: &'static str, n: usize) -> Result<(), NdrError> {
        let pad = (n - self.pos % n) % n;
        self.need(what, pad)?;
        self.pos += pad;
        Ok(())
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], NdrError> {
        self.need(what, n)?;
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    /// A fixed array of `N` bytes.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], NdrError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(what, N)?);
        Ok(out)
    }

    /// An unsigned byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, NdrError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// An aligned `unsigned short`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, NdrError> {
        self.align(what, 2)?;
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// An aligned `unsigned long`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, NdrError> {
        self.align(what, 4)?;
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// An aligned `hyper`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, NdrError> {
        self.align(what, 8)?;
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// An aligned signed `hyper`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, NdrError> {
        Ok(self.u64(what)? as i64)
    }

    /// A GUID in wire order.
    pub fn guid(&mut self, what: &'static str) -> Result<[u8; 16], NdrError> {
        self.align(what, 4)?;
        self.array(what)
    }

    /// A unique pointer: whether a referent follows where NDR defers it.
    pub fn unique_ptr(&mut self, what: &'static str) -> Result<bool, NdrError> {
        Ok(self.u32(what)? != 0)
    }

    /// An embedded reference pointer (4 bytes on the wire, never null).
    pub fn ref_ptr(&mut self, what: &'static str) -> Result<(), NdrError> {
        let at = self.pos;
        if self.u32(what)? == 0 {
            return Err(NdrError::NullPointer { what, at });
        }
        Ok(())
    }

    /// A full pointer (`[ptr]`): aliases are allowed, loops are not.
    pub fn full_ptr(&mut self, what: &'static str) -> Result<FullPtr, NdrError> {
        let id = self.u32(what)?;
        if id == 0 {
            return Ok(FullPtr::Null);
        }
        match self.full.get(&id) {
            Some(true) => Ok(FullPtr::Seen(id)),
            Some(false) => Err(NdrError::PointerLoop { what, id }),
            None => {
                self.charge(what, 1)?;
                self.full.insert(id, false);
                Ok(FullPtr::New(id))
            }
        }
    }

    /// Marks a full pointer's referent as completely read.
    pub fn full_ptr_done(&mut self, id: u32) {
        self.full.insert(id, true);
    }

    /// Charges `n` elements to the message's budget.
    pub fn charge(&mut self, what: &'static str, n: usize) -> Result<(), NdrError> {
        match self.elements_left.checked_sub(n) {
            Some(left) => {
                self.elements_left = left;
                Ok(())
            }
            None => Err(NdrError::TooManyElements {
                what,
                limit: self.limits.max_elements,
            }),
        }
    }

    /// Checks a count already read (e.g. a conformant structure's maximum count, read
    /// before its other members) against the bytes left, with each element taking at
    /// least `min_size` bytes, and charges it to the budget.
    pub fn check_count(
        &mut self,
        what: &'static str,
        count: u64,
        min_size: usize,
    ) -> Result<usize, NdrError> {
        let left = self.remaining();
        let fits = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(min_size.max(1)))
            .is_some_and(|bytes| bytes <= left);
        if !fits {
            return Err(NdrError::CountExceedsMessage {
                what,
                count,
                at: self.pos,
                left,
                min_size,
            });
        }
        // `fits` proved the conversion.
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        self.charge(what, count)?;
        Ok(count)
    }

    /// The maximum count of a conformant array whose elements take at least `min_size`
    /// bytes each, checked against the bytes left and charged to the budget.
    pub fn conformance(&mut self, what: &'static str, min_size: usize) -> Result<usize, NdrError> {
        let count = self.u32(what)?;
        self.check_count(what, u64::from(count), min_size)
    }

    /// A conformant byte array (`[size_is(n)] byte*` referent) whose maximum count must
    /// equal `expected` when given.
    pub fn byte_array(
        &mut self,
        what: &'static str,
        expected: Option<u32>,
    ) -> Result<&'a [u8], NdrError> {
        let n = self.conformance(what, 1)?;
        if expected.is_some_and(|e| u64::from(e) != n as u64) {
            return Err(NdrError::Invalid {
                what,
                value: n as u64,
            });
        }
        self.bytes(what, n)
    }

    /// The offset and actual count of a conformant-varying array with maximum count
    /// `max`; returns the actual count. Only offset 0 is accepted.
    pub fn variance(&mut self, what: &'static str, max: usize) -> Result<usize, NdrError> {
        let at = self.pos;
        let offset = self.u32(what)?;
        let actual = self.u32(what)?;
        if offset != 0 || actual as usize > max {
            return Err(NdrError::BadVariance {
                what,
                at,
                offset,
                actual,
                max: max as u64,
            });
        }
        Ok(actual as usize)
    }

    /// `n` UTF-16 code units, decoded strictly.
    pub fn utf16(&mut self, what: &'static str, n: usize) -> Result<Vec<u16>, NdrError> {
        let at = self.pos;
        let left = self.remaining();
        if n.checked_mul(2).is_none_or(|b| b > left) {
            return Err(NdrError::CountExceedsMessage {
                what,
                count: n as u64,
                at,
                left,
                min_size: 2,
            });
        }
        let raw = self.bytes(what, n * 2)?;
        Ok(raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    /// A `[string] wchar_t*` referent: conformant-varying UTF-16 ending in one NUL.
    pub fn wstring(&mut self, what: &'static str) -> Result<String, NdrError> {
        let max = self.conformance(what, 2)?;
        let actual = self.variance(what, max)?;
        let at = self.pos;
        let units = self.utf16(what, actual)?;
        match units.split_last() {
            Some((0, body)) => {
                String::from_utf16(body).map_err(|_| NdrError::BadString { what, at })
            }
            _ => Err(NdrError::BadString { what, at }),
        }
    }

    /// Enters one nesting level (pair with [`Reader::leave`]).
    pub fn enter(&mut self, what: &'static str) -> Result<(), NdrError> {
        if self.depth >= self.limits.max_depth {
            return Err(NdrError::TooDeep {
                what,
                limit: self.limits.max_depth,
            });
        }
        self.depth += 1;
        Ok(())
    }

    /// Leaves one nesting level.
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}
