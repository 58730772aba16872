//! Generates the protobuf messages and the async ttrpc client/server of `protos/agent.proto`.

fn main() {
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=protos/agent.proto");
    ttrpc_codegen::Codegen::new()
        .out_dir(&out)
        .inputs(["protos/agent.proto"])
        .include("protos")
        .rust_protobuf()
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ttrpc_codegen::ProtobufCustomize::default().gen_mod_rs(false))
        .run()
        .expect("cannot generate the agent API from protos/agent.proto");
    // The generated files open with inner attributes and docs, which `include!` cannot take.
    for name in ["agent.rs", "agent_ttrpc.rs"] {
        let path = out.join(name);
        let text = std::fs::read_to_string(&path).expect("generated file");
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
            .collect();
        std::fs::write(&path, kept.join("\n")).expect("rewrite generated file");
    }
}
