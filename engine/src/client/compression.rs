//! Message body compression: the producer's zlib deflate of large bodies and the consumer's
//! inverse (`DefaultMQProducerImpl.tryToCompressMessage`, `ZlibCompressor`,
//! `MessageSysFlag`; wire-protocol.md §8.2, clients.md C18).
//!
//! Where it sits: the kernel send of a single message (never a batch: Java does not compress
//! batches) runs [`BodyCompressor::try_to_compress`]; if it answers, the compressed body is
//! sent and its sysFlag bits are or-ed into the request's `sysFlag`, and the caller's message
//! keeps its original body. The broker stores the body as received. A consumer runs
//! [`decompress`] on every pulled body with the record's sysFlag.
//!
//! Java 4.9.4+ marks a compressed body with `COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE`
//! (`0x301`); older Java clients and C++ set only `COMPRESSED_FLAG` (`0x1`), whose type
//! field 0 also means zlib. LZ4 and Zstandard (types 1 and 2, opt-in on Java 4.9.4+) are
//! recognised but not decompressed here.
//!
//! Invariants: a body is compressed iff it is at least `compress_msg_body_over_howmuch`
//! bytes long (Java compares with `>=` despite the name, and keeps the result even when it is
//! larger); decompression never produces more than its size limit.

use std::borrow::Cow;
use std::io::Write as _;

use flate2::{Compression, Decompress, FlushDecompress, Status};

use crate::store::message::sys_flag;

/// Java's `compressMsgBodyOverHowmuch` default: bodies of 4 KiB or more are compressed.
pub const COMPRESS_MSG_BODY_OVER_HOWMUCH: usize = 4 * 1024;

/// Java's compression level default (system property `rocketmq.message.compressLevel`).
pub const COMPRESS_LEVEL: i32 = 5;

/// Most bytes [`decompress`] inflates one body to: a bound against zip bombs (zlib reaches
/// about 1000:1), well above the 4 MiB message size limit of a default broker.
pub const DECOMPRESSED_BODY_SIZE_MAX: usize = 256 * 1024 * 1024;

/// The sysFlag bits a Java 4.9.4+ producer sets on a zlib-compressed body (`0x301`).
pub const ZLIB_COMPRESSED_SYS_FLAG: i32 = sys_flag::COMPRESSED | sys_flag::COMPRESSION_ZLIB_TYPE;

/// How a body is compressed: the sysFlag's type field (`CompressionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    /// LZ4 (`0x100`).
    Lz4,
    /// Zstandard (`0x200`).
    Zstd,
    /// zlib (`0x300`, or `0` from clients before 4.9.4).
    Zlib,
}

impl CompressionType {
    /// The type of a compressed body's `sys_flag` (`CompressionType.findByValue`); `None`
    /// for the undefined values 4-7.
    pub fn of_sys_flag(sys_flag: i32) -> Option<Self> {
        match (sys_flag & sys_flag::COMPRESSION_TYPE_MASK) >> 8 {
            1 => Some(Self::Lz4),
            2 => Some(Self::Zstd),
            0 | 3 => Some(Self::Zlib),
            _ => None,
        }
    }

    /// The name Java's `CompressionType` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lz4 => "LZ4",
            Self::Zstd => "ZSTD",
            Self::Zlib => "ZLIB",
        }
    }
}

/// Why a compressor could not be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompressConfigError {
    /// The level is outside `-1..=9` (Java's `Deflater` throws). Fix the configuration.
    #[error("compression level {0} is outside -1..=9")]
    LevelOutOfRange(i32),
}

/// Why a body could not be decompressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecompressError {
    /// The body is compressed with a codec this client does not carry. Hand the message to
    /// the application undecoded or skip it; it is not corrupt.
    #[error("body is compressed with {} (sysFlag {sys_flag:#x}), which this client cannot decompress", .kind.name())]
    Unsupported {
        /// The codec.
        kind: CompressionType,
        /// The record's sysFlag.
        sys_flag: i32,
    },
    /// The sysFlag's compression type is undefined (4-7). The record is from an unknown
    /// producer or damaged.
    #[error("unknown compression type {} in sysFlag {sys_flag:#x}", (.sys_flag >> 8) & 0x7)]
    UnknownType {
        /// The record's sysFlag.
        sys_flag: i32,
    },
    /// The body is not a valid zlib stream. The record is damaged.
    #[error("compressed body is not a valid zlib stream: {0}")]
    Corrupt(String),
    /// The zlib stream ends before its end marker. The record is damaged.
    #[error("compressed body is truncated")]
    Truncated,
    /// The body inflates past the size limit. Refuse the message.
    #[error("compressed body inflates to more than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
}

