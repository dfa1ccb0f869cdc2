//! Fuzz target bodies, shared by the libFuzzer binaries (`fuzz_targets/`) and the replay
//! test (`tests/replay.rs`) that runs every saved input as an ordinary test.
//!
//! Each target states what must hold for *any* input: no panic, and the properties written
//! in its body (round trips, bounds). Saved inputs live in `corpus/<target>/` (coverage
//! found by fuzzing) and `regressions/<target>/` (inputs that once failed).

use bytes::BytesMut;
use ferrocket_engine::remoting::codec::{self, EncodeError};
use ferrocket_engine::remoting::headers::{
    PullMessageRequestHeader, RegisterBrokerRequestHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2,
};
use ferrocket_engine::remoting::{CommandHeader, RemotingCommand};

/// The names of the targets, as directories under `corpus/` and `regressions/`.
pub const TARGETS: &[&str] = &["remoting_frame"];

/// Runs target `name` on `data`. Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "remoting_frame" => remoting_frame(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Frames and headers from a peer: decoding arbitrary bytes never panics, and whatever
/// decodes re-encodes to bytes that decode to the same command; the typed headers a broker
/// reads first never panic either.
pub fn remoting_frame(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(command)) = codec::decode(&mut buf) {
        check_round_trip(&command);
        decode_headers(&command);
    }
}

fn check_round_trip(command: &RemotingCommand) {
    let mut encoded = BytesMut::new();
    match codec::encode(command, &mut encoded) {
        Ok(()) => {
            let again = codec::decode(&mut encoded)
                .expect("our own encoding decodes")
                .expect("our own encoding is a whole frame");
            assert_eq!(&again, command, "decode ∘ encode ∘ decode is decode");
            assert!(encoded.is_empty(), "exactly one frame was encoded");
        }
        // A decoded JSON header can hold values the binary form cannot (and vice versa only
        // through limits); refusing to encode them is correct, panicking is not.
        Err(EncodeError::NotRepresentable(_) | EncodeError::FrameTooLarge { .. }) => {}
        Err(EncodeError::Io(error)) => panic!("encoding into memory failed: {error}"),
    }
}

fn decode_headers(command: &RemotingCommand) {
    let _ = command.decode_header::<SendMessageRequestHeader>();
    let _ = command.decode_header::<PullMessageRequestHeader>();
    let _ = command.decode_header::<RegisterBrokerRequestHeader>();
    if let Ok(v2) = SendMessageRequestHeaderV2::decode(&command.ext_fields) {
        let _ = SendMessageRequestHeader::from(v2);
    }
}
