//! The delivery header every message carries, at the start of its payload.
//!
//! Layout (32 bytes, little-endian):
//!
//! | offset | size | field                                         |
//! |--------|------|-----------------------------------------------|
//! | 0      | 2    | magic `FB`                                     |
//! | 2      | 1    | version (1)                                    |
//! | 3      | 1    | flags: 0 data, 1 a controller's command        |
//! | 4      | 4    | device id (dense over the scenario)            |
//! | 8      | 8    | sequence number of the message of this device  |
//! | 16     | 8    | intended send time, ns on the run clock        |
//! | 24     | 8    | actual send time, ns on the run clock          |
//!
//! The rest of the payload, up to the scenario's size, is filler.

pub use fleetbench_scenario::payload::HEADER_LEN;
const MAGIC: [u8; 2] = *b"FB";
const VERSION: u8 = 1;
/// Flags byte of a command (and of the reply that echoes it).
const COMMAND: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub device: u32,
    pub seq: u64,
    pub intended_ns: u64,
    pub sent_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload of {0} bytes is shorter than the {HEADER_LEN}-byte delivery header")]
    Short(usize),
    #[error("payload does not start with the fleetbench header (magic {0:02x?})")]
    Magic([u8; 2]),
    #[error("unsupported header version {0}")]
    Version(u8),
    #[error("JSON payload does not end with the fleetbench header field \"_fb\"")]
    Json,
    #[error("unknown header flags {0}; expected a command (1)")]
    Flags(u8),
    /// Not data: a controller's command or a device's reply to one.
    #[error("a command, not data")]
    Command,
}

impl Header {
    /// A payload of `size` bytes (at least the header) with the filler in place and the header
    /// left blank: publishers clone it and [`write`](Self::write) each message's header.
    pub fn template(size: usize) -> Vec<u8> {
        let mut buf = vec![0u8; size.max(HEADER_LEN)];
        for (i, b) in buf[HEADER_LEN..].iter_mut().enumerate() {
            *b = b'a' + (i % 26) as u8;
        }
        buf
    }

    /// Write the header and filler into a new payload of `size` bytes (at least the header).
    pub fn encode(&self, size: usize) -> Vec<u8> {
        let mut buf = Self::template(size);
        self.write(&mut buf);
        buf
    }

    /// Write the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn write(&self, buf: &mut [u8]) {
        self.write_flagged(buf, 0);
    }

    /// A command's payload: the header alone, flagged so that observers never take it for data.
    pub fn encode_command(&self) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN];
        self.write_flagged(&mut buf, COMMAND);
        buf
    }

    fn write_flagged(&self, buf: &mut [u8], flags: u8) {
        buf[0..2].copy_from_slice(&MAGIC);
        buf[2] = VERSION;
        buf[3] = flags;
        buf[4..8].copy_from_slice(&self.device.to_le_bytes());
        buf[8..16].copy_from_slice(&self.seq.to_le_bytes());
        buf[16..24].copy_from_slice(&self.intended_ns.to_le_bytes());
        buf[24..32].copy_from_slice(&self.sent_ns.to_le_bytes());
    }

    /// The header of a payload of any model: binary (at the start) or JSON (in the last
    /// field, see [`crate::payload`]).
    #[inline]
    pub fn from_payload(buf: &[u8]) -> Result<Header, DecodeError> {
        if buf.first() == Some(&b'{') {
            let raw = json_header(buf).ok_or(DecodeError::Json)?;
            return Header::decode(&raw);
        }
        Header::decode(buf)
    }

    /// The header of a data message (a command is refused with [`DecodeError::Command`]).
    #[inline]
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        match Self::decode_flagged(buf)? {
            (h, 0) => Ok(h),
            _ => Err(DecodeError::Command),
        }
    }

    /// The header of a command or of the reply that echoes it.
    pub fn decode_command(buf: &[u8]) -> Result<Header, DecodeError> {
        match Self::decode_flagged(buf)? {
            (h, COMMAND) => Ok(h),
            (_, flags) => Err(DecodeError::Flags(flags)),
        }
    }

    #[inline]
    fn decode_flagged(buf: &[u8]) -> Result<(Header, u8), DecodeError> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Err(DecodeError::Short(buf.len()));
        };
        if h[0..2] != MAGIC {
            return Err(DecodeError::Magic([h[0], h[1]]));
        }
        if h[2] != VERSION {
            return Err(DecodeError::Version(h[2]));
        }
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let mut d = [0u8; 4];
        d.copy_from_slice(&h[4..8]);
        let header = Header {
            device: u32::from_le_bytes(d),
            seq: u64_at(8),
            intended_ns: u64_at(16),
            sent_ns: u64_at(24),
        };
        Ok((header, h[3]))
    }
}

/// Bytes the JSON header field takes at the end of a payload: `,"_fb":"<64 hex>"}`.
pub const JSON_TAIL_LEN: usize = 10 + 2 * HEADER_LEN;

/// The header of a JSON payload (see [`crate::payload::push_header`]), if it ends with one.
pub fn json_header(payload: &[u8]) -> Option<[u8; HEADER_LEN]> {
    let tail = payload.get(payload.len().checked_sub(JSON_TAIL_LEN)?..)?;
    let hex = tail
        .strip_prefix(b",\"_fb\":\"".as_slice())
        .or_else(|| tail.strip_prefix(b" \"_fb\":\"".as_slice()))?
        .strip_suffix(b"\"}".as_slice())?;
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut raw = [0u8; HEADER_LEN];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        raw[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads_to_size() {
        let h = Header {
            device: 7,
            seq: u64::MAX - 1,
            intended_ns: 123,
            sent_ns: 456,
        };
        let buf = h.encode(100);
        assert_eq!(buf.len(), 100);
        assert_eq!(Header::decode(&buf), Ok(h));
    }

    #[test]
    fn rejects_foreign_payloads() {
        assert_eq!(Header::decode(b"hello"), Err(DecodeError::Short(5)));
        assert!(matches!(
            Header::decode(&[b'x'; 40]),
            Err(DecodeError::Magic(_))
        ));
        let mut buf = Header {
            device: 0,
            seq: 0,
            intended_ns: 0,
            sent_ns: 0,
        }
        .encode(32);
        buf[2] = 9;
        assert_eq!(Header::decode(&buf), Err(DecodeError::Version(9)));
    }

    #[test]
    fn commands_are_never_taken_for_data() {
        let h = Header {
            device: 3,
            seq: 41,
            intended_ns: 5,
            sent_ns: 6,
        };
        let command = h.encode_command();
        assert_eq!(Header::decode(&command), Err(DecodeError::Command));
        assert_eq!(Header::from_payload(&command), Err(DecodeError::Command));
        assert_eq!(Header::decode_command(&command), Ok(h));
        assert_eq!(
            Header::decode_command(&h.encode(32)),
            Err(DecodeError::Flags(0))
        );
    }
}
