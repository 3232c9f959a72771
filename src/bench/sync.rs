//! The measuring parts of `causeway bench sync` (`pipeline`): the raw baseline (a plain
//! paged LDAP search of the benchmark OU with exactly the attributes sync asks for) and a
//! sampler of a child process's resident memory.

pub(crate) mod pipeline;

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use causeway_sync::ad::import::{extended_dn, OBJECTS};
use causeway_sync::ad::map::Mapping;
use ldap3::controls::{Control, RawControl};
use ldap3::{Ldap, Scope, SearchEntry};

/// Entries per page of the raw search (what a hand-written full import would ask for).
pub(crate) const PAGE_SIZE: u32 = 1000;

/// The attributes a sync import asks for with the default mapping: the baseline reads
/// exactly what sync reads, so the two rates compare like for like.
pub(crate) fn sync_attributes() -> Vec<String> {
    Mapping::default().attributes()
}

/// What one raw paged search read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RawSearch {
    /// Entries received and decoded.
    pub(crate) objects: u64,
    /// Attribute values among them (so the decoding cannot be optimised away).
    pub(crate) values: u64,
    /// Pages (search requests) it took.
    pub(crate) pages: u64,
    /// Wall time from the first request to the last page.
    pub(crate) elapsed: Duration,
}

impl RawSearch {
    /// Objects per second, or `None` when no time was measured.
    pub(crate) fn objects_per_second(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        (secs > 0.0).then(|| self.objects as f64 / secs)
    }
}

/// Why the raw search stopped.
#[derive(Debug)]
pub(crate) enum RawSearchError {
    /// The DC did not answer a page within the timeout.
    Timeout(Duration),
    /// The connection failed.
    Ldap(String),
    /// The DC refused the search (the bind's rights, a wrong base DN).
    Refused { rc: u32, text: String },
    /// The DC's paging answer is missing or malformed: a baseline that silently read one
    /// page would under-count, so this is an error, not the end.
    Paging(String),
}

impl fmt::Display for RawSearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(t) => write!(f, "the DC did not answer a page within {t:?}"),
            Self::Ldap(e) => write!(f, "LDAP connection failed during the raw search: {e}"),
            Self::Refused { rc, text } => write!(f, "the DC refused the raw search ({rc}): {text}"),
            Self::Paging(e) => write!(f, "the DC's paged-results answer is unusable: {e}"),
        }
    }
}

impl std::error::Error for RawSearchError {}

/// A full subtree search of `base` (sync's object filter, `attrs`, the extended-DN control
/// sync sends) in pages of `page_size`, each entry decoded and then dropped, so memory
/// stays at one page. `now` is the clock the rate is measured with.
pub(crate) async fn raw_paged_search(
    ldap: &mut Ldap,
    base: &str,
    attrs: &[String],
    page_size: u32,
    timeout: Duration,
    now: impl Fn() -> Instant,
) -> Result<RawSearch, RawSearchError> {
    let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
    let size = i32::try_from(page_size.max(1)).unwrap_or(i32::MAX);
    let (mut objects, mut values, mut pages) = (0u64, 0u64, 0u64);
    let mut cookie = Vec::new();
    let start = now();
    loop {
        let (entries, res) = tokio::time::timeout(
            timeout,
            ldap.with_controls(vec![paged_request(size, &cookie), extended_dn()])
                .search(base, Scope::Subtree, OBJECTS, attrs.clone()),
        )
        .await
        .map_err(|_| RawSearchError::Timeout(timeout))?
        .map_err(|e| RawSearchError::Ldap(e.to_string()))?
        .success()
        .map_err(|e| match e {
            ldap3::LdapError::LdapResult { result } => RawSearchError::Refused {
                rc: result.rc,
                text: result.text,
            },
            e => RawSearchError::Ldap(e.to_string()),
        })?;
        pages += 1;
        for e in entries {
            let e = SearchEntry::construct(e);
            objects += 1;
            values += e.attrs.values().map(|v| v.len() as u64).sum::<u64>()
                + e.bin_attrs.values().map(|v| v.len() as u64).sum::<u64>();
        }
        match next_cookie(&res.ctrls)? {
            Some(c) => cookie = c,
            None => break,
        }
    }
    Ok(RawSearch {
        objects,
        values,
        pages,
        elapsed: now().saturating_duration_since(start),
    })
}

fn paged_request(size: i32, cookie: &[u8]) -> RawControl {
    causeway_sync::ad::paged::request(size, cookie)
}

/// The cookie to send for the next page, read with bounds (`causeway_sync::ad::paged`).
fn next_cookie(ctrls: &[Control]) -> Result<Option<Vec<u8>>, RawSearchError> {
    causeway_sync::ad::paged::next_cookie(ctrls).map_err(RawSearchError::Paging)
}

/// The resident set of a running process (`VmRSS` in `/proc/<pid>/status`), in KiB, at
/// the moments the bench names: e.g. after the full import, at the peak of a delta.
#[derive(Debug)]
pub(crate) struct RssSampler {
    pid: u32,
    samples: Vec<(String, u64)>,
}

impl RssSampler {
    /// A sampler for the process `pid` (typically a `causeway sync` child's `id()`).
    pub(crate) fn new(pid: u32) -> Self {
        Self {
            pid,
            samples: Vec::new(),
        }
    }

    /// Reads VmRSS now and records it under `label`. An error (the process is gone, or
    /// has no VmRSS: a zombie) records nothing.
    pub(crate) fn sample(&mut self, label: &str) -> io::Result<u64> {
        let kib = vm_rss_kib(self.pid)?;
        self.samples.push((label.to_owned(), kib));
        Ok(kib)
    }

    /// Every sample so far, in order: (label, KiB).
    #[cfg(test)]
    pub(crate) fn samples(&self) -> &[(String, u64)] {
        &self.samples
    }

    /// The largest sample so far, in KiB.
    pub(crate) fn max_kib(&self) -> Option<u64> {
        self.samples.iter().map(|s| s.1).max()
    }
}

/// `VmRSS` of `pid`, in KiB.
pub(crate) fn vm_rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vm_rss_kib(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("process {pid} has no VmRSS (it has exited and is a zombie)"),
        )
    })
}

/// The `VmRSS:   12345 kB` line of a `/proc/<pid>/status` text, in KiB.
fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut words = line.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(n)
}

#[cfg(test)]
mod tests;
