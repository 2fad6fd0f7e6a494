//! Process limits a binary raises for itself: the open-file limit, which
//! a controller of thousands of agents (a socket each) or an agent
//! simulating thousands of sessions (a listener, a connection and spool
//! files each) outgrows at the usual soft default of 1024.

/// The soft `RLIMIT_NOFILE` raised to the hard one, so a process needing
/// many descriptors gets what the administrator allows without a
/// `ulimit -n` in every script. Returns the limit now in force, or the
/// error of `getrlimit`/`setrlimit`; `None` where the limit is unlimited.
pub fn raise_nofile() -> std::io::Result<Option<u64>> {
    // SAFETY: rlimit is plain data; all-zero is a valid value of it.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a live, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit whose soft value is within its
        // hard value, which an unprivileged process may always ask for.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        let now = super::raise_nofile().expect("getrlimit works on Linux");
        // SAFETY: as in raise_nofile.
        let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: as in raise_nofile.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        if lim.rlim_cur != libc::RLIM_INFINITY {
            assert_eq!(now, Some(lim.rlim_cur as u64));
        }
    }
}
