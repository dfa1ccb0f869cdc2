//! Errors of remoting invocations, as the caller sees them.

use super::super::codec::EncodeError;

/// Why an invocation did not produce a response. The variants follow the Java client's
/// exception kinds (`RemotingConnectException`, `RemotingSendRequestException`,
/// `RemotingTimeoutException`, `RemotingTooMuchRequestException`), so callers can apply the
/// same retry rules.
#[derive(Debug, thiserror::Error)]
pub enum RemotingError {
    /// No connection could be opened to `addr`. Try another broker or name server.
    #[error("connect to {addr} failed: {reason}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What went wrong (refused, unreachable, timed out).
        reason: String,
    },
    /// The request could not be written, or the connection closed before the response
    /// arrived. The request may or may not have been processed.
    #[error("send request to {addr} failed: {reason}")]
    SendRequest {
        /// The peer.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// No response within the timeout. The request may still be processed.
    #[error("wait response on the channel <{addr}> timeout, {timeout_ms}(ms)")]
    Timeout {
        /// The peer.
        addr: String,
        /// The timeout that elapsed.
        timeout_ms: u64,
    },
    /// Too many async or oneway requests in flight and no permit freed up in time.
    #[error("too many requests in flight: {0}")]
    TooManyRequests(String),
    /// No name-server address is configured, or none could be reached.
    #[error("no name server is reachable (addresses: {0:?})")]
    NoNameServer(Vec<String>),
    /// The request could not be encoded (too large).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl RemotingError {
    /// Whether the request certainly never reached the peer, so a retry cannot duplicate it.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::NoNameServer(_))
    }

    /// Whether the error was a timeout waiting for the response.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}
