//! alb's config validation resolves `host:` names (`localhost` is common),
//! so a fuzzed config can name any host. The alb targets therefore run in a
//! network namespace of their own, holding only a loopback interface that
//! is down: no input can make them send a packet, and a lookup fails at
//! once instead of waiting for a resolver. `localhost` still resolves
//! through /etc/hosts.

/// Moves the calling process into a new, empty network namespace: as root
/// directly, otherwise inside a new user namespace. Panics (libFuzzer stops
/// at once) when neither is allowed, rather than fuzz with the network.
pub fn without_network() {
    // SAFETY: unshare only changes this process's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return;
    }
    let as_root = std::io::Error::last_os_error();
    // SAFETY: as above; a user namespace makes the network one unprivileged.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        return;
    }
    let as_user = std::io::Error::last_os_error();
    panic!(
        "this fuzz target must run without network (alb resolves host names while validating) but cannot leave it: \
         unshare(CLONE_NEWNET): {as_root}; with a user namespace: {as_user}; run it as root"
    );
}
