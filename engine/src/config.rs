//! Configuration bound to RocketMQ's Java property keys.
//!
//! `namesrv.conf` and `broker.conf` are Java properties files whose keys are the Java
//! config fields (`listenPort`, `brokerClusterName`, `flushDiskType`, ...). A config struct
//! declared with [`properties_config!`](crate::properties_config) maps each key to a field,
//! parses its value with a clear error naming the key, and prints itself back as properties
//! (`-p`). Keys no config knows are reported to the caller rather than silently dropped.

use std::collections::BTreeMap;

/// Why a configuration could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse as its key's type.
    #[error("invalid value {value:?} for `{key}`: expected {expected}")]
    InvalidValue {
        /// The property key.
        key: String,
        /// The value found.
        value: String,
        /// What the key takes.
        expected: &'static str,
    },
    /// The properties file could not be read.
    #[error("cannot read properties: {0}")]
    Parse(String),
}

/// A value a property can hold.
pub trait ConfigValue: Sized {
    /// What a valid value looks like, for error messages.
    const EXPECTED: &'static str;
    /// Parses the property text.
    fn parse_config(text: &str) -> Option<Self>;
    /// The property text.
    fn render_config(&self) -> String;
}

impl ConfigValue for String {
    const EXPECTED: &'static str = "text";
    fn parse_config(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
    fn render_config(&self) -> String {
        self.clone()
    }
}

/// Optional text: empty means unset.
impl ConfigValue for Option<String> {
    const EXPECTED: &'static str = "text";
    fn parse_config(text: &str) -> Option<Self> {
        Some((!text.is_empty()).then(|| text.to_owned()))
    }
    fn render_config(&self) -> String {
        self.clone().unwrap_or_default()
    }
}

impl ConfigValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse_config(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
    fn render_config(&self) -> String {
        self.to_string()
    }
}

macro_rules! numeric_config_value {
    ($($ty:ty => $expected:literal),*) => {$(
        impl ConfigValue for $ty {
            const EXPECTED: &'static str = $expected;
            fn parse_config(text: &str) -> Option<Self> {
                text.parse().ok()
            }
            fn render_config(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
numeric_config_value!(
    i32 => "an integer", i64 => "an integer", u16 => "a port number (0-65535)",
    u32 => "a non-negative integer", u64 => "a non-negative integer",
    usize => "a non-negative integer", f64 => "a number"
);

/// A config struct bound to property keys.
pub trait PropertiesConfig {
    /// Sets the field bound to `key`. `Ok(false)` if no field has that key.
    fn set_property(&mut self, key: &str, value: &str) -> Result<bool, ConfigError>;
    /// Every key and its current value, in declaration order.
    fn properties(&self) -> Vec<(&'static str, String)>;
}

/// Declares a config struct whose fields are bound to Java property keys, with defaults.
#[macro_export]
macro_rules! properties_config {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident : $ty:ty = $default:expr ; $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis struct $name {
            $( $(#[$field_meta])* pub $field: $ty, )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $crate::config::PropertiesConfig for $name {
            fn set_property(&mut self, key: &str, value: &str)
                -> ::std::result::Result<bool, $crate::config::ConfigError> {
                match key {
                    $( $key => {
                        self.$field = <$ty as $crate::config::ConfigValue>::parse_config(value.trim())
                            .ok_or_else(|| $crate::config::ConfigError::InvalidValue {
                                key: key.to_owned(),
                                value: value.to_owned(),
                                expected: <$ty as $crate::config::ConfigValue>::EXPECTED,
                            })?;
                        Ok(true)
                    } )*
                    _ => Ok(false),
                }
            }

            fn properties(&self) -> ::std::vec::Vec<(&'static str, ::std::string::String)> {
                vec![ $( ($key, $crate::config::ConfigValue::render_config(&self.$field)), )* ]
            }
        }
    };
}

/// Parses Java properties text into key → value.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    java_properties::read(text.as_bytes())
        .map(|map| map.into_iter().collect())
        .map_err(|e| ConfigError::Parse(e.to_string()))
}

/// Applies `properties` to every config that has each key (as Java's `properties2Object`
/// offers each key to several config objects). Returns the keys no config knows, sorted.
pub fn apply_properties(
    configs: &mut [&mut dyn PropertiesConfig],
    properties: &BTreeMap<String, String>,
) -> Result<Vec<String>, ConfigError> {
    let mut unknown = Vec::new();
    for (key, value) in properties {
        let mut known = false;
        for config in configs.iter_mut() {
            known |= config.set_property(key, value)?;
        }
        if !known {
            unknown.push(key.clone());
        }
    }
    Ok(unknown)
}

/// Renders configs as properties text, one `key=value` per line, for `-p`.
pub fn render_properties(configs: &[&dyn PropertiesConfig]) -> String {
    let mut text = String::new();
    for config in configs {
        for (key, value) in config.properties() {
            text.push_str(key);
            text.push('=');
            text.push_str(&value);
            text.push('\n');
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::properties_config! {
        /// A test config.
        struct Sample {
            /// A port.
            listen_port: u16 = 9876; "listenPort",
            /// A flag.
            cluster_test: bool = false; "clusterTest",
            /// Optional text.
            namesrv_addr: Option<String> = None; "namesrvAddr",
        }
    }

    #[test]
    fn properties_bind_to_fields_and_unknown_keys_are_reported() {
        let properties = parse_properties(
            "# comment\nlistenPort = 9877\nclusterTest=TRUE\nnamesrvAddr=a:1;b:2\nmystery=1\n",
        )
        .unwrap();
        let mut config = Sample::default();
        let unknown = apply_properties(&mut [&mut config], &properties).unwrap();
        assert_eq!(unknown, vec!["mystery".to_string()]);
        assert_eq!(config.listen_port, 9877);
        assert!(config.cluster_test);
        assert_eq!(config.namesrv_addr.as_deref(), Some("a:1;b:2"));
        assert_eq!(
            render_properties(&[&config]),
            "listenPort=9877\nclusterTest=true\nnamesrvAddr=a:1;b:2\n"
        );
    }

    #[test]
    fn bad_value_names_the_key() {
        let mut config = Sample::default();
        let properties = parse_properties("listenPort=98765\n").unwrap();
        let error = apply_properties(&mut [&mut config], &properties).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid value \"98765\" for `listenPort`: expected a port number (0-65535)"
        );
    }
}
