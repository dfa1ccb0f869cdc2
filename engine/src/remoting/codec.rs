//! Frame codec: RemotingCommand ⇄ bytes, in both header encodings.
//!
//! ```text
//! +--------------+---------------------------+--------------+------------+
//! | length: i32  | header_len_and_type: i32  | header bytes | body bytes |
//! +--------------+---------------------------+--------------+------------+
//!  length = 4 + header_len + body_len (it does not count itself)
//!  header_len_and_type = serialize_type << 24 | header_len (low 24 bits)
//! ```
//!
//! All integers are big-endian. A whole frame (length word included) is at most
//! [`FRAME_SIZE_MAX`] bytes, as Java's `LengthFieldBasedFrameDecoder(16777216, …)`. The JSON
//! header is read leniently (numbers, booleans and strings alike in `extFields`, language as
//! name or ordinal, unknown keys ignored) and written as Java writes it: fields sorted, nulls
//! omitted, `extFields` values as strings. Any malformed input is a [`DecodeError`]; the
//! decoder never panics on arbitrary bytes (fuzzed in `fuzz/`).

use std::fmt;
use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use compact_str::{CompactString, ToCompactString};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

mod json_scan;
mod json_text;
mod json_write;

use super::code::{LanguageCode, SerializeType};
use super::command::{ExtFields, RemotingCommand};

/// Largest frame accepted or produced, counting its 4-byte length word.
pub const FRAME_SIZE_MAX: usize = 16 * 1024 * 1024;

/// Largest header: its length must fit the low 24 bits of the header word.
const HEADER_SIZE_MAX: usize = 0x00FF_FFFF;

/// Room reserved for a JSON header: a SEND_MESSAGE_V2 request's is 300–400 bytes.
const HEADER_ESTIMATE: usize = 512;

/// Fixed part of the ROCKETMQ binary header: code, language, version, opaque, flag, remark
/// length and ext length.
const BINARY_HEADER_FIXED_SIZE: usize = 2 + 1 + 2 + 4 + 4 + 4 + 4;

