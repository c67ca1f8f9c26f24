//! Wall-clock time of day in the local time zone (for go2rtc-style log lines), and raw
//! clock reads (the thread CPU clock has no std API).

/// Local wall-clock time of day: (h, m, s, ms).
pub fn local_time_of_day() -> (u32, u32, u32, u32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: localtime_r only writes into the tm we give it.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            let s = now.as_secs() % 86_400;
            return (
                (s / 3600) as u32,
                (s / 60 % 60) as u32,
                (s % 60) as u32,
                now.subsec_millis(),
            );
        }
        tm
    };
    (
        tm.tm_hour as u32,
        tm.tm_min as u32,
        tm.tm_sec as u32,
        now.subsec_millis(),
    )
}

/// `clock`'s time in microseconds (`CLOCK_MONOTONIC`, `CLOCK_THREAD_CPUTIME_ID`, ...).
pub fn micros(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}
