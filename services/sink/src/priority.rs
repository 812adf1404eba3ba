//! CPU priority of the HTTP server's threads (`sink.api.nice`).
//!
//! The API and the web page run on a runtime of their own whose threads start with a
//! higher nice value, and so do the API's SQLite read connections (each runs on a thread
//! started from one of those, which inherits it): when the API is polled harder than the
//! machine's cores keep up with, the kernel gives the pipeline's threads (consuming,
//! flushing) the CPU first, and the API answers later instead of the flushes.

/// Sets the calling thread's nice value (Linux keeps one per thread; raising it needs no
/// privilege). Elsewhere, or if the kernel refuses, the thread keeps its priority and the
/// reason is returned.
pub fn lower_this_thread(nice: i32) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        rustix::process::setpriority_process(Some(tid), nice)
            .map_err(|e| format!("setpriority({nice}) failed: {e}"))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = nice;
        Err("per-thread priority is only set on Linux".to_owned())
    }
}

/// The calling thread's nice value (Linux), for tests and logs.
pub fn this_thread_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_and_the_threads_it_starts_get_the_lower_priority() {
        let base = this_thread_nice().unwrap();
        let (own, child) = std::thread::spawn(move || {
            lower_this_thread(base + 5).unwrap();
            let own = this_thread_nice().unwrap();
            let child = std::thread::spawn(this_thread_nice)
                .join()
                .unwrap()
                .unwrap();
            (own, child)
        })
        .join()
        .unwrap();
        assert_eq!(own, base + 5);
        assert_eq!(child, base + 5, "inherited by threads it starts");
        assert_eq!(
            this_thread_nice().unwrap(),
            base,
            "other threads keep theirs"
        );
    }
}