/// A compressed body and the sysFlag bits that mark it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressedBody {
    /// The zlib stream (with its zlib header) to send instead of the body.
    pub body: Vec<u8>,
    /// Bits to or into the request's sysFlag: [`ZLIB_COMPRESSED_SYS_FLAG`].
    pub sys_flag: i32,
}

/// The producer's body compressor: a size threshold and a zlib level.
#[derive(Debug, Clone, Copy)]
pub struct BodyCompressor {
    compress_msg_body_over_howmuch: usize,
    level: Compression,
}

impl Default for BodyCompressor {
    /// Java's defaults: 4 KiB, level 5.
    fn default() -> Self {
        Self {
            compress_msg_body_over_howmuch: COMPRESS_MSG_BODY_OVER_HOWMUCH,
            level: Compression::new(COMPRESS_LEVEL as u32),
        }
    }
}

impl BodyCompressor {
    /// A compressor for bodies of at least `compress_msg_body_over_howmuch` bytes at zlib
    /// `compress_level` (`-1` is zlib's default, 6).
    pub fn new(
        compress_msg_body_over_howmuch: usize,
        compress_level: i32,
    ) -> Result<Self, CompressConfigError> {
        let level = match compress_level {
            -1 => Compression::default(),
            0..=9 => Compression::new(compress_level as u32),
            _ => return Err(CompressConfigError::LevelOutOfRange(compress_level)),
        };
        Ok(Self {
            compress_msg_body_over_howmuch,
            level,
        })
    }

    /// The size from which bodies are compressed.
    pub fn compress_msg_body_over_howmuch(&self) -> usize {
        self.compress_msg_body_over_howmuch
    }

    /// The body to send instead of `body`, if it is large enough to compress
    /// (`tryToCompressMessage`). `None` means send `body` as it is, with no sysFlag bits:
    /// it is below the threshold, or (never in practice, writing to memory) compression
    /// failed, which Java logs and sends uncompressed.
    pub fn try_to_compress(&self, body: &[u8]) -> Option<CompressedBody> {
        if body.len() < self.compress_msg_body_over_howmuch {
            return None;
        }
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::with_capacity(body.len() / 2), self.level);
        encoder.write_all(body).ok()?;
        let compressed = encoder.finish().ok()?;
        Some(CompressedBody {
            body: compressed,
            sys_flag: ZLIB_COMPRESSED_SYS_FLAG,
        })
    }
}

/// The body a consumer hands to the application: `body` itself unless `sys_flag` has
/// `COMPRESSED_FLAG`, else `body` inflated, up to [`DECOMPRESSED_BODY_SIZE_MAX`] bytes.
pub fn decompress(body: &[u8], sys_flag: i32) -> Result<Cow<'_, [u8]>, DecompressError> {
    decompress_with_limit(body, sys_flag, DECOMPRESSED_BODY_SIZE_MAX)
}

/// [`decompress`] with an explicit size limit for the inflated body. Bytes after the zlib
/// stream's end are ignored, as Java's `InflaterInputStream` does.
pub fn decompress_with_limit(
    body: &[u8],
    sys_flag: i32,
    decompressed_size_max: usize,
) -> Result<Cow<'_, [u8]>, DecompressError> {
    if sys_flag & sys_flag::COMPRESSED == 0 {
        return Ok(Cow::Borrowed(body));
    }
    match CompressionType::of_sys_flag(sys_flag) {
        Some(CompressionType::Zlib) => inflate(body, decompressed_size_max).map(Cow::Owned),
        Some(kind) => Err(DecompressError::Unsupported { kind, sys_flag }),
        None => Err(DecompressError::UnknownType { sys_flag }),
    }
}

