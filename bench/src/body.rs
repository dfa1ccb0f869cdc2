//! Message bodies of a benchmark run: a fixed-size body whose first bytes say which run sent
//! it, its sequence number, whether it belongs to the measured window, and when it was sent.
//!
//! ```text
//! +------------+-------------+------------------------------+-------------------+--------+
//! | magic: u32 | run_id: u32 | seq: u64 (top bit: measured) | sent_unix_ns: u64 | filler |
//! +------------+-------------+------------------------------+-------------------+--------+
//! ```
//!
//! All integers are big-endian; the magic is `MQB1` in ASCII. Bodies shorter than [`HEADER_SIZE`] carry no header: their
//! end-to-end latency falls back to the broker's born timestamp (millisecond resolution) and
//! they take no part in the loss and duplicate count. The filler is drawn once per run from
//! the seeded RNG, so bodies do not compress to nothing on the way.

use bytes::{BufMut, Bytes, BytesMut};

/// Size of the header at the start of a body.
pub const HEADER_SIZE: usize = 24;

/// The first four bytes of every body with a header.
const MAGIC: u32 = u32::from_be_bytes(*b"MQB1");

/// The bit of `seq` that marks a message sent inside the measured window.
const MEASURED_BIT: u64 = 1 << 63;

/// What a body's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyHeader {
    /// The sending run.
    pub run_id: u32,
    /// The message's number within its run, dense from 0.
    pub seq: u64,
    /// Whether the message was sent inside the measured window (after the warm-up).
    pub measured: bool,
    /// Wall-clock time the send started (or was scheduled, if it started late), in
    /// nanoseconds since the Unix epoch.
    pub sent_unix_ns: u64,
}

/// Builds the bodies of one run.
#[derive(Debug, Clone)]
pub struct BodyFactory {
    run_id: u32,
    size: usize,
    filler: Bytes,
}

impl BodyFactory {
    /// Bodies of `size` bytes for run `run_id`, filled with bytes from `random`.
    pub fn new(run_id: u32, size: usize, mut random: impl FnMut() -> u64) -> Self {
        let mut filler = BytesMut::with_capacity(size + 8);
        while filler.len() < size {
            filler.put_u64(random());
        }
        filler.truncate(size);
        Self {
            run_id,
            size,
            filler: filler.freeze(),
        }
    }

    /// The body size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The run id stamped on every body.
    pub fn run_id(&self) -> u32 {
        self.run_id
    }

    /// The body of message `seq`.
    pub fn body(&self, seq: u64, measured: bool, sent_unix_ns: u64) -> Bytes {
        if self.size < HEADER_SIZE {
            return self.filler.clone();
        }
        let mut body = BytesMut::with_capacity(self.size);
        body.put_u32(MAGIC);
        body.put_u32(self.run_id);
        body.put_u64(if measured { seq | MEASURED_BIT } else { seq });
        body.put_u64(sent_unix_ns);
        body.extend_from_slice(&self.filler[HEADER_SIZE..]);
        body.freeze()
    }
}

/// Reads the header of `body`; `None` when the body is too short to carry one or does not
/// start with the magic (it was not sent by this tool).
pub fn read_header(body: &[u8]) -> Option<BodyHeader> {
    let word = |index: usize| {
        let bytes: [u8; 8] = body.get(index * 8..index * 8 + 8)?.try_into().ok()?;
        Some(u64::from_be_bytes(bytes))
    };
    let (tag, seq, sent_unix_ns) = (word(0)?, word(1)?, word(2)?);
    if (tag >> 32) as u32 != MAGIC {
        return None;
    }
    Some(BodyHeader {
        run_id: tag as u32,
        seq: seq & !MEASURED_BIT,
        measured: seq & MEASURED_BIT != 0,
        sent_unix_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> impl FnMut() -> u64 {
        let mut next = 0u64;
        move || {
            next += 1;
            next.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        }
    }

    #[test]
    fn a_body_carries_its_header_and_has_the_requested_size() {
        let factory = BodyFactory::new(77, 128, counter());
        let body = factory.body(5, true, 1_700_000_000_123_456_789);
        assert_eq!(body.len(), 128);
        assert_eq!(
            read_header(&body),
            Some(BodyHeader {
                run_id: 77,
                seq: 5,
                measured: true,
                sent_unix_ns: 1_700_000_000_123_456_789,
            })
        );
        let warmup = factory.body(6, false, 1);
        assert!(!read_header(&warmup).expect("a header").measured);
    }

    #[test]
    fn a_foreign_body_carries_no_header() {
        assert_eq!(read_header(&[0x5a; 64]), None);
    }

    #[test]
    fn a_body_shorter_than_the_header_carries_none() {
        let factory = BodyFactory::new(1, 16, counter());
        let body = factory.body(0, true, 0);
        assert_eq!(body.len(), 16);
        assert_eq!(read_header(&body), None);
    }
}
