//! Typed custom headers: RocketMQ's `CommandCustomHeader` classes as Rust structs.
//!
//! On the wire a header is flattened into `extFields`, every value a string. Reading is
//! lenient where real clients differ (booleans as `true`/`false`/`1`/`0`, an empty value read
//! as absent for non-string fields, unknown keys ignored) and strict where it matters: a
//! missing required field or an unparsable number is a [`HeaderError`] naming the field, which
//! a processor turns into a response with a remark — never a panic.
//!
//! Declare a header with [`command_header!`](crate::command_header):
//!
//! ```
//! ferrocket_engine::command_header! {
//!     /// GET_MAX_OFFSET request.
//!     pub struct MaxOffsetRequest {
//!         /// Topic.
//!         topic: String = "topic",
//!         /// Queue.
//!         queue_id: i32 = "queueId",
//!         /// Broker name (4.9.5+ clients).
//!         broker_name: Option<String> = "bname",
//!     }
//! }
//! ```

use compact_str::CompactString;

use super::command::ExtFields;

/// Why a typed header could not be read from `extFields`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// A required field is absent. The peer sent an incomplete request; answer it with an
    /// error response quoting this message.
    #[error("the request header field `{field}` is missing")]
    Missing {
        /// The wire name of the field.
        field: &'static str,
    },
    /// A field's value does not parse as its type.
    #[error("the request header field `{field}` has an invalid value `{value}`")]
    Invalid {
        /// The wire name of the field.
        field: &'static str,
        /// The value received.
        value: String,
    },
}

/// A typed header that travels flattened in `extFields`.
pub trait CommandHeader: Sized {
    /// Reads the header from `fields`.
    fn decode(fields: &ExtFields) -> Result<Self, HeaderError>;
    /// Writes the header into `fields` (absent optional fields are not written).
    fn encode(&self, fields: &mut ExtFields);
}

/// The empty header, for requests and responses that carry none.
impl CommandHeader for () {
    fn decode(_: &ExtFields) -> Result<Self, HeaderError> {
        Ok(())
    }
    fn encode(&self, _: &mut ExtFields) {}
}

/// Reads one header's fields out of `extFields`, one key after another.
///
/// `extFields` is sorted by key, and most headers declare their fields in key order (the
/// one-letter keys of SEND_MESSAGE_V2, for one), so each lookup starts where the last one
/// ended: a header is read in one pass instead of a binary search per field. Any other
/// order reads the same values.
pub struct FieldReader<'a> {
    fields: &'a ExtFields,
    cursor: usize,
}

impl<'a> FieldReader<'a> {
    /// A reader at the start of `fields`.
    pub fn new(fields: &'a ExtFields) -> Self {
        Self { fields, cursor: 0 }
    }

    /// The value of `key`, if present.
    pub fn get(&mut self, key: &str) -> Option<&'a str> {
        self.fields.get_from(key, &mut self.cursor)
    }
}

/// A header field type: how one value is read from and written to `extFields`.
pub trait HeaderField: Sized {
    /// Reads the field `key` through `reader`.
    fn read(reader: &mut FieldReader<'_>, key: &'static str) -> Result<Self, HeaderError>;
    /// Writes the field under `key` (nothing for an absent optional).
    fn write(&self, fields: &mut ExtFields, key: &'static str);
}

/// A scalar that has a string form on the wire.
pub trait HeaderScalar: Sized {
    /// Whether an empty string is a value of this type (true only for strings); otherwise an
    /// empty value counts as absent, as the ROCKETMQ binary header decodes it.
    const EMPTY_IS_VALUE: bool = false;
    /// Parses the wire form.
    fn parse(value: &str) -> Option<Self>;
    /// The wire form.
    fn render(&self) -> CompactString;
}

impl HeaderScalar for String {
    const EMPTY_IS_VALUE: bool = true;
    fn parse(value: &str) -> Option<Self> {
        Some(value.to_owned())
    }
    fn render(&self) -> CompactString {
        CompactString::from(self.as_str())
    }
}

/// Booleans: Java's `Boolean.parseBoolean` reads only `true`; C++ clients send `"1"`/`"0"`.
/// Accepting both is a safe superset.
impl HeaderScalar for bool {
    fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("true") || value == "1" {
            Some(true)
        } else if value.eq_ignore_ascii_case("false") || value == "0" {
            Some(false)
        } else {
            None
        }
    }
    fn render(&self) -> CompactString {
        CompactString::const_new(if *self { "true" } else { "false" })
    }
}

macro_rules! integer_scalar {
    ($($ty:ty),*) => {$(
        impl HeaderScalar for $ty {
            fn parse(value: &str) -> Option<Self> {
                // Clients send bare digits; only a value that does not parse as it is pays
                // for the lenient reading of a padded number (surrounding whitespace).
                value.parse().ok().or_else(|| value.trim().parse().ok())
            }
            fn render(&self) -> CompactString {
                // The digits, as Java's `String.valueOf`, without the formatting machinery:
                // every request and response header carries several numbers.
                compact_str::ToCompactString::to_compact_string(self)
            }
        }
    )*};
}
integer_scalar!(i32, i64, u32, u64);

fn present<'a, T: HeaderScalar>(reader: &mut FieldReader<'a>, key: &str) -> Option<&'a str> {
    reader
        .get(key)
        .filter(|value| T::EMPTY_IS_VALUE || !value.is_empty())
}

