//! CUDA checkpoints of another process: the driver copies an engine's
//! device memory to host memory and releases the GPU while the process
//! lives on; restore puts it back. The driver (`libcuda.so.1`, r570 or
//! newer) is loaded at run time, so every build has this and a node
//! without it says so and stops the engine instead.

use std::sync::OnceLock;

/// A `CUcheckpoint*Args` struct: reserved fields and, for the lock, a
/// timeout; all zero means the defaults (64 bytes in every version so far).
#[repr(C)]
#[derive(Default)]
struct Args {
    timeout_ms: u32,
    reserved: [u32; 15],
}

type CheckpointCall = unsafe extern "C" fn(pid: libc::c_int, args: *mut Args) -> libc::c_int;
type StateCall = unsafe extern "C" fn(pid: libc::c_int, state: *mut libc::c_int) -> libc::c_int;
type InitCall = unsafe extern "C" fn(flags: libc::c_uint) -> libc::c_int;

/// A process's state as the driver sees it (`CUprocessState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    Running,
    Locked,
    Checkpointed,
    Failed,
}

/// The driver's checkpoint entry points.
pub struct CudaCheckpoint {
    _library: libloading::Library,
    lock: CheckpointCall,
    checkpoint: CheckpointCall,
    restore: CheckpointCall,
    unlock: CheckpointCall,
    get_state: StateCall,
}

impl std::fmt::Debug for CudaCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CudaCheckpoint")
    }
}

/// Why checkpoints cannot be taken here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("no CUDA driver here ({0}); engines are stopped to sleep")]
    NoDriver(String),
    #[error("the CUDA driver has no checkpoint API (it needs r570 or newer); engines are stopped to sleep")]
    Unsupported,
    #[error("CUDA checkpoint call {call} failed for process {pid} with CUresult {code}")]
    Call { call: &'static str, pid: u32, code: i32 },
}

/// `CUDA_ERROR_NOT_SUPPORTED`, among others a process that has no CUDA context.
const NOT_SUPPORTED: i32 = 801;

impl CudaCheckpoint {
    /// The driver's API, loaded once per process.
    ///
    /// # Errors
    /// [`CheckpointError::NoDriver`] or [`CheckpointError::Unsupported`].
    pub fn get() -> Result<&'static Self, CheckpointError> {
        static LOADED: OnceLock<Result<CudaCheckpoint, CheckpointError>> = OnceLock::new();
        LOADED.get_or_init(|| Self::load("libcuda.so.1")).as_ref().map_err(Clone::clone)
    }

    #[allow(unsafe_code)]
    fn load(library: &str) -> Result<Self, CheckpointError> {
        // SAFETY: loading the CUDA driver runs its initialisers, which have no
        // preconditions; the symbols are looked up with their documented C
        // signatures and live as long as the library kept beside them.
        unsafe {
            let lib = libloading::Library::new(library).map_err(|e| CheckpointError::NoDriver(e.to_string()))?;
            let symbol =
                |name: &[u8]| lib.get::<CheckpointCall>(name).map(|s| *s).map_err(|_| CheckpointError::Unsupported);
            let lock = symbol(b"cuCheckpointProcessLock\0")?;
            let checkpoint = symbol(b"cuCheckpointProcessCheckpoint\0")?;
            let restore = symbol(b"cuCheckpointProcessRestore\0")?;
            let unlock = symbol(b"cuCheckpointProcessUnlock\0")?;
            let get_state = lib
                .get::<StateCall>(b"cuCheckpointProcessGetState\0")
                .map(|s| *s)
                .map_err(|_| CheckpointError::Unsupported)?;
            let init = lib.get::<InitCall>(b"cuInit\0").map(|s| *s).map_err(|_| CheckpointError::Unsupported)?;
            let code = init(0);
            if code != 0 {
                return Err(CheckpointError::NoDriver(format!("cuInit returned {code}")));
            }
            Ok(Self { _library: lib, lock, checkpoint, restore, unlock, get_state })
        }
    }

    #[allow(unsafe_code)]
    fn call(&self, name: &'static str, f: CheckpointCall, pid: u32, args: &mut Args) -> Result<(), CheckpointError> {
        let Ok(c_pid) = libc::c_int::try_from(pid) else {
            return Err(CheckpointError::Call { call: name, pid, code: -1 });
        };
        // SAFETY: `args` is a live, zero-initialised struct of the size the driver reads.
        let code = unsafe { f(c_pid, args) };
        if code == 0 { Ok(()) } else { Err(CheckpointError::Call { call: name, pid, code }) }
    }

    /// The process's state; `None` for a process without CUDA.
    pub fn state(&self, pid: u32) -> Result<Option<ProcessState>, CheckpointError> {
        let Ok(c_pid) = libc::c_int::try_from(pid) else { return Ok(None) };
        let mut state: libc::c_int = -1;
        #[allow(unsafe_code)]
        // SAFETY: `state` is a live int the driver writes.
        let code = unsafe { (self.get_state)(c_pid, &mut state) };
        match code {
            0 => Ok(Some(match state {
                0 => ProcessState::Running,
                1 => ProcessState::Locked,
                2 => ProcessState::Checkpointed,
                _ => ProcessState::Failed,
            })),
            NOT_SUPPORTED => Ok(None),
            code => Err(CheckpointError::Call { call: "cuCheckpointProcessGetState", pid, code }),
        }
    }

    /// Locks the process (its CUDA calls wait, work in flight finishes within
    /// `lock_timeout_ms`) and moves its device memory to host memory.
    pub fn suspend(&self, pid: u32, lock_timeout_ms: u32) -> Result<(), CheckpointError> {
        self.call(
            "cuCheckpointProcessLock",
            self.lock,
            pid,
            &mut Args { timeout_ms: lock_timeout_ms, ..Args::default() },
        )?;
        if let Err(e) = self.call("cuCheckpointProcessCheckpoint", self.checkpoint, pid, &mut Args::default()) {
            let _ = self.call("cuCheckpointProcessUnlock", self.unlock, pid, &mut Args::default());
            return Err(e);
        }
        Ok(())
    }

    /// Brings the device memory back and lets the process run again.
    pub fn resume(&self, pid: u32) -> Result<(), CheckpointError> {
        self.call("cuCheckpointProcessRestore", self.restore, pid, &mut Args::default())?;
        self.call("cuCheckpointProcessUnlock", self.unlock, pid, &mut Args::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_args_are_the_size_the_driver_reads() {
        assert_eq!(size_of::<Args>(), 64);
    }

    #[test]
    fn a_missing_driver_is_a_clear_error() {
        let err = CudaCheckpoint::load("libcuda-that-is-not-here.so.1").err();
        assert!(matches!(err, Some(CheckpointError::NoDriver(_))), "{err:?}");
        let message = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("stopped to sleep"), "{message}");
    }

    #[test]
    fn a_library_without_the_api_is_unsupported() {
        // libc is a real shared library without any of the driver's symbols.
        let err = CudaCheckpoint::load("libc.so.6").err();
        assert_eq!(err, Some(CheckpointError::Unsupported));
    }
}
