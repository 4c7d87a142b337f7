//! The shim's command line as containerd writes it: Go `flag` syntax (`-name value`,
//! `-name=value`, `--name`, boolean `-debug`), then the action (`start`, `delete`, or
//! nothing for the serving shim).

/// Errors of [`parse`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    /// A flag this shim does not know.
    #[error("unknown shim flag `-{0}`")]
    Unknown(String),
    /// A string flag at the end of the command line.
    #[error("shim flag `-{0}` needs a value")]
    MissingValue(String),
    /// A boolean flag with a value that is not a Go boolean.
    #[error("shim flag `-{name}` takes a boolean, not `{value}`")]
    NotBoolean {
        /// The flag.
        name: String,
        /// What was given.
        value: String,
    },
    /// An argument that is not valid UTF-8.
    #[error("shim argument is not UTF-8: {0:?}")]
    NotUtf8(std::ffi::OsString),
}

/// The flags containerd passes to a shim binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShimFlags {
    /// `-debug`: debug logging.
    pub debug: bool,
    /// `-namespace`: containerd namespace.
    pub namespace: String,
    /// `-id`: container (task) id.
    pub id: String,
    /// `-socket`: the ttRPC socket the serving shim listens on (`unix://` prefix optional).
    pub socket: String,
    /// `-bundle`: bundle directory (`delete` only; otherwise the working directory).
    pub bundle: String,
    /// `-address`: containerd's gRPC socket.
    pub address: String,
    /// `-publish-binary`: the containerd binary (unused: events go over ttRPC).
    pub publish_binary: String,
    /// `-v` / `-version`: print the version.
    pub version: bool,
    /// `-info`: print runtime info (containerd 2.x).
    pub info: bool,
    /// The action: `start`, `delete`, or empty (serve).
    pub action: String,
}

fn parse_bool(name: &str, value: &str) -> Result<bool, FlagError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(FlagError::NotBoolean {
            name: name.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Parses the arguments after the program name.
pub fn parse<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<ShimFlags, FlagError> {
    let mut flags = ShimFlags::default();
    let mut args = args.iter().map(|a| {
        a.as_ref()
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| FlagError::NotUtf8(a.as_ref().to_os_string()))
    });
    while let Some(arg) = args.next() {
        let arg = arg?;
        if arg == "--" {
            if let Some(action) = args.next() {
                flags.action = action?;
            }
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())
        else {
            flags.action = arg;
            break;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        let boolean = match name.as_str() {
            "debug" => Some(&mut flags.debug),
            "v" | "version" => Some(&mut flags.version),
            "info" => Some(&mut flags.info),
            _ => None,
        };
        if let Some(target) = boolean {
            *target = match inline {
                Some(v) => parse_bool(&name, &v)?,
                None => true,
            };
            continue;
        }
        let target = match name.as_str() {
            "namespace" => &mut flags.namespace,
            "id" => &mut flags.id,
            "socket" => &mut flags.socket,
            "bundle" => &mut flags.bundle,
            "address" => &mut flags.address,
            "publish-binary" => &mut flags.publish_binary,
            _ => return Err(FlagError::Unknown(name)),
        };
        *target = match inline {
            Some(v) => v,
            None => args
                .next()
                .ok_or_else(|| FlagError::MissingValue(name.clone()))??,
        };
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_start_command_line_is_parsed() {
        // What containerd 1.6 runs for `start`.
        let args = [
            "-namespace",
            "k8s.io",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "abc",
            "-debug",
            "start",
        ];
        let f = parse(&args).unwrap();
        assert_eq!(f.namespace, "k8s.io");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert_eq!(f.publish_binary, "/usr/bin/containerd");
        assert_eq!(f.id, "abc");
        assert!(f.debug);
        assert_eq!(f.action, "start");
    }

    #[test]
    fn equals_form_double_dash_and_serve_without_action() {
        let f = parse(&[
            "--id=x",
            "-socket=unix:///run/s",
            "-debug=false",
            "-bundle",
            "/b",
        ])
        .unwrap();
        assert_eq!(f.id, "x");
        assert_eq!(f.socket, "unix:///run/s");
        assert!(!f.debug);
        assert_eq!(f.bundle, "/b");
        assert_eq!(f.action, "");
        let f = parse(&["-id", "y", "--", "delete"]).unwrap();
        assert_eq!(f.action, "delete");
        assert!(parse(&["-v"]).unwrap().version);
        assert!(parse(&["-version"]).unwrap().version);
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_flag_named() {
        assert_eq!(
            parse(&["-runtime", "x"]).unwrap_err(),
            FlagError::Unknown("runtime".into())
        );
        assert_eq!(
            parse(&["-id"]).unwrap_err(),
            FlagError::MissingValue("id".into())
        );
        assert!(matches!(
            parse(&["-debug=yes"]).unwrap_err(),
            FlagError::NotBoolean { name, .. } if name == "debug"
        ));
    }
}
