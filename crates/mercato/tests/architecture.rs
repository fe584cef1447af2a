//! Architecture invariant 1: a context crate never depends on another
//! context crate; contexts share only the kernel and the contracts.

use std::process::Command;

const CONTEXTS: &[&str] = &[
    "mercato-gateway",
    "mercato-identity",
    "mercato-catalog",
    "mercato-search",
    "mercato-cart",
    "mercato-inventory",
    "mercato-orders",
    "mercato-payments",
    "mercato-notifications",
    "mercato-pricing",
];

const SHARED: &[&str] = &["mercato-kernel", "mercato-contracts"];

/// `cargo metadata` of the workspace's own packages.
fn workspace_metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

#[test]
fn context_crates_do_not_depend_on_each_other() {
    let meta = workspace_metadata();
    let packages = meta["packages"].as_array().expect("packages");
    let mut seen = Vec::new();
    let mut violations = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        if !CONTEXTS.contains(&name) {
            continue;
        }
        seen.push(name.to_owned());
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if dep_name.starts_with("mercato") && !SHARED.contains(&dep_name) {
                violations.push(format!("{name} -> {dep_name}"));
            }
        }
    }
    assert_eq!(
        seen.len(),
        CONTEXTS.len(),
        "every context crate is in the workspace: {seen:?}"
    );
    assert!(
        violations.is_empty(),
        "contexts depend on each other: {violations:?}"
    );
}

#[test]
fn the_kernel_and_contracts_know_no_context() {
    let meta = workspace_metadata();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().unwrap_or_default();
        if !SHARED.contains(&name) {
            continue;
        }
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            assert!(
                !CONTEXTS.contains(&dep_name),
                "{name} depends on the context {dep_name}"
            );
        }
    }
}

/// Invariant 18: the pages are API clients. `mercato-web` reads and writes
/// only through the public API, so it depends on no Mercato crate at all.
#[test]
fn the_web_pages_depend_on_no_context_and_no_store() {
    let meta = workspace_metadata();
    let web = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "mercato-web")
        .expect("mercato-web is in the workspace");
    let mercato: Vec<&str> = web["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
        .filter(|d| d.starts_with("mercato"))
        .collect();
    assert!(mercato.is_empty(), "mercato-web depends on {mercato:?}");
}
