//! Fuzz target: `Message::parse` on arbitrary bytes must return a message or a reasoned error,
//! and an accepted message must serialise and parse back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_protocol::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let bytes = serde_json::to_vec(&m.to_value()).expect("a message serialises");
        let again = Message::parse(&bytes).expect("an accepted message re-parses");
        assert_eq!(again, m);
    }
});
