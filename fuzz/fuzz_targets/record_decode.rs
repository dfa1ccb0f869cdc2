//! libFuzzer entry point for [`ferrocket_fuzz::record_decode`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocket_fuzz::record_decode(data));
