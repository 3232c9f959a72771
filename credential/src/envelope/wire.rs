//! The envelope's byte layout (see the parent module's header): text fields checked on the
//! way out, and a bounds-checked parse on the way in that refuses before any decryption.

use super::{
    EnvelopeContext, EnvelopeError, RequestId, MAGIC, MAX_ENDPOINT_ID_LEN, MAX_ENVELOPE_LEN,
    MAX_USER_NAME_LEN, SUITE, TAG_LEN,
};

pub(super) fn put_text(out: &mut Vec<u8>, s: &str) {
    // Lengths were checked by check_text: both fit in u16.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(super) fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), EnvelopeError> {
    if s.len() > max {
        return Err(EnvelopeError::FieldTooLong {
            field,
            len: s.len(),
            max,
        });
    }
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(EnvelopeError::BadText { field });
    }
    Ok(())
}

/// A bounds-checked reader over envelope bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(EnvelopeError::Truncated { field })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EnvelopeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn text(&mut self, field: &'static str, max: usize) -> Result<String, EnvelopeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(EnvelopeError::FieldTooLong { field, len, max });
        }
        let bytes = self.take(len, field)?;
        let s = std::str::from_utf8(bytes).map_err(|_| EnvelopeError::BadText { field })?;
        check_text(field, s, max)?;
        Ok(s.to_owned())
    }
}

pub(super) struct Parsed<'a> {
    pub(super) seq: u64,
    pub(super) context: EnvelopeContext,
    pub(super) aad: &'a [u8],
    pub(super) ciphertext: &'a [u8],
}

pub(super) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(4, "magic")? != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    let (kem, kdf, aead) = (r.u16("suite")?, r.u16("suite")?, r.u16("suite")?);
    if [kem, kdf, aead] != SUITE {
        return Err(EnvelopeError::UnsupportedSuite { kem, kdf, aead });
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(r.take(8, "sequence number")?);
    let mut request_id = [0u8; 16];
    request_id.copy_from_slice(r.take(16, "request id")?);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(r.take(8, "expiry")?);
    let user_name = r.text("user name", MAX_USER_NAME_LEN)?;
    let endpoint_id = r.text("endpoint id", MAX_ENDPOINT_ID_LEN)?;
    let aad_end = r.pos;
    let ct_len = usize::from(r.u16("ciphertext length")?);
    if ct_len < TAG_LEN {
        return Err(EnvelopeError::Truncated {
            field: "ciphertext",
        });
    }
    let ciphertext = r.take(ct_len, "ciphertext")?;
    if r.pos != bytes.len() {
        return Err(EnvelopeError::TrailingBytes {
            count: bytes.len() - r.pos,
        });
    }
    Ok(Parsed {
        seq: u64::from_be_bytes(seq),
        context: EnvelopeContext {
            request_id: RequestId(request_id),
            user_name,
            endpoint_id,
            expires_at: u64::from_be_bytes(exp),
        },
        aad: &bytes[..aad_end],
        ciphertext,
    })
}
