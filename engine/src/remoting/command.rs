//! `RemotingCommand`: the one message type of every remoting connection, request or response.
//!
//! A command is a header (code, language, version, opaque, flag, remark, extFields) and an
//! opaque body. Typed request/response headers travel flattened in `extFields` as strings
//! (see [`super::header`]). Responses copy the request's `opaque` and serialize type and carry
//! [`CURRENT_VERSION`].

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
use compact_str::CompactString;

use super::code::{CURRENT_VERSION, LanguageCode, SerializeType, request_code, response_code};
use super::header::{CommandHeader, HeaderError};

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request is oneway; the receiver must not answer it.
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// The `extFields` map: header fields by name, always strings on the wire.
///
/// Kept sorted by key so that encodings are deterministic. A request carries a dozen or so
/// short fields, so they live in one sorted vector (binary search, no per-node allocation)
/// of compact strings (keys and values up to 24 bytes are stored inline): decoding and
/// encoding headers is on every request's path.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtFields(Vec<(CompactString, CompactString)>);

impl ExtFields {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `capacity` fields.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0
            .binary_search_by(|(k, _)| compare_short(k.as_bytes(), key.as_bytes()))
    }

    /// [`position`](Self::position), trying `hint` first: where `key` is, or would be
    /// inserted, when that is `hint`, found with at most two comparisons.
    fn position_near(&self, key: &str, hint: usize) -> Result<usize, usize> {
        let fields = &self.0;
        let wanted = key.as_bytes();
        let after_previous = |hint: usize| {
            hint == 0 || compare_short(fields[hint - 1].0.as_bytes(), wanted) == Ordering::Less
        };
        if hint <= fields.len() && after_previous(hint) {
            match fields
                .get(hint)
                .map(|(k, _)| compare_short(wanted, k.as_bytes()))
            {
                None | Some(Ordering::Less) => return Err(hint),
                Some(Ordering::Equal) => return Ok(hint),
                Some(Ordering::Greater) => {}
            }
        }
        self.position(key)
    }

    /// Makes room for `additional` more fields.
    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        let index = self.position(key).ok()?;
        Some(self.0[index].1.as_str())
    }

    /// The value of `key`, looked up from `cursor` (the place after the key read last) and
    /// moving it past `key`'s place: reading keys in the order they sort takes one or two
    /// comparisons each, any other order a binary search.
    pub(crate) fn get_from(&self, key: &str, cursor: &mut usize) -> Option<&str> {
        // Keys are unique, so the key at the cursor being the one asked for settles it: one
        // equality test (length first), where ordering it against its neighbours compares
        // both of them.
        if let Some((found, value)) = self.0.get(*cursor)
            && equal_short(found.as_bytes(), key.as_bytes())
        {
            *cursor += 1;
            return Some(value.as_str());
        }
        match self.position_near(key, *cursor) {
            Ok(index) => {
                *cursor = index + 1;
                Some(self.0[index].1.as_str())
            }
            Err(index) => {
                *cursor = index;
                None
            }
        }
    }

    /// Sets `key` to `value`, replacing any earlier value.
    pub fn insert(&mut self, key: impl Into<CompactString>, value: impl Into<CompactString>) {
        let key = key.into();
        let value = value.into();
        // Headers are mostly written and decoded in key order: append without a search.
        if self.0.last().is_none_or(|(last, _)| {
            compare_short(last.as_bytes(), key.as_bytes()) == Ordering::Less
        }) {
            self.0.push((key, value));
            return;
        }
        match self.position(&key) {
            Ok(index) => self.0[index].1 = value,
            Err(index) => self.0.insert(index, (key, value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.position(key).ok()?;
        Some(self.0.remove(index).1.into_string())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// The fields in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields (on the wire: `extFields` absent).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Byte-wise order of two short strings (header keys are mostly one to a dozen bytes), the
/// same order as `str`'s, without a call to `memcmp` per comparison.
fn compare_short(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Whether two short strings are equal, lengths first, without a call to `memcmp`.
fn equal_short(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<CompactString>, V: Into<CompactString>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut fields = Self::new();
        for (key, value) in iter {
            fields.insert(key, value);
        }
        fields
    }
}

impl serde::Serialize for ExtFields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

/// A remoting request or response.
#[derive(Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code on a request, response code on a response.
    pub code: i32,
    /// The sender's implementation language.
    pub language: LanguageCode,
    /// The sender's `MQVersion` ordinal.
    pub version: i32,
    /// The request id; a response echoes its request's.
    pub opaque: i32,
    /// Flag bits: [`FLAG_RESPONSE`], [`FLAG_ONEWAY`].
    pub flag: i32,
    /// Human-readable text, usually the error of a response.
    pub remark: Option<String>,
    /// The custom header's fields.
    pub ext_fields: ExtFields,
    /// The body; empty means absent.
    pub body: Bytes,
    /// The header encoding this command arrived in or will be sent in.
    pub serialize_type: SerializeType,
}

impl Default for RemotingCommand {
    fn default() -> Self {
        Self {
            code: 0,
            language: LanguageCode::Java,
            version: CURRENT_VERSION,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: ExtFields::new(),
            body: Bytes::new(),
            serialize_type: SerializeType::Json,
        }
    }
}

impl fmt::Debug for RemotingCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.is_response() {
            response_code::name(self.code)
        } else {
            request_code::name(self.code)
        };
        f.debug_struct("RemotingCommand")
            .field(
                "code",
                &format_args!("{}({})", self.code, name.unwrap_or("?")),
            )
            .field("opaque", &self.opaque)
            .field("flag", &self.flag)
            .field("language", &self.language)
            .field("version", &self.version)
            .field("remark", &self.remark)
            .field("ext_fields", &self.ext_fields)
            .field("body_len", &self.body.len())
            .field("serialize_type", &self.serialize_type)
            .finish()
    }
}

impl RemotingCommand {
    /// A request with `code` and no header.
    pub fn request(code: i32) -> Self {
        Self {
            code,
            ..Self::default()
        }
    }

    /// A request with `code` and the typed `header`.
    pub fn request_with_header(code: i32, header: &impl CommandHeader) -> Self {
        let mut command = Self::request(code);
        header.encode(&mut command.ext_fields);
        command
    }

    /// A response to `request`: same opaque and serialize type, response flag set, code
    /// `code`, optional remark.
    pub fn response_to(request: &RemotingCommand, code: i32, remark: Option<String>) -> Self {
        Self {
            code,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            remark,
            serialize_type: request.serialize_type,
            ..Self::default()
        }
    }

    /// A successful response to `request`.
    pub fn success_to(request: &RemotingCommand) -> Self {
        Self::response_to(request, response_code::SUCCESS, None)
    }

    /// An error response to `request` with `code` and `remark`.
    pub fn error_to(request: &RemotingCommand, code: i32, remark: impl Into<String>) -> Self {
        Self::response_to(request, code, Some(remark.into()))
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Writes a typed header into `extFields`.
    pub fn with_header(mut self, header: &impl CommandHeader) -> Self {
        header.encode(&mut self.ext_fields);
        self
    }

    /// Reads a typed header from `extFields`.
    pub fn decode_header<H: CommandHeader>(&self) -> Result<H, HeaderError> {
        H::decode(&self.ext_fields)
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this is a oneway request (no answer expected).
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Marks this request oneway.
    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// Marks this command a response.
    pub fn mark_response(&mut self) {
        self.flag |= FLAG_RESPONSE;
    }

    /// Whether this response reports success.
    pub fn is_success(&self) -> bool {
        self.code == response_code::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_copies_opaque_and_serialize_type() {
        let mut request = RemotingCommand::request(request_code::PULL_MESSAGE);
        request.opaque = 77;
        request.serialize_type = SerializeType::RocketMq;
        let response = RemotingCommand::error_to(&request, response_code::SYSTEM_BUSY, "busy");
        assert_eq!(response.opaque, 77);
        assert_eq!(response.serialize_type, SerializeType::RocketMq);
        assert!(response.is_response());
        assert!(!response.is_oneway());
        assert_eq!(response.version, CURRENT_VERSION);
        assert_eq!(response.remark.as_deref(), Some("busy"));
    }

    proptest::proptest! {
        /// Reading keys one after another from a cursor finds what a lookup of each finds, in
        /// any order, present or not.
        #[test]
        fn reading_from_a_cursor_finds_what_a_lookup_finds(
            fields in proptest::collection::btree_map("[a-dA-D_]{0,3}", "[a-z]{0,3}", 0..12),
            keys in proptest::collection::vec("[a-dA-D_]{0,3}", 0..16),
            sorted_first in proptest::bool::ANY,
        ) {
            let ext: ExtFields = fields.iter().collect();
            let mut keys = keys;
            if sorted_first {
                keys.sort();
            }
            let mut cursor = 0;
            for key in &keys {
                proptest::prop_assert_eq!(ext.get_from(key, &mut cursor), ext.get(key));
                proptest::prop_assert!(cursor <= ext.len());
            }
        }
    }

    #[test]
    fn a_cursor_reads_keys_in_order_and_out_of_order() {
        let ext: ExtFields = [("a", "1"), ("c", "3"), ("e", "5")].into_iter().collect();
        let mut cursor = 0;
        let in_order: Vec<_> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|key| ext.get_from(key, &mut cursor))
            .collect();
        assert_eq!(
            in_order,
            [Some("1"), None, Some("3"), None, Some("5"), None]
        );
        assert_eq!(cursor, 3);
        let reversed: Vec<_> = ["e", "c", "a"]
            .iter()
            .map(|key| ext.get_from(key, &mut cursor))
            .collect();
        assert_eq!(reversed, [Some("5"), Some("3"), Some("1")]);
    }

    #[test]
    fn oneway_flag_is_bit_one() {
        let mut request = RemotingCommand::request(request_code::UPDATE_CONSUMER_OFFSET);
        request.mark_oneway();
        assert_eq!(request.flag, 2);
        assert!(request.is_oneway());
        assert!(!request.is_response());
    }
}