/// Inflates a zlib stream into at most `size_max` bytes.
fn inflate(body: &[u8], size_max: usize) -> Result<Vec<u8>, DecompressError> {
    // One byte past the limit tells "exactly the limit" from "more than the limit".
    let capacity_max = size_max.saturating_add(1);
    let mut inflater = Decompress::new(true);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).max(64).min(capacity_max));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= capacity_max {
                return Err(DecompressError::TooLarge { max: size_max });
            }
            let grow = out.capacity().min(capacity_max - out.len());
            out.reserve_exact(grow);
        }
        let consumed = usize::try_from(inflater.total_in()).unwrap_or(usize::MAX);
        let produced = inflater.total_out();
        let input = body.get(consumed..).unwrap_or_default();
        let status = inflater
            .decompress_vec(input, &mut out, FlushDecompress::None)
            .map_err(|e| DecompressError::Corrupt(e.to_string()))?;
        if status == Status::StreamEnd {
            if out.len() > size_max {
                return Err(DecompressError::TooLarge { max: size_max });
            }
            return Ok(out);
        }
        let stalled = inflater.total_in() == consumed as u64 && inflater.total_out() == produced;
        if stalled && out.len() < out.capacity() {
            // Room to write and nothing moved: the input ran out before the end marker.
            return Err(DecompressError::Truncated);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `b"Hello RocketMQ! " * 300` compressed by zlib 1.2.13 at level 5 (python3
    /// `zlib.compress(data, 5)`): the zlib library, level, window (15) and memory level (8)
    /// of Java's `new Deflater(5)` behind `DeflaterOutputStream`, so the bytes a Java 4.9
    /// producer sends for this body.
    const JAVA_LEVEL_5_HELLO: &str = "785eedc7b10d00101000c055d8e61b052b888ae41bfbc71a8abbee629d9365e4dcebb65e4bb8bbbbbbbbbbbbbbbb7ff4079e2846ff";

    /// `bytes((i*i + 7*i) % 251 for i in range(4100))`, the same way.
    const JAVA_LEVEL_5_QUADRATIC: &str = concat!(
        "785e63e01092d3b1f14baa98b0ead8134e6dffd2b9c73fab8575ecf9a49fb9f4b146d6ba2f8eddd7b5aacea8",
        "565f36ea7b13b859a6e955e4518b15f293f9da581b595ab8fba51619ee0d78502eb0ccf96e9de2c10cc1ed29",
        "c2fb8bd46f4ef2e53ad2eac17b7e46b2c1afd3f38abd947f5edb3aad32ce554f92edc3c32b270fecdcb271c3",
        "c62d3b0f9cbcf2f0039ba49e6b5ce5b4add77e2a7b15cf3bfdcb2079c6795e8fd6235cbe936eaa17ed174ed9",
        "2e987150b1eeaef33281f207017b0d1749f573b7b034b2b6f14d965f617134f25593cce6c0377d4697ab55cf",
        "54695def76fcb22e4be3f1d24cfd4f7b3ac2d43e1f9f5beaafcdf9e4d8aa0915497e363a72421c0c5f3fbe7f",
        "fff12bc3a8d747bd3eeaf551af8f7a7dd4eba35e1ff5faa8d747bd3eeaf551af8f7a7dd4eb23c9eb005f3ebf42",
    );

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn hello() -> Vec<u8> {
        b"Hello RocketMQ! ".repeat(300)
    }

    fn quadratic() -> Vec<u8> {
        (0u32..4100)
            .map(|i| ((i * i + 7 * i) % 251) as u8)
            .collect()
    }

    #[test]
    fn java_level_5_streams_decode() {
        for (golden, plain) in [
            (JAVA_LEVEL_5_HELLO, hello()),
            (JAVA_LEVEL_5_QUADRATIC, quadratic()),
        ] {
            let compressed = unhex(golden);
            for flag in [ZLIB_COMPRESSED_SYS_FLAG, sys_flag::COMPRESSED] {
                assert_eq!(
                    decompress(&compressed, flag).unwrap().as_ref(),
                    plain.as_slice()
                );
            }
        }
    }

    #[test]
    fn compressed_body_carries_java_4_9_4_sys_flag_and_zlib_header() {
        let compressed = BodyCompressor::default().try_to_compress(&hello()).unwrap();
        assert_eq!(compressed.sys_flag, 0x301);
        // CMF 0x78 (deflate, 32 KiB window) and a valid header check. The bytes after it are
        // not Java's: flate2's miniz_oxide backend chooses other matches than zlib (and
        // writes FLEVEL 2), which every inflater reads alike.
        assert_eq!(compressed.body[0], 0x78);
        assert_eq!(
            u16::from_be_bytes([compressed.body[0], compressed.body[1]]) % 31,
            0
        );
        assert!(compressed.body.len() < 200);
        assert_eq!(
            decompress(&compressed.body, compressed.sys_flag)
                .unwrap()
                .as_ref(),
            hello().as_slice()
        );
    }

    #[test]
    fn bodies_under_the_threshold_are_untouched() {
        let compressor = BodyCompressor::default();
        assert_eq!(
            compressor.try_to_compress(&[b'x'; COMPRESS_MSG_BODY_OVER_HOWMUCH - 1]),
            None
        );
        assert_eq!(compressor.try_to_compress(&[]), None);
        assert!(
            compressor
                .try_to_compress(&[b'x'; COMPRESS_MSG_BODY_OVER_HOWMUCH])
                .is_some()
        );
    }

    #[test]
    fn uncompressed_bodies_pass_through_borrowed() {
        let body = b"plain";
        let out = decompress(body, sys_flag::MULTI_TAGS | sys_flag::BORNHOST_V6).unwrap();
        assert!(matches!(out, Cow::Borrowed(b) if b == body));
    }

    #[test]
    fn lz4_zstd_and_unknown_types_are_reported() {
        let body = unhex(JAVA_LEVEL_5_HELLO);
        assert_eq!(
            decompress(&body, 0x101),
            Err(DecompressError::Unsupported {
                kind: CompressionType::Lz4,
                sys_flag: 0x101
            })
        );
        let zstd = decompress(&body, 0x201).unwrap_err();
        assert_eq!(
            zstd,
            DecompressError::Unsupported {
                kind: CompressionType::Zstd,
                sys_flag: 0x201
            }
        );
        assert_eq!(
            zstd.to_string(),
            "body is compressed with ZSTD (sysFlag 0x201), which this client cannot decompress"
        );
        assert_eq!(
            decompress(&body, 0x401),
            Err(DecompressError::UnknownType { sys_flag: 0x401 })
        );
    }

    #[test]
    fn damaged_streams_are_reported() {
        let body = unhex(JAVA_LEVEL_5_QUADRATIC);
        assert_eq!(
            decompress(&body[..body.len() - 10], 0x301),
            Err(DecompressError::Truncated)
        );
        assert_eq!(decompress(&[], 0x301), Err(DecompressError::Truncated));
        assert!(matches!(
            decompress(b"not zlib at all", 0x301),
            Err(DecompressError::Corrupt(_))
        ));
    }

    #[test]
    fn inflating_past_the_limit_is_refused() {
        let body = unhex(JAVA_LEVEL_5_HELLO);
        assert_eq!(
            decompress_with_limit(&body, 0x301, 4_799),
            Err(DecompressError::TooLarge { max: 4_799 })
        );
        assert_eq!(
            decompress_with_limit(&body, 0x301, 4_800).unwrap().len(),
            4_800
        );
    }

    #[test]
    fn trailing_bytes_after_the_stream_are_ignored() {
        let mut body = unhex(JAVA_LEVEL_5_HELLO);
        body.extend_from_slice(b"junk");
        assert_eq!(
            decompress(&body, 0x301).unwrap().as_ref(),
            hello().as_slice()
        );
    }

    #[test]
    fn compressor_levels_follow_javas_deflater() {
        assert!(BodyCompressor::new(1, -1).is_ok());
        assert!(BodyCompressor::new(1, 9).is_ok());
        assert_eq!(
            BodyCompressor::new(1, 10).unwrap_err(),
            CompressConfigError::LevelOutOfRange(10)
        );
        assert_eq!(
            BodyCompressor::new(1, -2).unwrap_err(),
            CompressConfigError::LevelOutOfRange(-2)
        );
        assert_eq!(
            BodyCompressor::new(1, 0)
                .unwrap()
                .compress_msg_body_over_howmuch(),
            1
        );
    }

    proptest! {
        /// Whatever the body and level, what is compressed decompresses to the body.
        #[test]
        fn compression_round_trips(
            body in prop::collection::vec(any::<u8>(), 0..20_000),
            repeat in 1usize..4,
            level in -1i32..=9,
        ) {
            let body = body.repeat(repeat);
            let compressor = BodyCompressor::new(COMPRESS_MSG_BODY_OVER_HOWMUCH, level).unwrap();
            match compressor.try_to_compress(&body) {
                Some(compressed) => {
                    prop_assert!(body.len() >= COMPRESS_MSG_BODY_OVER_HOWMUCH);
                    prop_assert_eq!(compressed.sys_flag, ZLIB_COMPRESSED_SYS_FLAG);
                    let back = decompress(&compressed.body, compressed.sys_flag).unwrap();
                    prop_assert_eq!(back.as_ref(), body.as_slice());
                }
                None => prop_assert!(body.len() < COMPRESS_MSG_BODY_OVER_HOWMUCH),
            }
        }

        /// Arbitrary bytes flagged as compressed never panic the decoder.
        #[test]
        fn decompress_never_panics(body in prop::collection::vec(any::<u8>(), 0..512), flag in any::<i32>()) {
            let _ = decompress_with_limit(&body, flag, 1 << 16);
        }
    }
}