fn parse_field<T: HeaderScalar>(key: &'static str, value: &str) -> Result<T, HeaderError> {
    T::parse(value).ok_or_else(|| HeaderError::Invalid {
        field: key,
        value: value.to_owned(),
    })
}

impl<T: HeaderScalar> HeaderField for Option<T> {
    fn read(reader: &mut FieldReader<'_>, key: &'static str) -> Result<Self, HeaderError> {
        present::<T>(reader, key)
            .map(|value| parse_field(key, value))
            .transpose()
    }
    fn write(&self, fields: &mut ExtFields, key: &'static str) {
        if let Some(value) = self {
            fields.insert(key, value.render());
        }
    }
}

macro_rules! required_field {
    ($($ty:ty),*) => {$(
        impl HeaderField for $ty {
            fn read(reader: &mut FieldReader<'_>, key: &'static str) -> Result<Self, HeaderError> {
                match present::<$ty>(reader, key) {
                    Some(value) => parse_field(key, value),
                    None => Err(HeaderError::Missing { field: key }),
                }
            }
            fn write(&self, fields: &mut ExtFields, key: &'static str) {
                fields.insert(key, self.render());
            }
        }
    )*};
}
required_field!(String, bool, i32, i64, u32, u64);

/// Declares a typed remoting header: a struct whose fields map one to one onto `extFields`
/// keys, with `Option<T>` for optional fields. See the [module docs](crate::remoting::header).
#[macro_export]
macro_rules! command_header {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty = $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Default)]
        $vis struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl $crate::remoting::header::CommandHeader for $name {
            fn decode(
                fields: &$crate::remoting::command::ExtFields,
            ) -> ::std::result::Result<Self, $crate::remoting::header::HeaderError> {
                #[allow(unused_mut, unused_variables)]
                let mut reader = $crate::remoting::header::FieldReader::new(fields);
                ::std::result::Result::Ok(Self {
                    $( $field: <$ty as $crate::remoting::header::HeaderField>::read(&mut reader, $key)?, )*
                })
            }

            fn encode(&self, fields: &mut $crate::remoting::command::ExtFields) {
                fields.reserve(<[&str]>::len(&[$($key),*]));
                $( $crate::remoting::header::HeaderField::write(&self.$field, fields, $key); )*
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::command_header! {
        /// A header exercising every field kind.
        struct Sample {
            /// Required string.
            topic: String = "topic",
            /// Required int.
            queue_id: i32 = "queueId",
            /// Optional long.
            offset: Option<i64> = "offset",
            /// Optional bool.
            batch: Option<bool> = "batch",
        }
    }

    fn fields(pairs: &[(&str, &str)]) -> ExtFields {
        pairs.iter().copied().collect()
    }

    #[test]
    fn decode_reads_every_kind_and_ignores_unknown_keys() {
        let header = Sample::decode(&fields(&[
            ("topic", "T"),
            ("queueId", "3"),
            ("offset", "-1"),
            ("batch", "1"),
            ("AccessKey", ""),
        ]))
        .unwrap();
        assert_eq!(
            header,
            Sample {
                topic: "T".into(),
                queue_id: 3,
                offset: Some(-1),
                batch: Some(true),
            }
        );
    }

    #[test]
    fn missing_required_field_is_named() {
        let error = Sample::decode(&fields(&[("topic", "T")])).unwrap_err();
        assert_eq!(error, HeaderError::Missing { field: "queueId" });
        assert_eq!(
            error.to_string(),
            "the request header field `queueId` is missing"
        );
    }

    #[test]
    fn padded_numbers_are_read_leniently_and_padding_alone_is_not_a_number() {
        let header = Sample::decode(&fields(&[
            ("topic", "T"),
            ("queueId", " 3 "),
            ("offset", "\t-1\n"),
        ]))
        .unwrap();
        assert_eq!((header.queue_id, header.offset), (3, Some(-1)));
        for bad in ["3 x", " - 1", "+ 2"] {
            assert_eq!(
                Sample::decode(&fields(&[("topic", "T"), ("queueId", bad)])),
                Err(HeaderError::Invalid {
                    field: "queueId",
                    value: bad.into()
                }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_number_is_invalid_not_a_panic() {
        let error = Sample::decode(&fields(&[("topic", "T"), ("queueId", "x1")])).unwrap_err();
        assert_eq!(
            error,
            HeaderError::Invalid {
                field: "queueId",
                value: "x1".into()
            }
        );
    }

    #[test]
    fn empty_values_are_absent_except_for_strings() {
        let header = Sample::decode(&fields(&[
            ("topic", ""),
            ("queueId", "0"),
            ("offset", ""),
            ("batch", ""),
        ]))
        .unwrap();
        assert_eq!(header.topic, "");
        assert_eq!(header.offset, None);
        assert_eq!(header.batch, None);
    }

    #[test]
    fn encode_writes_strings_and_skips_absent_optionals() {
        let mut out = ExtFields::new();
        Sample {
            topic: "T".into(),
            queue_id: 7,
            offset: None,
            batch: Some(false),
        }
        .encode(&mut out);
        assert_eq!(
            out,
            fields(&[("topic", "T"), ("queueId", "7"), ("batch", "false")])
        );
    }

    #[test]
    fn numbers_render_as_java_writes_them() {
        for value in [0, -1, 7, i32::MIN, i32::MAX] {
            assert_eq!(value.render(), value.to_string());
        }
        for value in [i64::MIN, -1_700_000_000_000, i64::MAX] {
            assert_eq!(value.render(), value.to_string());
        }
        assert_eq!(u64::MAX.render(), "18446744073709551615");
    }
}
