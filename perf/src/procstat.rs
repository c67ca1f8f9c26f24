//! Reading another process's CPU time and memory from /proc, and the kernel's UDP drop
//! counter.

use std::fs;

/// What `/proc/PID/stat` says that we need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// User-mode time, clock ticks (field 14).
    pub utime: u64,
    /// Kernel-mode time, clock ticks (field 15).
    pub stime: u64,
    /// Threads (field 20).
    pub threads: u64,
    /// Resident set size in pages (field 24).
    pub rss_pages: u64,
}

/// Parses the text of `/proc/PID/stat`. The command name (field 2) is in parentheses and
/// may itself contain spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let close = text.rfind(')')?;
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        rss_pages: field(24)?,
    })
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// CPU and memory of a process at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub user_s: f64,
    pub sys_s: f64,
    pub rss_kib: u64,
    pub threads: u64,
}

impl Sample {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

/// Samples a process; `None` if it is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let st = parse_stat(&text)?;
    let tck = clk_tck();
    Some(Sample {
        user_s: st.utime as f64 / tck,
        sys_s: st.stime as f64 / tck,
        rss_kib: st.rss_pages * page_size() / 1024,
        threads: st.threads,
    })
}

/// `Udp: ... RcvbufErrors ...` from `/proc/net/snmp` text: datagrams the kernel dropped
/// because a socket's receive buffer was full (machine-wide).
pub fn parse_udp_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let header = lines.next()?;
    let values = lines.next()?;
    let idx = header
        .split_whitespace()
        .position(|h| h == "RcvbufErrors")?;
    values.split_whitespace().nth(idx)?.parse().ok()
}

/// Busy time of the whole machine (all CPUs) in clock ticks, from `/proc/stat` text:
/// everything but idle and iowait on the aggregate `cpu` line.
pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let total: u64 = v.iter().take(8).sum();
    Some(total - v[3] - v[4])
}

/// Machine-wide busy CPU seconds since boot.
pub fn machine_busy_s() -> Option<f64> {
    parse_machine_busy(&fs::read_to_string("/proc/stat").ok()?).map(|t| t as f64 / clk_tck())
}

pub fn udp_rcvbuf_errors() -> Option<u64> {
    parse_udp_rcvbuf_errors(&fs::read_to_string("/proc/net/snmp").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "4242 (my (weird) srv) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    345 678 0 0 20 0 3 0 123456 987654321 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.utime, 345);
        assert_eq!(st.stime, 678);
        assert_eq!(st.threads, 3);
        assert_eq!(st.rss_pages, 2500);
    }

    #[test]
    fn parses_own_stat() {
        let text = fs::read_to_string("/proc/self/stat").unwrap();
        let st = parse_stat(&text).unwrap();
        assert!(st.threads >= 1);
        assert!(st.rss_pages > 0);
        assert!(sample(std::process::id()).unwrap().rss_kib > 0);
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn parses_machine_busy() {
        let stat = "cpu  100 5 50 1000 20 3 2 0 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(160));
        assert!(machine_busy_s().is_some());
    }

    #[test]
    fn parses_snmp_udp() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\n\
                    Udp: 100 2 7 300 5 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_udp_rcvbuf_errors(snmp), Some(5));
    }
}
