//! Tests of the cluster gRPC surface generated from `cluster.proto`.

mod descriptor;
mod roundtrip;
mod services;
mod tls;
