//! Link-time layout of the shipped agent. When `COCOON_AGENT_SYMBOL_ORDER` names a file
//! (scripts/build-guest.sh sets it to agent/agent/symbol-order.txt), lld places the
//! functions listed there first and in that order: the ones the agent runs from start-up to
//! idle, found by scripts/agent-symbol-order.sh. They then share a few pages instead of
//! being scattered over the whole text, so the idle agent maps fewer pages (the kernel maps
//! 64 KiB around every page fault of a file mapping).

fn main() {
    println!("cargo:rerun-if-env-changed=COCOON_AGENT_SYMBOL_ORDER");
    if let Some(path) = std::env::var_os("COCOON_AGENT_SYMBOL_ORDER") {
        let path = std::path::PathBuf::from(path);
        println!("cargo:rerun-if-changed={}", path.display());
        // Names the file no longer matches (after code changes) are skipped silently.
        println!(
            "cargo:rustc-link-arg-bin=cocoon-agent=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            path.display()
        );
    }
}
