//! Latency histogram, per-subscriber delivery bitsets, and the server's
//! (or our own) CPU time and memory from /proc.

/// Log-linear histogram of microsecond values: exact below 1024 µs, then
/// 512 buckets per power of two (relative error under 0.2 %). Max is exact.
pub struct Histogram {
    counts: Vec<u64>,
    pub n: u64,
    pub max: u64,
    pub min: u64,
    pub sum: u128,
}

const LINEAR: u64 = 1024;
const SUB_BITS: u32 = 9; // 512 sub-buckets per octave

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; Self::index(u64::MAX) + 1],
            n: 0,
            max: 0,
            min: u64::MAX,
            sum: 0,
        }
    }

    #[inline]
    fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // >= 10
        let shift = e - SUB_BITS;
        let sub = ((v >> shift) as usize) & ((1 << SUB_BITS) - 1);
        LINEAR as usize + ((e - 10) as usize) * (1 << SUB_BITS) + sub
    }

    /// The largest value that falls in bucket `i` (so percentiles never under-report).
    fn upper(i: usize) -> u64 {
        if i < LINEAR as usize {
            return i as u64;
        }
        let j = i - LINEAR as usize;
        let e = (j >> SUB_BITS) as u32 + 10;
        let sub = (j & ((1 << SUB_BITS) - 1)) as u64;
        let shift = e - SUB_BITS;
        let lo = (1u64 << e) | (sub << shift);
        lo.saturating_add((1u64 << shift) - 1)
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.n += 1;
        self.sum += v as u128;
        if v > self.max {
            self.max = v;
        }
        if v < self.min {
            self.min = v;
        }
    }

    /// The value at quantile `q` (0..=1): the smallest bucket bound with at
    /// least q·n values at or below it, capped by the exact max.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.n == 0 {
            return None;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::upper(i).min(self.max));
            }
        }
        Some(self.max)
    }

    pub fn mean(&self) -> Option<f64> {
        if self.n == 0 {
            None
        } else {
            Some(self.sum as f64 / self.n as f64)
        }
    }
}

/// A growable set of small integers (message sequence numbers).
#[derive(Default, Clone)]
pub struct BitSet {
    words: Vec<u64>,
    pub count: u64,
}

impl BitSet {
    /// Inserts `i`; false when it was already there.
    #[inline]
    pub fn insert(&mut self, i: u64) -> bool {
        let w = (i >> 6) as usize;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let bit = 1u64 << (i & 63);
        if self.words[w] & bit != 0 {
            false
        } else {
            self.words[w] |= bit;
            self.count += 1;
            true
        }
    }

    #[allow(dead_code)]
    #[inline]
    pub fn contains(&self, i: u64) -> bool {
        let w = (i >> 6) as usize;
        w < self.words.len() && self.words[w] & (1u64 << (i & 63)) != 0
    }

    /// How many members of `self` are not in `other`.
    pub fn missing_from(&self, other: &BitSet) -> u64 {
        let mut n = 0u64;
        for (i, &w) in self.words.iter().enumerate() {
            let o = other.words.get(i).copied().unwrap_or(0);
            n += (w & !o).count_ones() as u64;
        }
        n
    }
}

/// CPU time and memory of one process, read from /proc/PID.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime, microseconds (clock-tick resolution, usually 10 ms).
    pub cpu_us: u64,
    pub utime_us: u64,
    pub stime_us: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
    pub fds: u64,
}

pub fn clock_ticks() -> u64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Parses the text of /proc/PID/stat: (utime, stime, num_threads) in ticks.
pub fn parse_stat(text: &str) -> Option<(u64, u64, u64)> {
    // The command name is in parentheses and may hold spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); utime is field 14, stime 15, num_threads 20.
    let utime = f.get(11)?.parse().ok()?;
    let stime = f.get(12)?.parse().ok()?;
    let threads = f.get(17)?.parse().ok()?;
    Some((utime, stime, threads))
}

/// A `Key:   1234 kB` value from /proc/PID/status, in kB.
pub fn parse_status_kb(text: &str, key: &str) -> Option<u64> {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(key) {
            if let Some(rest) = rest.strip_prefix(':') {
                return rest.split_whitespace().next()?.parse().ok();
            }
        }
    }
    None
}

/// Machine-wide TCP counters from /proc/net/netstat that tell of a full
/// accept queue: (ListenOverflows, ListenDrops, TCPSynRetrans).
pub fn listen_counters() -> Option<(u64, u64, u64)> {
    parse_netstat(&std::fs::read_to_string("/proc/net/netstat").ok()?)
}

pub fn parse_netstat(text: &str) -> Option<(u64, u64, u64)> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
    let values: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let get = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| values.get(i).copied())
    };
    Some((
        get("ListenOverflows")?,
        get("ListenDrops")?,
        get("TCPSynRetrans").unwrap_or(0),
    ))
}

/// Samples /proc/PID (`pid` 0 means this process); counting the open
/// files reads /proc/PID/fd, which is slow with thousands of them.
pub fn sample(pid: u32) -> Option<ProcSample> {
    sample_with(pid, false)
}

