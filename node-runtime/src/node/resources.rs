//! What the host has, for default tier budgets.

use std::path::Path;

/// Memory and disk of this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostResources {
    /// Total RAM, in bytes.
    pub total_ram: u64,
    /// Free space on the filesystem of the data directory, in bytes.
    pub available_disk: u64,
}

impl HostResources {
    /// Reads `/proc/meminfo` and the data directory's filesystem; unknown
    /// values are 0 (callers then need explicit budgets).
    pub fn probe(data_dir: &Path) -> Self {
        Self { total_ram: total_ram().unwrap_or(0), available_disk: available_disk(data_dir).unwrap_or(0) }
    }
}

fn total_ram() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[allow(unsafe_code)]
fn available_disk(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialized the struct.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between platforms (u32 on some 32-bit targets).
    #[allow(clippy::unnecessary_cast)]
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Asks the kernel to drop `path`'s pages from the page cache, so the next
/// read comes from the disk (benchmarks of the disk tier). Works without
/// privileges for files that are not being written.
///
/// # Errors
/// When the file cannot be opened or the kernel refuses the advice.
#[allow(unsafe_code)]
pub fn evict_from_page_cache(path: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    file.sync_all()?;
    // SAFETY: the descriptor is open for the duration of the call; the
    // advice only affects caching, never the file's contents.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::from_raw_os_error(rc)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reports_memory_and_disk() {
        let r = HostResources::probe(Path::new("."));
        assert!(r.total_ram > 64 << 20, "{r:?}");
        assert!(r.available_disk > 0, "{r:?}");
    }
}
