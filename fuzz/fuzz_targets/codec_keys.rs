//! Keys read back from storage: any bytes either fail to decode or decode
//! to a key that encodes back to the same bytes.
#![no_main]
use cairn_codec::{HeadKey, Key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = Key::decode(data) {
        assert_eq!(k.encode(), data, "key {k:?} does not round-trip");
    }
    if let Ok(k) = HeadKey::decode(data) {
        let again = HeadKey::decode(&k.encode()).expect("re-decode");
        assert_eq!(again, k);
    }
});