pub fn sample_with(pid: u32, count_fds: bool) -> Option<ProcSample> {
    let base = if pid == 0 {
        "/proc/self".to_string()
    } else {
        format!("/proc/{}", pid)
    };
    let stat = std::fs::read_to_string(format!("{}/stat", base)).ok()?;
    let status = std::fs::read_to_string(format!("{}/status", base)).ok()?;
    let (ut, st, threads) = parse_stat(&stat)?;
    let tick_us = 1_000_000 / clock_ticks();
    let fds = if count_fds {
        std::fs::read_dir(format!("{}/fd", base))
            .map(|d| d.count() as u64)
            .unwrap_or(0)
    } else {
        0
    };
    Some(ProcSample {
        cpu_us: (ut + st) * tick_us,
        utime_us: ut * tick_us,
        stime_us: st * tick_us,
        rss_kb: parse_status_kb(&status, "VmRSS").unwrap_or(0),
        hwm_kb: parse_status_kb(&status, "VmHWM").unwrap_or(0),
        threads,
        fds,
    })
}

/// Machine-wide CPU time from the first line of /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTotals {
    /// Every state but idle and iowait.
    pub busy: u64,
    pub steal: u64,
    /// Interrupts and softirqs: on loopback, most of the receiving side of TCP.
    pub irq: u64,
    pub all: u64,
}

pub fn parse_proc_stat(text: &str) -> Option<CpuTotals> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal guest guest_nice;
    // guest time is already counted in user, so only the first 8 add up.
    let all: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some(CpuTotals {
        busy: all - idle,
        steal: v.get(7).copied().unwrap_or(0),
        irq: v.get(5).copied().unwrap_or(0) + v.get(6).copied().unwrap_or(0),
        all,
    })
}

pub fn machine_cpu() -> Option<CpuTotals> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn netstat_parsing() {
        let t = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\nTcpExt: 1 2 3 4\nIpExt: A\nIpExt: 5\n";
        assert_eq!(super::parse_netstat(t), Some((2, 3, 4)));
        assert_eq!(super::parse_netstat("nothing"), None);
        assert!(super::listen_counters().is_some());
    }

    #[test]
    fn proc_stat_parsing() {
        let t = "cpu  100 5 50 1000 10 1 4 3 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        let c = super::parse_proc_stat(t).unwrap();
        assert_eq!((c.busy, c.steal, c.irq, c.all), (163, 3, 5, 1173));
        assert!(super::machine_cpu().is_some());
    }

    use super::*;

    #[test]
    fn histogram_exact_small_values() {
        let mut h = Histogram::new();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(1.0), Some(100));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!(h.max, 100);
        assert_eq!(h.mean(), Some(50.5));
        assert_eq!(Histogram::new().quantile(0.5), None);
    }

    #[test]
    fn histogram_relative_error_is_small_and_upper_bounds() {
        for &v in &[
            1023u64,
            1024,
            1025,
            4096,
            123_456,
            9_999_999,
            1 << 40,
            u64::MAX,
        ] {
            let mut h = Histogram::new();
            h.record(v);
            h.record(0);
            // p100 is the exact max; p50 is 0.
            assert_eq!(h.quantile(1.0), Some(v));
            assert_eq!(h.quantile(0.5), Some(0));
            let i = Histogram::index(v);
            let up = Histogram::upper(i);
            assert!(up >= v, "{} -> bucket upper {}", v, up);
            assert!((up - v) as f64 <= v as f64 * 0.002 + 1.0, "{} -> {}", v, up);
            if i > 0 {
                assert!(Histogram::upper(i - 1) < v);
            }
        }
        // Buckets are contiguous and increasing.
        let mut last = 0;
        for i in 1..Histogram::index(1 << 30) {
            let u = Histogram::upper(i);
            assert!(u > last);
            assert_eq!(Histogram::index(u), i);
            assert_eq!(Histogram::index(last + 1), i);
            last = u;
        }
    }

    #[test]
    fn histogram_percentiles_of_a_spread() {
        let mut h = Histogram::new();
        for v in 0..100_000u64 {
            h.record(v);
        }
        let p99 = h.quantile(0.99).unwrap();
        assert!((98_999..=99_200).contains(&p99), "{}", p99);
        let p50 = h.quantile(0.5).unwrap();
        assert!((49_999..=50_100).contains(&p50), "{}", p50);
    }

    #[test]
    fn bitset_counts_and_dups() {
        let mut a = BitSet::default();
        assert!(a.insert(0));
        assert!(a.insert(63));
        assert!(a.insert(64));
        assert!(a.insert(1000));
        assert!(!a.insert(64));
        assert_eq!(a.count, 4);
        assert!(a.contains(1000) && !a.contains(999) && !a.contains(1 << 20));
        let mut all = BitSet::default();
        for i in 0..2000 {
            all.insert(i);
        }
        assert_eq!(all.missing_from(&a), 1996);
        assert_eq!(a.missing_from(&all), 0);
        assert_eq!(all.missing_from(&BitSet::default()), 2000);
    }

    #[test]
    fn stat_parsing() {
        let s = "4242 (ss ehub) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 317 42 0 0 20 0 1 0 123456 12345678 2345 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0 0 0 0";
        assert_eq!(parse_stat(s), Some((317, 42, 1)));
        assert_eq!(parse_stat("garbage"), None);
        let st = "Name:\tssehub\nVmHWM:\t    9000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_status_kb(st, "VmRSS"), Some(5120));
        assert_eq!(parse_status_kb(st, "VmHWM"), Some(9000));
        assert_eq!(parse_status_kb(st, "VmSwap"), None);
    }

    #[test]
    fn sample_self() {
        let s = sample_with(0, true).unwrap();
        assert!(s.rss_kb > 0);
        assert!(s.threads >= 1);
        assert!(s.fds >= 3);
        assert_eq!(sample(0).unwrap().fds, 0);
        assert!(clock_ticks() >= 1);
    }
}
