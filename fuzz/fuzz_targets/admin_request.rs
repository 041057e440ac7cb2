//! Admin API requests as protobuf bytes off the wire: decoding any bytes as
//! any request message never panics, and what decodes re-encodes to bytes
//! that decode the same.
#![no_main]
use cairn_rpc::pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn check<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        let again = M::decode(m.encode_to_vec().as_slice()).expect("re-decode");
        assert_eq!(again, m);
    }
}

fuzz_target!(|data: &[u8]| {
    check::<pb::CreateDatasetRequest>(data);
    check::<pb::DeleteDatasetRequest>(data);
    check::<pb::CreateSnapshotRequest>(data);
    check::<pb::DeleteSnapshotRequest>(data);
    check::<pb::CloneRequest>(data);
    check::<pb::PromoteRequest>(data);
    check::<pb::RollbackRequest>(data);
    check::<pb::RestoreRequest>(data);
    check::<pb::ReadSnapshotFileRequest>(data);
    check::<pb::DiffRequest>(data);
    check::<pb::SnapshotInfoRequest>(data);
    check::<pb::ListSnapshotsRequest>(data);
});
