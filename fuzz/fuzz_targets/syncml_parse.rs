//! Fuzz target: the SyncML parser never panics on any input, and whatever it accepts survives
//! write -> parse unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = syncml::parse(data) {
        let written = syncml::write(&msg);
        match syncml::parse(written.as_bytes()) {
            Ok(again) => assert_eq!(again, msg, "write+parse changed the message:\n{written}"),
            Err(e) => panic!("our own output does not parse: {e}\n{written}"),
        }
    }
});
