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
use ferrocket_engine::store::message::{self as record, RecordCheck, RecordError};

/// The names of the targets, as directories under `corpus/` and `regressions/`. Store
/// recovery runs the store on the production clock, which needs the real runtime's time, so
/// it is replayed in the normal build only.
#[cfg(not(madsim))]
pub const TARGETS: &[&str] = &["remoting_frame", "record_decode", "store_recovery"];
/// The names of the targets replayed in the simulated build.
#[cfg(madsim)]
pub const TARGETS: &[&str] = &["remoting_frame", "record_decode"];

/// Runs target `name` on `data`. Panics on an unknown name.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "remoting_frame" => remoting_frame(data),
        "record_decode" => record_decode(data),
        #[cfg(not(madsim))]
        "store_recovery" => store_recovery::run(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

#[cfg(not(madsim))]
pub mod store_recovery;

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

/// Commit-log records from disk, HA or a pull body, and SEND_BATCH_MESSAGE bodies from a
/// peer: no decoder panics or reports a record past the end of its buffer; whatever
/// `decode_record` reads, `check_record` accepts with the same size; a decoded record
/// re-encodes, and that encoding is a fixed point (decode ∘ encode changes nothing more);
/// batch bodies and message ids round trip.
pub fn record_decode(data: &[u8]) {
    for check_crc in [false, true] {
        let check = record::check_record(data, check_crc);
        match &check {
            RecordCheck::Message(request) => assert!(request.msg_size <= data.len()),
            RecordCheck::Blank { size } => assert!(*size <= data.len()),
            RecordCheck::Invalid(_) => {}
        }
        if let Ok(message) = record::decode_record(data, check_crc, true) {
            let RecordCheck::Message(request) = &check else {
                panic!("decode_record read a record check_record refused: {check:?}");
            };
            assert_eq!(request.msg_size, message.store_size);
            check_record_round_trip(message);
        }
    }
    let decoded: usize = record::decode_records(data)
        .iter()
        .map(|message| message.store_size)
        .sum();
    assert!(decoded <= data.len(), "decode_records stays in its buffer");
    if let Ok(items) = record::decode_batch(data) {
        let encoded = record::encode_batch(&items).expect("decoded batch items re-encode");
        assert_eq!(
            record::decode_batch(&encoded),
            Ok(items),
            "batch round trip"
        );
    }
    if let Ok(id) = std::str::from_utf8(data)
        && let Ok((host, offset)) = record::decode_message_id(id)
    {
        let again = record::create_message_id(host, offset);
        assert_eq!(record::decode_message_id(&again), Ok((host, offset)));
    }
}

fn check_record_round_trip(message: record::StoredMessage) {
    let (queue_offset, offset) = (message.queue_offset, message.commit_log_offset);
    let encode = |message: record::StoredMessage| {
        let mut out = Vec::new();
        record::encode_record_limited(
            &message.into_inner(),
            queue_offset,
            offset,
            usize::MAX,
            &mut out,
        )
        .map(|_| out)
    };
    let first = match encode(message) {
        Ok(first) => first,
        // Invalid UTF-8 in stored properties is read as U+FFFD (as Java does), which can
        // grow them past the limit; refusing to write that back is correct.
        Err(RecordError::PropertiesSizeExceeded { .. }) => return,
        Err(error) => panic!("a decoded record does not re-encode: {error}"),
    };
    let again = record::decode_record(&first, true, true).expect("our own encoding decodes");
    let second = encode(again).expect("our own encoding re-encodes");
    assert_eq!(
        first, second,
        "encode ∘ decode is a fixed point after one round"
    );
}
