//! Pinning a reactor thread to its core.

/// Pins the calling thread to `core`. A core that does not exist (a config
/// written for a bigger machine) leaves the thread unpinned rather than
/// failing: the reactor still runs, only without affinity.
pub(crate) fn pin_to_core(core: usize) -> bool {
    // SAFETY: cpu_set_t is plain data; zeroed is its empty set, and
    // CPU_SET only writes inside the set for core < CPU_SETSIZE.
    unsafe {
        if core >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// The cores this process may run on, in order.
pub(crate) fn available_cores() -> Vec<usize> {
    // SAFETY: as above; sched_getaffinity fills the set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&core| libc::CPU_ISSET(core, &set))
            .collect()
    }
}
