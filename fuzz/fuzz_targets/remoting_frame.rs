//! libFuzzer entry point for [`ferrocket_fuzz::remoting_frame`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocket_fuzz::remoting_frame(data));
