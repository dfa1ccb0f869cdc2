//! The RocketMQ remoting protocol: commands, frames, typed headers and the transport.
//!
//! - [`code`]: request, response and language codes;
//! - [`command`]: [`RemotingCommand`], the message of every connection;
//! - [`codec`]: frames and the JSON / ROCKETMQ header encodings;
//! - [`header`]: typed custom headers over `extFields`;
//! - [`headers`]: the header catalog of the 4.x protocol.

pub mod code;
pub mod codec;
pub mod command;
pub mod header;
pub mod headers;
pub mod transport;

pub use code::{LanguageCode, SerializeType, request_code, response_code};
pub use codec::{DecodeError, EncodeError, RemotingCodec};
pub use command::{ExtFields, RemotingCommand};
pub use header::{CommandHeader, HeaderError};
