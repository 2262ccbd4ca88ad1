//! The container image and the systemd unit, checked where this machine allows (it has no
//! container daemon, and the base images could not be pulled anyway): the `Dockerfile`'s stages
//! and paths agree with each other and with `packaging/redeploy.service`, the server really
//! starts with their command line (addresses moved to a free loopback port and a temporary
//! folder) and the image's HEALTHCHECK command answers against it, and `systemd-analyze verify`
//! accepts the unit when systemd is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::serve::run_until_urls;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Dockerfile's instructions, continuation lines joined and comments left out: (keyword,
/// the rest of the line).
fn dockerfile() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repository().join("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (keyword, rest) = l.trim().split_once(char::is_whitespace).unwrap();
            (keyword.to_uppercase(), rest.trim().to_owned())
        })
        .collect()
}

/// A JSON-array (exec form) argument list.
fn exec_form(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not an exec-form array: {text}: {e}"))
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args.iter().position(|a| a == flag);
    at.and_then(|i| args.get(i + 1))
        .unwrap_or_else(|| panic!("no {flag} in {args:?}"))
}

/// `args` with the values of `--listen` and `--data-dir` replaced.
fn moved(args: &[String], listen: &str, data: &Path) -> Vec<String> {
    let mut out = args.to_vec();
    for i in 1..out.len() {
        match out[i - 1].as_str() {
            "--listen" => out[i] = listen.to_owned(),
            "--data-dir" => out[i] = data.display().to_string(),
            _ => {}
        }
    }
    out
}

/// The unit's `Key=value` settings, in order.
fn unit() -> Vec<(String, String)> {
    std::fs::read_to_string(repository().join("packaging/redeploy.service"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn setting<'a>(unit: &'a [(String, String)], key: &str) -> &'a str {
    unit.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("the unit sets no {key}"))
}

#[tokio::test]
async fn the_image_and_the_unit_run_the_server_as_its_health_check_expects() {
    let docker = dockerfile();
    let all = |keyword: &str| -> Vec<&str> {
        docker
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, rest)| rest.as_str())
            .collect()
    };

    // Stages: a build stage and a runtime stage; every `COPY --from` names an earlier stage.
    let mut stages = Vec::new();
    for (keyword, rest) in &docker {
        match keyword.as_str() {
            "FROM" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                assert!(
                    words.len() == 3 && words[1].eq_ignore_ascii_case("as"),
                    "FROM IMAGE AS NAME: {rest}"
                );
                stages.push(words[2].to_owned());
            }
            "COPY" => {
                if let Some(from) = rest
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("--from="))
                {
                    assert!(
                        stages[..stages.len() - 1].iter().any(|s| s == from),
                        "{rest}"
                    );
                }
            }
            _ => {}
        }
    }
    assert!(stages.len() >= 2, "a multi-stage build: {stages:?}");

    // The runtime stage: a user without privileges, the data folder a volume.
    let user = *all("USER").last().expect("a USER");
    assert!(!["root", "0"].contains(&user), "runs as {user}");
    let entrypoint = exec_form(all("ENTRYPOINT")[0]);
    assert_eq!(entrypoint, ["redeploy"]);
    let cmd = exec_form(all("CMD").last().unwrap());
    assert_eq!(cmd[0], "serve");
    let data_dir = flag(&cmd, "--data-dir");
    assert_eq!(exec_form(all("VOLUME")[0]), [data_dir]);
    let listen: std::net::SocketAddr = flag(&cmd, "--listen").parse().unwrap();
    assert_eq!(all("EXPOSE"), [listen.port().to_string()]);

    // The health check asks /healthz on that port, trusting the CA in the data folder.
    let check = all("HEALTHCHECK")[0];
    let check = exec_form(&check[check.find("CMD [").expect("HEALTHCHECK … CMD [") + 4..]);
    let url = check.last().unwrap().clone();
    assert_eq!(url, format!("https://127.0.0.1:{}/healthz", listen.port()));
    let ca = flag(&check, "--cacert");
    assert_eq!(
        ca,
        format!("{data_dir}/{}", server::bootstrap::CA_CERT),
        "{check:?}"
    );

    // The unit runs the same command line as the image, in its own state directory.
    let unit = unit();
    let exec: Vec<String> = setting(&unit, "ExecStart")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(exec[0].ends_with("/redeploy"), "{exec:?}");
    assert_eq!(exec[1..], cmd[..], "the unit and the image serve alike");
    assert_eq!(
        data_dir,
        format!("/var/lib/{}", setting(&unit, "StateDirectory"))
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(setting(&unit, key), value, "{key}");
    }
    assert!(!["root", ""].contains(&setting(&unit, "User")));

    // The server starts with exactly that command line (moved to a free loopback port and a
    // temporary folder), and the health check, moved alike, answers.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_redeploy"));
    command.args(moved(&cmd, "127.0.0.1:0", &data));
    let (_child, base, _) = run_until_urls(command, &[]).await;
    let mut check = check.clone();
    *check.last_mut().unwrap() = format!("{base}/healthz");
    let ca_at = check.iter().position(|a| a == "--cacert").unwrap() + 1;
    check[ca_at] = data.join(server::bootstrap::CA_CERT).display().to_string();
    let curl = Command::new(&check[0]).args(&check[1..]).output();
    let curl = curl.expect("curl, which the image installs for its health check, is installed");
    assert!(
        curl.status.success(),
        "{check:?}: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&curl.stdout).trim(), "ok");

    // systemd's own check of the unit, with ExecStart pointing at the binary just built.
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let text = std::fs::read_to_string(repository().join("packaging/redeploy.service"))
            .unwrap()
            .replace(&exec[0], env!("CARGO_BIN_EXE_redeploy"));
        let copy = dir.path().join("redeploy.service");
        std::fs::write(&copy, text).unwrap();
        let verify = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success() && said.trim().is_empty(), "{said}");
    }
}
