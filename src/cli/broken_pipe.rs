//! A reader that goes away (`santools zfs-list | head -1`) makes Rust's
//! `println!` panic with "failed printing to stdout: Broken pipe": the
//! runtime ignores SIGPIPE so that our own pipes and sockets (zfs-copy's
//! relay, the initiator) get EPIPE as an error they can report. For a
//! tool's own standard output the Unix convention is better: end as `cat`
//! or `ls` would, killed by SIGPIPE, with no message.

/// Installs the panic hook that turns a broken stdout into SIGPIPE.
pub fn install() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_stdout(msg) {
            // SAFETY: restoring the default action and raising the signal
            // ends the process the way a closed pipe ends any Unix tool.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
        }
        default(info)
    }));
}

fn is_broken_stdout(msg: &str) -> bool {
    msg.starts_with("failed printing to stdout") && msg.contains("os error 32")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_broken_stdout_is_recognized() {
        assert!(super::is_broken_stdout("failed printing to stdout: Broken pipe (os error 32)"));
        assert!(!super::is_broken_stdout("failed printing to stdout: No space left on device (os error 28)"));
        assert!(!super::is_broken_stdout("index out of bounds"));
    }
}
