//! `containerd-shim-cocoon-v2`: the containerd shim v2 binary of Cocoon.

#[tokio::main]
async fn main() {
    let code = match runtime_shim::entry::main_entry().await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}: {e}", runtime_shim::shim::RUNTIME_ID);
            1
        }
    };
    // Nothing may outlive the server (blocking stdio opens included).
    std::process::exit(code);
}