/// Why bytes could not be decoded into a command. Every variant means the peer is broken or
/// hostile: the connection is closed (as Java's decoder does).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The length word announces more than [`FRAME_SIZE_MAX`].
    #[error("frame of {size} bytes exceeds the maximum of {FRAME_SIZE_MAX}")]
    FrameTooLarge {
        /// Announced size, length word included.
        size: u64,
    },
    /// The length word announces fewer bytes than the header-length word needs.
    #[error("frame length {length} is too short to hold a header length")]
    FrameTooShort {
        /// The announced length.
        length: i64,
    },
    /// The header length points past the end of the frame.
    #[error("header length {header_len} exceeds the frame's {available} bytes")]
    HeaderLengthOutOfRange {
        /// Announced header length.
        header_len: usize,
        /// Bytes left in the frame for header and body.
        available: usize,
    },
    /// The serialize-type byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("unknown header serialize type {0}")]
    UnknownSerializeType(u8),
    /// The JSON header is not valid JSON of the expected shape.
    #[error("malformed JSON header: {0}")]
    Json(String),
    /// The ROCKETMQ binary header is truncated or inconsistent.
    #[error("malformed ROCKETMQ header: {0}")]
    Binary(&'static str),
    /// A string in the binary header is not UTF-8.
    #[error("header {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// The byte stream failed.
    #[error("connection read failed: {0}")]
    Io(#[from] io::Error),
}

/// Why a command could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoded header or frame would exceed the protocol's limits. Callers must bound
    /// bodies (pull batches, message size) below [`FRAME_SIZE_MAX`].
    #[error("encoded frame of {size} bytes exceeds the maximum of {FRAME_SIZE_MAX}")]
    FrameTooLarge {
        /// The size the frame would have had.
        size: usize,
    },
    /// The ROCKETMQ binary header cannot represent a value (code or version outside i16,
    /// key longer than i16).
    #[error("value does not fit the ROCKETMQ binary header: {0}")]
    NotRepresentable(&'static str),
    /// The byte stream failed.
    #[error("connection write failed: {0}")]
    Io(#[from] io::Error),
}

/// Appends the frame for `command` to `out`.
pub fn encode(command: &RemotingCommand, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    out.reserve(8 + HEADER_ESTIMATE + command.body.len());
    out.put_u32(0); // length, patched below
    out.put_u32(0); // header length and type, patched below
    let header_start = out.len();
    let encoded = match command.serialize_type {
        SerializeType::Json => {
            // Into a vector first: a vector grows with no per-write capacity check (a frame
            // buffer takes each small write through `BufMut`), and one copy is cheaper.
            let mut json = Vec::with_capacity(HEADER_ESTIMATE);
            json_write::write_header(command, &mut json);
            out.extend_from_slice(&json);
            Ok(())
        }
        SerializeType::RocketMq => encode_binary_header(command, out),
    };
    if let Err(error) = encoded {
        out.truncate(start);
        return Err(error);
    }
    let header_len = out.len() - header_start;
    let frame_size = 4 + 4 + header_len + command.body.len();
    if header_len > HEADER_SIZE_MAX || frame_size > FRAME_SIZE_MAX {
        out.truncate(start);
        return Err(EncodeError::FrameTooLarge { size: frame_size });
    }
    out.put_slice(&command.body);
    let length = u32::try_from(frame_size - 4).expect("frame size is bounded by FRAME_SIZE_MAX");
    let header_word = (u32::from(command.serialize_type.code()) << 24)
        | u32::try_from(header_len).expect("header length is bounded by 24 bits");
    out[start..start + 4].copy_from_slice(&length.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&header_word.to_be_bytes());
    Ok(())
}

/// Encodes `command` into a fresh buffer.
pub fn encode_to_bytes(command: &RemotingCommand) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    encode(command, &mut out)?;
    Ok(out.freeze())
}

/// Decodes one frame from the front of `buf` if a whole frame is there, consuming it.
/// Returns `Ok(None)` when more bytes are needed.
pub fn decode(buf: &mut BytesMut) -> Result<Option<RemotingCommand>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let length = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if length < 4 {
        return Err(DecodeError::FrameTooShort {
            length: i64::from(length),
        });
    }
    let frame_size = 4 + u64::from(length.unsigned_abs());
    if frame_size > FRAME_SIZE_MAX as u64 {
        return Err(DecodeError::FrameTooLarge { size: frame_size });
    }
    let frame_size = frame_size as usize;
    if buf.len() < frame_size {
        buf.reserve(frame_size - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(frame_size).freeze();
    frame.advance(4);
    decode_frame_payload(frame).map(Some)
}

/// Decodes a frame whose length word has already been stripped: header word, header, body.
pub fn decode_frame_payload(mut payload: Bytes) -> Result<RemotingCommand, DecodeError> {
    if payload.len() < 4 {
        return Err(DecodeError::FrameTooShort {
            length: payload.len() as i64,
        });
    }
    let header_word = payload.get_u32();
    let serialize_code = (header_word >> 24) as u8;
    let header_len = (header_word & 0x00FF_FFFF) as usize;
    if header_len > payload.len() {
        return Err(DecodeError::HeaderLengthOutOfRange {
            header_len,
            available: payload.len(),
        });
    }
    let serialize_type = SerializeType::from_code(serialize_code)
        .ok_or(DecodeError::UnknownSerializeType(serialize_code))?;
    let header = payload.split_to(header_len);
    let mut command = match serialize_type {
        SerializeType::Json => decode_json_header(&header)?,
        SerializeType::RocketMq => decode_binary_header(header)?,
    };
    command.serialize_type = serialize_type;
    command.body = payload;
    Ok(command)
}

// ---------------------------------------------------------------------------------------------
// JSON header

/// The JSON header as any client may write it.
#[derive(Deserialize)]
struct JsonHeaderIn {
    #[serde(default)]
    code: LenientInt,
    #[serde(default)]
    language: LenientLanguage,
    #[serde(default)]
    version: LenientInt,
    #[serde(default)]
    opaque: LenientInt,
    #[serde(default)]
    flag: LenientInt,
    #[serde(default)]
    remark: LenientText,
    #[serde(default, rename = "extFields")]
    ext_fields: LenientExtFields,
}

/// Headers nested at most this deep (a real one is 2 deep) are parsed with `sonic-rs`; deeper
/// ones with `serde_json`, whose recursion limit (128) keeps a hostile header from exhausting
/// the stack (`sonic-rs` allows 255 levels, too many for a 2 MiB thread in a debug build).
const SONIC_NESTING_MAX: usize = 32;

/// An upper bound of how deep `json` nests: its count of `{` and `[` bytes.
fn nesting_bound(json: &[u8]) -> usize {
    json.iter().filter(|&&b| b == b'{' || b == b'[').count()
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, DecodeError> {
    if let Some(command) = json_scan::scan_header(header) {
        return Ok(command);
    }
    decode_json_header_in_general(header)
}

/// The general JSON header decoder: every lenient rule, and the errors.
fn decode_json_header_in_general(header: &[u8]) -> Result<RemotingCommand, DecodeError> {
    let parsed: JsonHeaderIn = if nesting_bound(header) <= SONIC_NESTING_MAX {
        sonic_rs::from_slice(header).map_err(|e| DecodeError::Json(e.to_string()))?
    } else {
        serde_json::from_slice(header).map_err(|e| DecodeError::Json(e.to_string()))?
    };
    Ok(RemotingCommand {
        code: parsed.code.0,
        language: parsed.language.0,
        version: parsed.version.0,
        opaque: parsed.opaque.0,
        flag: parsed.flag.0,
        remark: parsed.remark.0.map(CompactString::into_string),
        ext_fields: parsed.ext_fields.0,
        ..RemotingCommand::default()
    })
}

/// An `int` field that may arrive as a number, a numeric string or null (read as 0).
#[derive(Default)]
struct LenientInt(i32);

impl<'de> Deserialize<'de> for LenientInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl Visitor<'_> for IntVisitor {
            type Value = LenientInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a 32-bit integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(LenientInt)
                    .map_err(|_| E::custom(format!("{v} is out of range for an int")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i32::try_from(v)
                    .map(LenientInt)
                    .map_err(|_| E::custom(format!("{v} is out of range for an int")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX) {
                    Ok(LenientInt(v as i32))
                } else {
                    Err(E::custom(format!("{v} is not an int")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.trim()
                    .parse()
                    .map(LenientInt)
                    .map_err(|_| E::custom(format!("{v:?} is not an int")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientInt(0))
            }
        }
        deserializer.deserialize_any(IntVisitor)
    }
}

/// `language`: a Java enum name or an ordinal; unknown values are `OTHER`.
#[derive(Default)]
struct LenientLanguage(LanguageCode);

impl<'de> Deserialize<'de> for LenientLanguage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LanguageVisitor;
        impl Visitor<'_> for LanguageVisitor {
            type Value = LenientLanguage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a language name or ordinal")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientLanguage(LanguageCode::from_name(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientLanguage(LanguageCode::from_code(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientLanguage(LanguageCode::from_code(
                    i64::try_from(v).unwrap_or(-1),
                )))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientLanguage(LanguageCode::Java))
            }
        }
        deserializer.deserialize_any(LanguageVisitor)
    }
}

