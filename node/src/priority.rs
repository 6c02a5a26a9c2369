//! Scheduling priority of the node's bulk work. `fraudmesh run`'s async runtime (the
//! network, sync, detection, enforcement) and the threads that verify and store what the
//! mesh sends (a catch-up of 100,000 records, a stranger flood) run below normal priority;
//! the API (its own thread and runtime) and the call policy's thread run at normal
//! priority. Under load the CPU goes first to what a caller waits for, and to the PBX the
//! node runs beside; without load nothing changes.

/// How much lower than normal (nice) the bulk threads run.
pub const BACKGROUND_NICE: libc::c_int = 10;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`]. Lowering needs no
/// privilege; a failure (a sandbox that forbids it) is logged and changes nothing else.
pub fn background() {
    // SAFETY: gettid and setpriority take plain integers and touch no memory of ours;
    // on Linux, PRIO_PROCESS with a thread id applies to that thread alone.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE)
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not lower this thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_only_the_calling_thread() {
        let own = || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = own();
        let lowered = std::thread::spawn(move || {
            background();
            own()
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, (before + BACKGROUND_NICE).min(19));
        assert_eq!(own(), before, "the caller's priority is unchanged");
    }
}
