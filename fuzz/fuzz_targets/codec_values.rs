//! Values read back from storage: inode, directory-entry and extent records
//! (with their birth/whiteout header) and extent maps never panic on any
//! bytes, and what decodes re-encodes to something that decodes the same
//! (for maps: to the same bytes, since a map's hash is its address).
#![no_main]
use cairn_codec::{DirentRecord, ExtentMap, ExtentRecord, InodeRecord, Versioned};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn_codec::birth_of(data);
    let _ = cairn_codec::is_whiteout(data);
    let _ = cairn_codec::decode_u64(data);
    if let Ok(v) = Versioned::<InodeRecord>::decode(data) {
        assert_eq!(Versioned::<InodeRecord>::decode(&v.encode()).ok(), Some(v));
    }
    if let Ok(v) = Versioned::<DirentRecord>::decode(data) {
        assert_eq!(Versioned::<DirentRecord>::decode(&v.encode()).ok(), Some(v));
    }
    if let Ok(v) = Versioned::<ExtentRecord>::decode(data) {
        assert_eq!(Versioned::<ExtentRecord>::decode(&v.encode()).ok(), Some(v));
    }
    if let Ok(m) = ExtentMap::decode(data) {
        assert_eq!(m.encode(), data, "a map has one encoding");
    }
});
