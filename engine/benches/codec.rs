//! Micro-benchmarks of the codecs on the broker's send path: a SEND_MESSAGE_V2 request frame
//! encoded and decoded (header included) in both header encodings, and a commit-log record
//! encoded, checked (the dispatch path) and decoded (the pull path), for 128-byte and 1-KiB
//! bodies. Figures are machine-dependent: compare runs on one machine, not across machines.
//!
//! `cargo bench -p ferrocket-engine --bench codec`

#[cfg(not(madsim))]
mod benches {
    use std::collections::BTreeMap;
    use std::hint::black_box;

    use bytes::{Bytes, BytesMut};
    use criterion::{Criterion, Throughput};
    use ferrocket_engine::remoting::codec::{decode, encode};
    use ferrocket_engine::remoting::headers::SendMessageRequestHeaderV2;
    use ferrocket_engine::remoting::{RemotingCommand, SerializeType, request_code};
    use ferrocket_engine::store::message::{
        MessageInner, RecordCheck, check_record, decode_record, encode_properties, encode_record,
        property_key,
    };

    /// Body sizes measured.
    const SIZES: [usize; 2] = [128, 1024];

    /// The properties a producer sends: a unique key and WAIT.
    fn properties() -> String {
        let properties: BTreeMap<String, String> = [
            (
                property_key::UNIQ_KEY.to_owned(),
                "7F0000010B3A18B4AAC27A8C2A5D0000".to_owned(),
            ),
            (property_key::WAIT.to_owned(), "true".to_owned()),
        ]
        .into_iter()
        .collect();
        encode_properties(&properties)
    }

    fn send_request(size: usize, serialize_type: SerializeType) -> RemotingCommand {
        let header = SendMessageRequestHeaderV2 {
            producer_group: "mqbench_pg".into(),
            topic: "BenchmarkTopic".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: 3,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            flag: 0,
            properties: Some(properties()),
            reconsume_times: Some(0),
            unit_mode: Some(false),
            max_reconsume_times: None,
            batch: Some(false),
            broker_name: None,
        };
        let mut request =
            RemotingCommand::request_with_header(request_code::SEND_MESSAGE_V2, &header)
                .with_body(Bytes::from(vec![b'x'; size]));
        request.serialize_type = serialize_type;
        request
    }

    fn frames(c: &mut Criterion) {
        let mut group = c.benchmark_group("frame");
        group.throughput(Throughput::Elements(1));
        for size in SIZES {
            for (name, serialize_type) in [
                ("json", SerializeType::Json),
                ("rocketmq", SerializeType::RocketMq),
            ] {
                let request = send_request(size, serialize_type);
                let mut out = BytesMut::with_capacity(4096);
                group.bench_function(format!("encode_send_{name}_{size}B"), |b| {
                    b.iter(|| {
                        out.clear();
                        encode(black_box(&request), &mut out).expect("the request encodes");
                        out.len()
                    });
                });
                let mut frame = BytesMut::new();
                encode(&request, &mut frame).expect("the request encodes");
                let frame = frame.freeze();
                group.bench_function(format!("decode_send_{name}_{size}B"), |b| {
                    b.iter(|| {
                        let mut buf = BytesMut::from(&frame[..]);
                        let command = decode(black_box(&mut buf))
                            .expect("the frame decodes")
                            .expect("the frame is whole");
                        let header: SendMessageRequestHeaderV2 =
                            command.decode_header().expect("the header decodes");
                        (command.body.len(), header.queue_id)
                    });
                });
            }
        }
        group.finish();
    }

    fn message(size: usize) -> MessageInner {
        MessageInner {
            topic: "BenchmarkTopic".into(),
            queue_id: 3,
            flag: 0,
            body: Bytes::from(vec![b'y'; size]),
            properties: properties(),
            tags_code: 0,
            sys_flag: 0,
            born_timestamp: 1_700_000_000_000,
            born_host: "127.0.0.2:5555".parse().expect("literal address"),
            store_host: "127.0.0.1:10911".parse().expect("literal address"),
            store_timestamp: 1_700_000_000_001,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    fn records(c: &mut Criterion) {
        let mut group = c.benchmark_group("record");
        group.throughput(Throughput::Elements(1));
        for size in SIZES {
            let message = message(size);
            let mut out = Vec::with_capacity(4096);
            group.bench_function(format!("encode_{size}B"), |b| {
                b.iter(|| {
                    out.clear();
                    encode_record(black_box(&message), 42, 1 << 30, &mut out)
                        .expect("the record encodes")
                });
            });
            let mut record = Vec::new();
            encode_record(&message, 42, 1 << 30, &mut record).expect("the record encodes");
            group.bench_function(format!("check_crc_{size}B"), |b| {
                b.iter(|| match check_record(black_box(&record), true) {
                    RecordCheck::Message(request) => request.msg_size,
                    other => panic!("the record checks back: {other:?}"),
                });
            });
            group.bench_function(format!("decode_{size}B"), |b| {
                b.iter(|| {
                    decode_record(black_box(&record), false, true)
                        .expect("the record decodes")
                        .queue_offset
                });
            });
        }
        group.finish();
    }

    /// Runs every benchmark.
    pub fn all() {
        let mut criterion = Criterion::default().configure_from_args();
        frames(&mut criterion);
        records(&mut criterion);
        criterion.final_summary();
    }
}

fn main() {
    #[cfg(not(madsim))]
    benches::all();
}
