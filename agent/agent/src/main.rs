//! `cocoon-agent`: PID 1 of the guest (or a plain process for host tests).

use cocoon_agent::{config, init};

fn main() {
    if std::env::args().nth(1).as_deref() == Some(cocoon_agent::runtime::spawn::HELPER_ARG) {
        cocoon_agent::runtime::helper::main();
    }
    // PID 1 of a VM, unless a host test runs us as PID 1 of a private pid namespace.
    let pid1 = std::process::id() == 1 && std::env::var_os(cocoon_agent::SANDBOXED_ENV).is_none();
    if pid1 && cocoon_agent::switch_root::on_initramfs() {
        // Does not return on success: the agent starts again from the tmpfs root.
        let e = cocoon_agent::switch_root::switch_root_and_reexec();
        init::attach_console();
        fatal(pid1, &e.to_string());
    }
    if pid1 {
        if let Err(e) = init::mount_pseudo_filesystems() {
            fatal(pid1, &format!("{e}"));
        }
        init::attach_console();
    }
    let words: Vec<String> = if pid1 {
        config::split_cmdline(&std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    } else {
        let mut w: Vec<String> = std::env::args().skip(1).collect();
        if let Ok(addr) = std::env::var("COCOON_AGENT_SERVER_ADDR") {
            w.insert(0, format!("agent.server_addr={addr}"));
        }
        w
    };
    let mut cfg = match config::parse_words(&words) {
        Ok(c) => c,
        Err(e) => fatal(pid1, &e.to_string()),
    };
    cfg.init_duties = pid1;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cfg.log_level))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if pid1 {
        match init::load_modules(std::path::Path::new("/lib/modules")) {
            Ok(m) => tracing::debug!(modules = m.len(), "kernel modules loaded"),
            Err(e) => fatal(pid1, &e.to_string()),
        }
    }
    println!(
        "cocoon-agent: started uptime_ms={} pid={}",
        init::uptime_ms(),
        std::process::id()
    );
    let result = cocoon_agent::run(cfg);
    match result {
        Ok(()) if pid1 => init::power_off(),
        Ok(()) => {}
        Err(e) => fatal(pid1, &format!("{e:#}")),
    }
}

fn fatal(pid1: bool, msg: &str) -> ! {
    eprintln!("cocoon-agent: fatal: {msg}");
    if pid1 {
        init::power_off();
    }
    std::process::exit(1)
}
