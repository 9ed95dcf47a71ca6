//! What the GPU says about engines, through NVML (`libnvidia-ml.so.1`,
//! loaded at run time by `nvml-wrapper`, so every build has it): the
//! device's total memory, for the presets' share flags, and the device
//! memory an engine's processes hold, for admission and for showing that a
//! checkpointed engine holds none.

use std::sync::OnceLock;

use nvml_wrapper::Nvml;
use nvml_wrapper::enums::device::UsedGpuMemory;

/// NVML, once per process; `None` on a machine without an NVIDIA driver.
fn nvml() -> Option<&'static Nvml> {
    static NVML: OnceLock<Option<Nvml>> = OnceLock::new();
    NVML.get_or_init(|| match Nvml::init() {
        Ok(nvml) => Some(nvml),
        Err(e) => {
            tracing::debug!(error = %e, "No NVML: engines' device memory is not measured");
            None
        }
    })
    .as_ref()
}

/// The first GPU's memory, in bytes; `None` without a GPU.
pub fn total_memory() -> Option<u64> {
    let device = nvml()?.device_by_index(0).ok()?;
    device.memory_info().ok().map(|m| m.total)
}

/// Device bytes the processes `pids` hold on every GPU; `None` without a GPU.
pub fn used_by(pids: &[u32]) -> Option<u64> {
    let nvml = nvml()?;
    let mut used = 0u64;
    for index in 0..nvml.device_count().ok()? {
        let Ok(device) = nvml.device_by_index(index) else { continue };
        for process in device.running_compute_processes().unwrap_or_default() {
            if let (true, UsedGpuMemory::Used(bytes)) = (pids.contains(&process.pid), process.used_gpu_memory) {
                // Some drivers report an unknown amount as all ones.
                if bytes != u64::MAX {
                    used = used.saturating_add(bytes);
                }
            }
        }
    }
    Some(used)
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_a_driver_nothing_is_measured_and_nothing_fails() {
        if std::path::Path::new("/proc/driver/nvidia").exists() {
            return; // A GPU machine: the GPU check measures this for real.
        }
        assert_eq!(super::total_memory(), None);
        assert_eq!(super::used_by(&[std::process::id()]), None);
    }
}
