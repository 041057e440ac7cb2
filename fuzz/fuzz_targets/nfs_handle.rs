//! NFS file handles come from clients: any bytes either are refused or
//! decode to a handle that encodes back to the same bytes.
#![no_main]
use cairn_nfs::handle::FileHandle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = FileHandle::decode(data) {
        assert_eq!(&h.encode()[..], data, "handle {h:?} does not round-trip");
        let _ = h.fileid();
    }
});
