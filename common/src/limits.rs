//! Process limits a binary sets for itself: the open-file limit, which
//! a controller of thousands of agents (a socket each) or an agent
//! simulating thousands of sessions (a listener, a connection and spool
//! files each) outgrows at the usual soft default of 1024; and whether
//! the process's memory may be backed by transparent huge pages.

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

/// Turns transparent huge pages off for this process (`PR_SET_THP_DISABLE`),
/// for pages touched from now on. The allocator (mimalloc) asks for huge
/// pages on its arenas, and each thread allocates from pages of its own,
/// so a process of thousands of threads that each touch a little memory
/// holds a 2 MiB page per thread: measured with 1,000 simulated agents
/// (a log writer thread each), 1.8 GiB with huge pages, 0.58 GiB without.
/// The controller and simulated agents turn them off; a real agent, a
/// process of a few threads and large buffers, keeps them.
pub fn no_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no
    // memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_pages_can_be_turned_off() {
        // In a thread of its own process state is shared, so only the
        // flag is checked: PR_GET_THP_DISABLE says it is set.
        super::no_huge_pages().expect("prctl works on Linux");
        // SAFETY: as in no_huge_pages.
        assert_eq!(
            unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) },
            1
        );
    }

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
