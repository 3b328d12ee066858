//! A job runs without capabilities and with no_new_privs, even when the
//! host is root.

use crate::harness::*;

#[test]
fn capabilities_are_dropped_and_no_new_privs_is_set() {
    let fx = Fixture::new("");
    let out = fx.probe(&["caps"]);
    let line = out.stdout().join(" ");
    assert!(line.contains("effective=0x0 permitted=0x0"), "{line}");
    assert!(line.contains("bounding_cap_sys_admin=0"), "{line}");
    assert!(line.contains("no_new_privs=1"), "{line}");
}

#[test]
fn root_without_capabilities_cannot_chown() {
    let fx = Fixture::new("");
    let file = fx.repo.join("mine");
    std::fs::write(&file, "x").unwrap();
    if !is_root() {
        skip!(
            "root",
            "the test runs as non-root, where chown is refused anyway"
        );
    }
    fx.probe(&["chown", file.to_str().unwrap()])
        .assert_denied("EPERM");
}
