//! A load generator's gRPC call that sends a request encoded once and keeps the answer as
//! bytes, as `h2load` does. A decoding client spends its share of the benchmark machine's cores
//! turning every answer into messages (a catalog page: an allocation per string and message),
//! which a reseller's shop pays on its own machine, not on the suite's; an opaque client leaves
//! the cores to the servers under test. The call still fails on any gRPC status but OK.

use http::uri::PathAndQuery;
use prost::Message;
use prost::bytes::Bytes;
use tonic::{
    Status,
    client::{Grpc, GrpcService},
};

use crate::fuzz::RawCodec;

/// One unary method with one request, encoded once, to call again and again.
#[derive(Debug, Clone)]
pub struct OpaqueCall<T> {
    grpc: Grpc<T>,
    path: PathAndQuery,
    request: Bytes,
}

impl<T> OpaqueCall<T>
where
    T: GrpcService<tonic::body::Body> + Clone,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<tonic::codegen::StdError>,
    T::Error: Into<tonic::codegen::StdError>,
{
    /// Calls `path` (`/package.Service/Method`) over `service` with `request`.
    pub fn new(service: T, path: &'static str, request: &impl Message) -> Self {
        Self {
            grpc: Grpc::new(service),
            path: PathAndQuery::from_static(path),
            request: request.encode_to_vec().into(),
        }
    }

    /// One call; the answer's message, undecoded.
    pub async fn call(&self) -> Result<Bytes, Status> {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|err| Status::unavailable(err.into().to_string()))?;
        let answer = grpc
            .unary(
                tonic::Request::new(self.request.clone()),
                self.path.clone(),
                RawCodec,
            )
            .await?
            .into_inner();
        Ok(answer)
    }
}
