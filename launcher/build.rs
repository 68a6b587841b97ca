//! Builds the eBPF probes (`ebpf-probes/`) for the BPF target with aya-build and leaves the object
//! in OUT_DIR for `include_bytes_aligned!`. Needs the `rust-src` component and `bpf-linker`
//! (`cargo xtask setup` installs both); `AYA_BUILD_SKIP=1` skips it for tooling that does not
//! run the probes.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    // The probes need `-Z build-std=core` on the stable toolchain. Cargo accepts `-Z` only with
    // RUSTC_BOOTSTRAP=1; setting it here reaches the nested `cargo build` of the probe crate alone
    // (aya-build spawns it from this process), not the rest of the workspace.
    // SAFETY: a build script is single-threaded until aya-build spawns its reader threads below.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    // aya-build watches the probe crate; the types it shares with us live next door.
    println!("cargo:rerun-if-changed=../ebpf-common");
    let probes = aya_build::Package { name: "mcp-warden-ebpf", root_dir: "../ebpf-probes", ..Default::default() };
    aya_build::build_ebpf([probes], aya_build::Toolchain::Custom("stable"))
        .context("failed to build the eBPF probes (run `cargo xtask setup` for rust-src and bpf-linker)")
}
