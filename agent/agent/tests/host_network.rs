//! Host integration test (root, no VM) of the netlink RPCs: the built `cocoon-agent` runs in
//! a network namespace of its own holding a veth pair, and iproute2 (`ip -j` through
//! `nsenter`) is the oracle for what ListInterfaces / UpdateInterface / UpdateRoutes /
//! ListRoutes / AddARPNeighbors did to the kernel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_protocol::types::*;
use agent_protocol::{AgentClient, Code};
use serde_json::Value;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

struct Agent {
    child: Child,
    sock: PathBuf,
    cgroup: PathBuf,
}

impl Agent {
    /// The agent in new net, mount and pid namespaces, after `ip` created `veth0`/`veth1`
    /// there (`veth1` up, so `veth0` gets a carrier once it is up).
    fn start(dir: &Path) -> Agent {
        let sock = dir.join("agent.sock");
        let base = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            PathBuf::from("/sys/fs/cgroup")
        } else {
            PathBuf::from("/sys/fs/cgroup/unified")
        };
        let cgroup = base.join(format!("cocoon-test-net-{}", std::process::id()));
        let script = "ip link add veth0 type veth peer name veth1 && ip link set veth1 up \
                      && exec env COCOON_AGENT_SANDBOXED=1 \"$@\"";
        let child = Command::new("unshare")
            .args(["-n", "-m", "-p", "-f", "--kill-child", "--mount-proc"])
            .args(["sh", "-c", script, "sh"])
            .arg(env!("CARGO_BIN_EXE_cocoon-agent"))
            .arg(format!("agent.server_addr=unix://{}", sock.display()))
            .arg(format!("agent.cgroup_root={}", cgroup.display()))
            .arg(format!("agent.baked_rootfs={}", dir.display()))
            .arg("agent.log=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child,
            sock,
            cgroup,
        }
    }

    async fn client(&mut self) -> AgentClient {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(c) = AgentClient::connect(&format!("unix://{}", self.sock.display())).await
                && c.check(CheckRequest::default()).await.is_ok()
            {
                return c.with_timeout(Some(Duration::from_secs(30)));
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "agent exited early"
            );
            assert!(Instant::now() < deadline, "agent did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Host pid of the agent (`unshare`'s child, which exec'd the agent).
    fn pid(&self) -> u32 {
        let p = format!("/proc/{0}/task/{0}/children", self.child.id());
        std::fs::read_to_string(p)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// `ip -j <args>` in the agent's network namespace.
    fn ip(&self, args: &[&str]) -> Value {
        let out = Command::new("nsenter")
            .args(["-t", &self.pid().to_string(), "-n", "ip", "-j"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

fn v4(address: &str, mask: &str) -> IPAddress {
    IPAddress {
        family: IPFamily::V4,
        address: address.into(),
        mask: mask.into(),
    }
}

/// `(local, prefixlen)` of every IPv4 address of `dev` as iproute2 sees it.
fn oracle_v4(agent: &Agent, dev: &str) -> Vec<(String, u64)> {
    let j = agent.ip(&["-4", "addr", "show", "dev", dev]);
    j[0]["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["local"].as_str().unwrap().to_string(),
                a["prefixlen"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `(dst, gateway, dev, protocol)` of the IPv4 main table as iproute2 sees it.
#[allow(clippy::type_complexity)]
fn oracle_routes(agent: &Agent) -> Vec<(String, String, String, String)> {
    let j = agent.ip(&["-4", "route", "show", "table", "main"]);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut r: Vec<_> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            // iproute2 leaves out the protocol when it is `boot`, its default.
            let proto = r["protocol"].as_str().unwrap_or("boot").to_string();
            (s(&r["dst"]), s(&r["gateway"]), s(&r["dev"]), proto)
        })
        .collect();
    r.sort();
    r
}

fn route(dest: &str, gateway: &str, device: &str, scope: u32) -> Route {
    Route {
        dest: dest.into(),
        gateway: gateway.into(),
        device: device.into(),
        scope,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netlink_rpcs_in_a_network_namespace() {
    if !is_root() {
        eprintln!("SKIPPED: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path());
    let c = agent.client().await;

    // ListInterfaces sees the namespace's links with the kernel's hardware addresses.
    let list = c
        .list_interfaces(ListInterfacesRequest::default())
        .await
        .unwrap()
        .interfaces;
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert!(names.contains(&"lo") && names.contains(&"veth0") && names.contains(&"veth1"));
    let veth0 = list.iter().find(|i| i.name == "veth0").unwrap();
    let mac0 = agent.ip(&["link", "show", "veth0"])[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(veth0.hw_addr, mac0);
    assert_eq!(veth0.kind, "veth");
    assert_eq!(veth0.mtu, 1500);

    // UpdateInterface by hardware address: rename to eth0, MTU, address, up.
    let want = Interface {
        hw_addr: mac0.clone(),
        name: "eth0".into(),
        mtu: 1400,
        ip_addresses: vec![v4("10.0.2.15", "24")],
        ..Default::default()
    };
    let got = c
        .update_interface(UpdateInterfaceRequest {
            interface: Some(want.clone()),
        })
        .await
        .unwrap();
    assert_eq!((got.name.as_str(), got.mtu), ("eth0", 1400));
    assert!(got.ip_addresses.contains(&v4("10.0.2.15", "24")));
    let link = &agent.ip(&["link", "show", "eth0"])[0];
    assert_eq!(link["address"].as_str().unwrap(), mac0);
    assert_eq!(link["mtu"].as_u64().unwrap(), 1400);
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(flags.contains(&"UP"), "{flags:?}");
    assert_eq!(oracle_v4(&agent, "eth0"), vec![("10.0.2.15".into(), 24)]);

    // The address set is replaced, not extended (dotted masks are accepted too).
    let again = Interface {
        ip_addresses: vec![v4("10.0.2.16", "255.255.255.0")],
        ..want.clone()
    };
    c.update_interface(UpdateInterfaceRequest {
        interface: Some(again),
    })
    .await
    .unwrap();
    assert_eq!(oracle_v4(&agent, "eth0"), vec![("10.0.2.16".into(), 24)]);
    c.update_interface(UpdateInterfaceRequest {
        interface: Some(want.clone()),
    })
    .await
    .unwrap();
    assert_eq!(oracle_v4(&agent, "eth0"), vec![("10.0.2.15".into(), 24)]);

    // Asking for a name another link holds swaps the two names.
    let mac1 = agent.ip(&["link", "show", "veth1"])[0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    c.update_interface(UpdateInterfaceRequest {
        interface: Some(Interface {
            hw_addr: mac1.clone(),
            name: "eth0".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    assert_eq!(
        agent.ip(&["link", "show", "eth0"])[0]["address"],
        mac1.as_str()
    );
    assert_eq!(
        agent.ip(&["link", "show", "veth1"])[0]["address"],
        mac0.as_str()
    );
    c.update_interface(UpdateInterfaceRequest {
        interface: Some(want.clone()),
    })
    .await
    .unwrap();
    assert_eq!(
        agent.ip(&["link", "show", "eth0"])[0]["address"],
        mac0.as_str()
    );
    assert_eq!(
        agent.ip(&["link", "show", "veth1"])[0]["address"],
        mac1.as_str()
    );

    // Unknown hardware address: NOT_FOUND. Bad address: INVALID_ARGUMENT, nothing changed.
    let e = c
        .update_interface(UpdateInterfaceRequest {
            interface: Some(Interface {
                hw_addr: "02:00:00:00:00:99".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");
    let e = c
        .update_interface(UpdateInterfaceRequest {
            interface: Some(Interface {
                ip_addresses: vec![v4("10.0.2.300", "24")],
                ..want.clone()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("10.0.2.300"), "{e}");
    assert_eq!(oracle_v4(&agent, "eth0"), vec![("10.0.2.15".into(), 24)]);

    // UpdateRoutes: the QEMU user-network table (default via 10.0.2.2) plus a link route.
    let routes = vec![
        route("", "10.0.2.2", "eth0", 0),
        route("192.168.7.0/24", "", "eth0", 253),
    ];
    let table = c
        .update_routes(UpdateRoutesRequest {
            routes: Some(Routes { routes }),
        })
        .await
        .unwrap()
        .routes;
    let kernel = (
        "10.0.2.0/24".into(),
        String::new(),
        "eth0".into(),
        "kernel".into(),
    );
    assert_eq!(
        oracle_routes(&agent),
        vec![
            kernel.clone(),
            (
                "192.168.7.0/24".into(),
                String::new(),
                "eth0".into(),
                "boot".into()
            ),
            (
                "default".into(),
                "10.0.2.2".into(),
                "eth0".into(),
                "boot".into()
            ),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    let default = table
        .iter()
        .find(|r| r.gateway == "10.0.2.2")
        .expect("default route in the reply");
    assert_eq!(
        (default.dest.as_str(), default.device.as_str()),
        ("", "eth0")
    );
    let link_route = table.iter().find(|r| r.dest == "192.168.7.0/24").unwrap();
    assert_eq!(link_route.scope, 253);
    let listed = c
        .list_routes(ListRoutesRequest::default())
        .await
        .unwrap()
        .routes;
    assert_eq!(listed, table);

    // A second UpdateRoutes replaces the table (the kernel's own route stays); a bad device
    // is refused before anything is removed.
    let e = c
        .update_routes(UpdateRoutesRequest {
            routes: Some(Routes {
                routes: vec![route("10.9.0.0/16", "10.0.2.3", "nope0", 0)],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert_eq!(oracle_routes(&agent).len(), 3);
    c.update_routes(UpdateRoutesRequest {
        routes: Some(Routes {
            routes: vec![route("10.9.0.0/16", "10.0.2.3", "eth0", 0)],
        }),
    })
    .await
    .unwrap();
    assert_eq!(
        oracle_routes(&agent),
        vec![
            kernel,
            (
                "10.9.0.0/16".into(),
                "10.0.2.3".into(),
                "eth0".into(),
                "boot".into()
            ),
        ]
    );

    // AddARPNeighbors: a permanent entry for the gateway.
    c.add_arp_neighbors(AddARPNeighborsRequest {
        neighbors: Some(ARPNeighbors {
            neighbors: vec![ARPNeighbor {
                to_ip_address: Some(v4("10.0.2.2", "")),
                device: "eth0".into(),
                lladdr: "02:00:0a:00:02:02".into(),
                state: 0x80,
                flags: 0,
            }],
        }),
    })
    .await
    .unwrap();
    let neigh = agent.ip(&["neigh", "show", "dev", "eth0"]);
    let entry = neigh
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["dst"] == "10.0.2.2")
        .expect("neighbour entry");
    assert_eq!(entry["lladdr"], "02:00:0a:00:02:02");
    assert_eq!(entry["state"][0], "PERMANENT");

    // The agent still serves.
    c.check(CheckRequest::default()).await.unwrap();
    c.destroy_sandbox(DestroySandboxRequest::default())
        .await
        .ok();
}
