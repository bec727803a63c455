//! Compiles every `.proto` under `proto/esim` with protox (pure Rust, no system `protoc`),
//! generates prost + tonic code, and writes the encoded descriptor set for server reflection.

use std::{
    env,
    error::Error,
    fs,
    path::{Path, PathBuf},
};

use prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    // Read when run, not baked in when compiled: a build script reused from another checkout
    // of the workspace would otherwise read that checkout's protos.
    let proto_root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let third_party = proto_root.join("third_party");

    let mut files = Vec::new();
    collect_protos(&proto_root.join("esim"), &mut files)?;
    files.sort();

    let fds = protox::compile(&files, [&proto_root, &third_party])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out_dir.join("esim_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
