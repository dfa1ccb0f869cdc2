//! libFuzzer entry point for [`ferrocket_fuzz::store_recovery::run`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocket_fuzz::store_recovery::run(data));
