//! Lenient readers for fields that real clients encode differently: numbers as strings (the
//! C++ client sends `"subVersion":"1795…"`), enums as ordinals or names, null collections.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Reads an `i64` from a JSON number, a numeric string or null (0).
pub fn i64_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    struct AnyI64;
    impl Visitor<'_> for AnyI64 {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer or a numeric string")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e18 {
                Ok(v as i64)
            } else {
                Err(E::custom("not an integer"))
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
            v.trim()
                .parse()
                .map_err(|_| E::custom(format!("{v:?} is not an integer")))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<i64, E> {
            Ok(i64::from(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
            Ok(0)
        }
    }
    deserializer.deserialize_any(AnyI64)
}

/// Reads an `i32` like [`i64_any`].
pub fn i32_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
    let value = i64_any(deserializer)?;
    i32::try_from(value).map_err(|_| de::Error::custom(format!("{value} is out of range")))
}

/// Reads a `bool` from a JSON boolean, `"true"`/`"false"`/`"1"`/`"0"`, a number or null.
pub fn bool_any<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    struct AnyBool;
    impl Visitor<'_> for AnyBool {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            match v {
                "true" | "1" => Ok(true),
                "false" | "0" | "" => Ok(false),
                other => Err(E::custom(format!("{other:?} is not a boolean"))),
            }
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    deserializer.deserialize_any(AnyBool)
}

/// Reads a collection that may be null or absent as its default.
pub fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Declares a Java enum that travels as its name and is read from a name or an ordinal.
#[macro_export]
macro_rules! java_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $java:literal ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $( $(#[$vmeta])* $variant, )* }

        impl $name {
            /// Every value, in Java ordinal order.
            pub const ALL: &'static [$name] = &[$( $name::$variant, )*];

            /// The Java enum name.
            pub fn name(self) -> &'static str {
                match self { $( $name::$variant => $java, )* }
            }

            /// The value with Java name `name`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $( $java => Some($name::$variant), )* _ => None }
            }

            /// The value with Java ordinal `ordinal`.
            pub fn from_ordinal(ordinal: i64) -> Option<Self> {
                usize::try_from(ordinal).ok().and_then(|i| Self::ALL.get(i).copied())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = ::serde_json::Value::deserialize(d)?;
                let parsed = match &value {
                    ::serde_json::Value::String(s) => Self::from_name(s)
                        .or_else(|| s.parse::<i64>().ok().and_then(Self::from_ordinal)),
                    ::serde_json::Value::Number(n) => n.as_i64().and_then(Self::from_ordinal),
                    _ => None,
                };
                parsed.ok_or_else(|| ::serde::de::Error::custom(
                    format!("{} is not a {}", value, stringify!($name))))
            }
        }
    };
}
