//! cairn's admin API: the only crate that knows protobuf.
//!
//! Owns: the generated gRPC types and client for
//! `proto/cairn/admin/v1/admin.proto` (compiled by protox at build time, no
//! system `protoc`), a client constructor that carries the bearer token, and
//! (feature `server`, on by default) the service over the engine: status
//! codes by error kind, token checks, streaming copy-out and diff.
//!
//! Must never know: NFS types, or how the engine stores anything.

/// The generated protobuf types, client and (with `server`) service stubs.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("cairn.admin.v1");
}

#[cfg(feature = "server")]
mod service;
#[cfg(feature = "server")]
pub use service::{RpcServer, ThreadServeError, status_of};

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The metadata key that carries `Bearer <token>`.
pub const AUTH_HEADER: &str = "authorization";

/// Adds the bearer token to every call.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(AUTH_HEADER, v.clone());
        }
        Ok(req)
    }
}

/// An admin client.
pub type Client = pb::admin_client::AdminClient<InterceptedService<Channel, BearerToken>>;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The endpoint is not a URL.
    #[error("endpoint {0:?} is not a valid URL (use e.g. http://127.0.0.1:7049)")]
    BadEndpoint(String),
    /// The token has characters a header cannot carry.
    #[error("the admin token contains characters that cannot be sent")]
    BadToken,
    /// Nothing answered.
    #[error("no cairn server at {endpoint}: {source}")]
    Unreachable {
        /// Where we tried.
        endpoint: String,
        /// What the transport said.
        source: tonic::transport::Error,
    },
}

/// Connect to `endpoint` (`http://host:port`), sending `token` on every call.
pub async fn connect(endpoint: &str, token: Option<&str>) -> Result<Client, ConnectError> {
    let header = match token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| ConnectError::BadToken)?,
        ),
        None => None,
    };
    let ep = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|_| ConnectError::BadEndpoint(endpoint.to_string()))?
        .connect_timeout(std::time::Duration::from_secs(5));
    let channel = ep
        .connect()
        .await
        .map_err(|source| ConnectError::Unreachable {
            endpoint: endpoint.to_string(),
            source,
        })?;
    Ok(
        pb::admin_client::AdminClient::with_interceptor(channel, BearerToken(header))
            .max_decoding_message_size(16 << 20),
    )
}
