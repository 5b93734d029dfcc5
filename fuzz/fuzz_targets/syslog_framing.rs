//! Fuzzes the `syslog` receiver's TCP framing (octet counting and trailers) as a connection reads a
//! stream in chunks: `vigil_receivers::syslog::parse::fuzz_framing` checks that no frame passes
//! `max_octets` and that a connection never holds more than one frame's worth of bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_receivers::syslog::parse::fuzz_framing(data));