/// A text field that may arrive as any JSON scalar (coerced to its text) or null (absent).
/// Objects and arrays are kept as their JSON text, as fastjson coerces them for
/// `Map<String, String>`.
#[derive(Default)]
struct LenientText(Option<CompactString>);

impl<'de> Deserialize<'de> for LenientText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = LenientText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a text value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientText(Some(CompactString::from(v))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(LenientText(Some(CompactString::from(v))))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LenientText(Some(CompactString::const_new(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientText(Some(v.to_compact_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientText(Some(v.to_compact_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LenientText(Some(
                    serde_json::Number::from_f64(v)
                        .map_or_else(|| v.to_compact_string(), |n| n.to_compact_string()),
                )))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientText(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let nested =
                    serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(LenientText(Some(nested.to_compact_string())))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let nested =
                    serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(LenientText(Some(nested.to_compact_string())))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// `extFields`: an object of lenient text values, or null.
#[derive(Default)]
struct LenientExtFields(ExtFields);

impl<'de> Deserialize<'de> for LenientExtFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ExtVisitor;
        impl<'de> Visitor<'de> for ExtVisitor {
            type Value = LenientExtFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header fields")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientExtFields::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = ExtFields::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((key, value)) = map.next_entry::<CompactString, LenientText>()? {
                    if let Some(value) = value.0 {
                        fields.insert(key, value);
                    }
                }
                Ok(LenientExtFields(fields))
            }
        }
        deserializer.deserialize_any(ExtVisitor)
    }
}

// ---------------------------------------------------------------------------------------------
// ROCKETMQ binary header

fn encode_binary_header(command: &RemotingCommand, out: &mut BytesMut) -> Result<(), EncodeError> {
    let code = i16::try_from(command.code).map_err(|_| EncodeError::NotRepresentable("code"))?;
    let version =
        i16::try_from(command.version).map_err(|_| EncodeError::NotRepresentable("version"))?;
    out.put_i16(code);
    out.put_u8(command.language.code());
    out.put_i16(version);
    out.put_i32(command.opaque);
    out.put_i32(command.flag);
    let remark = command.remark.as_deref().unwrap_or("");
    out.put_u32(len_u32(remark.len())?);
    out.put_slice(remark.as_bytes());
    let ext_len_at = out.len();
    out.put_u32(0);
    for (key, value) in command.ext_fields.iter() {
        let key_len =
            i16::try_from(key.len()).map_err(|_| EncodeError::NotRepresentable("key length"))?;
        out.put_i16(key_len);
        out.put_slice(key.as_bytes());
        out.put_u32(len_u32(value.len())?);
        out.put_slice(value.as_bytes());
    }
    let ext_len = len_u32(out.len() - ext_len_at - 4)?;
    out[ext_len_at..ext_len_at + 4].copy_from_slice(&ext_len.to_be_bytes());
    Ok(())
}

fn len_u32(len: usize) -> Result<u32, EncodeError> {
    if len > FRAME_SIZE_MAX {
        return Err(EncodeError::FrameTooLarge { size: len });
    }
    Ok(len as u32)
}

/// Reads a length-prefixed UTF-8 string of `len` bytes; empty reads as `None`.
fn take_text(
    header: &mut Bytes,
    len: usize,
    what: &'static str,
) -> Result<Option<String>, DecodeError> {
    if len > header.len() {
        return Err(DecodeError::Binary(what));
    }
    let bytes = header.split_to(len);
    if bytes.is_empty() {
        return Ok(None);
    }
    String::from_utf8(bytes.to_vec())
        .map(Some)
        .map_err(|_| DecodeError::InvalidUtf8(what))
}

fn take_len(header: &mut Bytes, what: &'static str) -> Result<usize, DecodeError> {
    if header.len() < 4 {
        return Err(DecodeError::Binary(what));
    }
    let len = header.get_i32();
    usize::try_from(len).map_err(|_| DecodeError::Binary(what))
}

fn decode_binary_header(mut header: Bytes) -> Result<RemotingCommand, DecodeError> {
    if header.len() < BINARY_HEADER_FIXED_SIZE {
        return Err(DecodeError::Binary("header shorter than its fixed part"));
    }
    let code = i32::from(header.get_i16());
    let language = LanguageCode::from_code(i64::from(header.get_u8()));
    let version = i32::from(header.get_i16());
    let opaque = header.get_i32();
    let flag = header.get_i32();
    let remark_len = take_len(&mut header, "remark length")?;
    let remark = take_text(&mut header, remark_len, "remark")?;
    let ext_len = take_len(&mut header, "ext fields length")?;
    if ext_len > header.len() {
        return Err(DecodeError::Binary("ext fields length past the header"));
    }
    let mut ext = header.split_to(ext_len);
    let mut ext_fields = ExtFields::new();
    while ext.has_remaining() {
        if ext.len() < 2 {
            return Err(DecodeError::Binary("truncated ext key length"));
        }
        let key_len = usize::try_from(ext.get_i16())
            .map_err(|_| DecodeError::Binary("negative ext key length"))?;
        let key = take_text(&mut ext, key_len, "ext key")?;
        let value_len = take_len(&mut ext, "ext value length")?;
        let value = take_text(&mut ext, value_len, "ext value")?;
        // Zero-length keys or values decode as null in Java and are dropped from the map.
        if let (Some(key), Some(value)) = (key, value) {
            ext_fields.insert(key, value);
        }
    }
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields,
        serialize_type: SerializeType::RocketMq,
        ..RemotingCommand::default()
    })
}

// ---------------------------------------------------------------------------------------------
// tokio-util codec

/// The frame codec for `tokio_util::codec::{FramedRead, FramedWrite}`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RemotingCodec;

impl tokio_util::codec::Decoder for RemotingCodec {
    type Item = RemotingCommand;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        decode(src)
    }
}

impl tokio_util::codec::Encoder<&RemotingCommand> for RemotingCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: &RemotingCommand, dst: &mut BytesMut) -> Result<(), Self::Error> {
        encode(item, dst)
    }
}

#[cfg(test)]
mod tests;
