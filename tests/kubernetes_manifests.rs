//! deploy/kubernetes checked offline (scripts/check_manifests.py): every
//! resource against the Kubernetes schema with kubernetes-validate
//! --strict, and every flashguard container's flags, environment, config
//! files and ports against this binary (`--check-config`). A manifest that
//! drifts from the binary is caught.

use std::process::Command;

fn venv_bin() -> String {
    std::env::var("FLASHGUARD_PYTHON_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/schemathesis/bin").to_string()
    })
}

fn check(dir: Option<&std::path::Path>) -> std::process::Output {
    let bin = venv_bin();
    let mut command = Command::new(format!("{bin}/python"));
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/check_manifests.py"
        ))
        .arg(env!("CARGO_BIN_EXE_flashguard"));
    if let Some(dir) = dir {
        command.arg(dir);
    }
    let path = format!("{bin}:{}", std::env::var("PATH").unwrap_or_default());
    command
        .env("PATH", path)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap_or_else(|e| {
            panic!("{bin}/python: {e} (scripts/test installs kubernetes-validate there)")
        })
}

#[test]
fn the_manifests_are_valid_and_agree_with_the_binary() {
    let output = check(None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("manifests ok"), "{stdout}");
    for part in ["gateway", "shop", "monitor"] {
        assert!(
            stdout.contains(&format!("accepted by flashguard {part}")),
            "{part} not checked: {stdout}"
        );
    }
}

#[test]
fn a_manifest_that_drifts_from_the_binary_is_refused() {
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    // A port the shop does not listen on, and a flag it does not have.
    let shop = dir.path().join("shop.yaml");
    let text = std::fs::read_to_string(&shop).unwrap();
    std::fs::write(
        &shop,
        text.replace("containerPort: 8080", "containerPort: 9090"),
    )
    .unwrap();
    let gateway = dir.path().join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway).unwrap();
    std::fs::write(
        &gateway,
        text.replace("- gateway\n", "- gateway\n            - --no-such-flag\n"),
    )
    .unwrap();
    let output = check(Some(dir.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("declares ports [9090]"), "{stderr}");
    assert!(
        stderr.contains("deployment/gateway") && stderr.contains("refused it"),
        "{stderr}"
    );
}
