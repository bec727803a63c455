//! Generated prost messages and tonic clients/servers for the five public APIs of the eSIM
//! suite, plus the encoded file descriptor set that servers hand to gRPC reflection.

/// Encoded `FileDescriptorSet` of every `esim.*.v1` package (and what they import), for
/// `tonic-reflection`, so grpcurl works without local proto files.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/esim_descriptor.bin"));

// prost refers to other packages by relative paths that mirror the package hierarchy (from
// `esim.catalog.v1`, `google.type.Money` is `super::super::super::google::r#type::Money`), so
// the modules must nest exactly like the packages: `esim::catalog::v1`, `google::r#type`.
// The re-exports below keep the short paths (`esim_proto::catalog::v1`) working.

/// The suite's own packages, `esim.*.v1`.
pub mod esim {
    pub mod catalog {
        pub mod v1 {
            tonic::include_proto!("esim.catalog.v1");
        }
    }
    pub mod ordering {
        pub mod v1 {
            tonic::include_proto!("esim.ordering.v1");
        }
    }
    pub mod provisioning {
        pub mod v1 {
            tonic::include_proto!("esim.provisioning.v1");
        }
    }
    pub mod usage {
        pub mod v1 {
            tonic::include_proto!("esim.usage.v1");
        }
    }
    pub mod gateway {
        pub mod v1 {
            tonic::include_proto!("esim.gateway.v1");
        }
    }
    /// Types shared by several services (`esim.type.v1`): the `Provider` enum and the
    /// upstream product references.
    pub mod r#type {
        pub mod v1 {
            // prost names the file after the escaped package: `esim.r#type.v1.rs`.
            tonic::include_proto!("esim.r#type.v1");
        }
    }
}

/// Google common types used by the APIs (`google.type.Money`, `google.type.Date`). Their doc
/// comments come from the vendored protos, whose Markdown lists clippy would flag.
#[allow(
    clippy::doc_overindented_list_items,
    clippy::doc_lazy_continuation,
    rustdoc::broken_intra_doc_links
)]
pub mod google {
    pub mod r#type {
        // prost names the file after the escaped package: `google.r#type.rs`.
        tonic::include_proto!("google.r#type");
    }
}

pub use esim::{catalog, gateway, ordering, provisioning, r#type, usage};
