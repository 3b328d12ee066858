//! A job leaves no privilege behind: no setuid or setgid bit, whichever
//! call tries to set it, and no new namespace. Each attempt is made for
//! real, then again with the layer switched off, where it succeeds (as root
//! on CI: the file is then really setuid-root).

use crate::harness::*;
use jobwarden::sandbox::BaselineLayer;
use std::os::unix::fs::PermissionsExt;

#[test]
fn setuid_and_setgid_bits_cannot_be_set() {
    let fx = Fixture::new("");
    let file = fx.repo.join("shell");
    std::fs::write(&file, b"#!/bin/sh\n").unwrap();
    let path = file.to_str().unwrap();
    fx.probe(&["chmod", path, "4755"]).assert_denied("EPERM");
    fx.probe(&["chmod", path, "2755"]).assert_denied("EPERM");
    // A plain mode change still works.
    fx.probe(&["chmod", path, "755"]).assert_ok();
    let created = fx.repo.join("created");
    fx.probe(&["create", created.to_str().unwrap(), "6755"])
        .assert_denied("EPERM");
    assert!(!created.exists());
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
        0o755
    );

    let off = Fixture::without("", &[BaselineLayer::Setuid]);
    let file = off.repo.join("shell");
    std::fs::write(&file, b"#!/bin/sh\n").unwrap();
    off.probe(&["chmod", file.to_str().unwrap(), "4755"])
        .assert_ok();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o4000,
        0o4000,
        "without the layer the bit is set"
    );
    let created = off.repo.join("created");
    off.probe(&["create", created.to_str().unwrap(), "6755"])
        .assert_ok();
}

#[test]
fn no_user_namespace_can_be_created() {
    Fixture::new("").probe(&["unshare"]).assert_denied("EPERM");
    Fixture::new("")
        .probe(&["clone-newuser"])
        .assert_denied("EPERM");
    let off = Fixture::without("", &[BaselineLayer::Namespaces]);
    off.probe(&["unshare"]).assert_ok();
}
