//! Text to phonemes through espeak-ng's library, loaded at run time (the
//! voices were trained on its IPA output, so nothing else will do).
//! espeak-ng keeps global state: one process-wide instance, one caller at a time.
//!
//! The library is `GREENTHREAD_ESPEAK_NG` (a path), else the system's
//! `libespeak-ng.so.1`; its data is `GREENTHREAD_ESPEAK_NG_DATA` (the folder
//! holding `espeak-ng-data`), else the library's own folder where the data
//! sits beside it, else espeak-ng's default.

// A C library loaded at run time: every call crosses the FFI boundary.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::phonemes::{Clause, Terminator};

const LIBRARY_ENV: &str = "GREENTHREAD_ESPEAK_NG";
const DATA_ENV: &str = "GREENTHREAD_ESPEAK_NG_DATA";
const SYSTEM_LIBRARY: &str = "libespeak-ng.so.1";

/// `AUDIO_OUTPUT_SYNCHRONOUS`: no audio device is opened.
const OUTPUT_SYNCHRONOUS: c_int = 2;
/// `espeakCHARS_UTF8`.
const CHARS_UTF8: c_int = 1;
/// `espeakPHONEMES_IPA`.
const PHONEMES_IPA: c_int = 0x02;

type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetVoiceByName = unsafe extern "C" fn(*const c_char) -> c_int;
type TextToPhonemes = unsafe extern "C" fn(*mut *const c_void, c_int, c_int) -> *const c_char;

/// The loaded library and the voice it is set to.
struct Espeak {
    set_voice: SetVoiceByName,
    text_to_phonemes: TextToPhonemes,
    voice: Option<String>,
    /// Kept loaded for the process: the functions above point into it.
    _library: libloading::Library,
}

// SAFETY: espeak-ng is used only under the mutex that holds this value.
unsafe impl Send for Espeak {}

static ESPEAK: OnceLock<Result<Mutex<Espeak>, String>> = OnceLock::new();

/// Loads and initializes espeak-ng once; later calls return the first outcome.
///
/// # Errors
/// A message naming the library that could not be loaded, and how to supply one.
pub fn ready() -> Result<(), String> {
    instance().map(drop)
}

fn instance() -> Result<&'static Mutex<Espeak>, String> {
    ESPEAK.get_or_init(|| load().map(Mutex::new)).as_ref().map_err(Clone::clone)
}

fn load() -> Result<Espeak, String> {
    let library_path = std::env::var_os(LIBRARY_ENV).map(PathBuf::from);
    let shown = library_path.as_deref().map_or_else(|| SYSTEM_LIBRARY.to_owned(), |p| p.display().to_string());
    let advice = format!(
        "text to speech needs espeak-ng's library: install libespeak-ng1, or set {LIBRARY_ENV} to \
         libespeak-ng.so.1 (scripts/espeak-ng.sh --library fetches Debian's)"
    );
    // SAFETY: loading espeak-ng runs no initializers beyond its libraries'.
    let library = unsafe { libloading::Library::new(library_path.as_deref().unwrap_or(Path::new(SYSTEM_LIBRARY))) }
        .map_err(|e| format!("cannot load {shown}: {e}; {advice}"))?;
    let data = std::env::var_os(DATA_ENV).map(PathBuf::from).or_else(|| {
        let beside = library_path.as_deref()?.parent()?;
        beside.join("espeak-ng-data").is_dir().then(|| beside.to_path_buf())
    });
    let data = data
        .map(|d| CString::new(d.to_string_lossy().into_owned()))
        .transpose()
        .map_err(|_| "the espeak-ng data path holds a NUL byte".to_owned())?;
    // SAFETY: the symbols are looked up with espeak-ng's own signatures (speak_lib.h).
    unsafe {
        let symbol = |name: &str| format!("{shown} has no {name}; is it espeak-ng?");
        let initialize = *library.get::<Initialize>(b"espeak_Initialize\0").map_err(|_| symbol("espeak_Initialize"))?;
        let set_voice =
            *library.get::<SetVoiceByName>(b"espeak_SetVoiceByName\0").map_err(|_| symbol("espeak_SetVoiceByName"))?;
        let text_to_phonemes =
            *library.get::<TextToPhonemes>(b"espeak_TextToPhonemes\0").map_err(|_| symbol("espeak_TextToPhonemes"))?;
        let rate = initialize(OUTPUT_SYNCHRONOUS, 0, data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()), 0);
        if rate <= 0 {
            return Err(format!("espeak-ng could not start: is its data ({DATA_ENV}) readable?"));
        }
        Ok(Espeak { set_voice, text_to_phonemes, voice: None, _library: library })
    }
}

/// Whether espeak-ng knows `voice` (e.g. `en-us`).
///
/// # Errors
/// When espeak-ng cannot be loaded.
pub fn has_voice(voice: &str) -> Result<bool, String> {
    let mut espeak = instance()?.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(espeak.select(voice).is_ok())
}

/// The IPA phonemes of `text` spoken by `voice`, clause by clause, with
/// the punctuation that ended each clause.
///
/// # Errors
/// When espeak-ng cannot be loaded, does not know `voice`, or `text` holds a NUL byte.
pub fn clauses(voice: &str, text: &str) -> Result<Vec<Clause>, String> {
    let text = CString::new(text).map_err(|_| "the input holds a NUL character".to_owned())?;
    let mut espeak = instance()?.lock().unwrap_or_else(PoisonError::into_inner);
    espeak.select(voice)?;
    let bytes = text.as_bytes();
    let start = text.as_ptr();
    let mut at: *const c_void = start.cast();
    let mut clauses = Vec::new();
    while !at.is_null() {
        let from = offset(start, at);
        // SAFETY: `at` points into `text`, NUL-terminated and alive; espeak-ng
        // moves it past the clause it read, or sets it to NULL at the end.
        let phonemes = unsafe { (espeak.text_to_phonemes)(&raw mut at, CHARS_UTF8, PHONEMES_IPA) };
        let to = if at.is_null() { bytes.len() } else { offset(start, at) };
        if phonemes.is_null() {
            break;
        }
        // SAFETY: espeak-ng returns a NUL-terminated string it owns until the next call.
        let phonemes = unsafe { CStr::from_ptr(phonemes) }.to_string_lossy().into_owned();
        let read = String::from_utf8_lossy(&bytes[from.min(to)..to]);
        clauses.push(Clause { phonemes, terminator: Terminator::ending(&read, at.is_null()) });
    }
    Ok(clauses)
}

fn offset(start: *const c_char, at: *const c_void) -> usize {
    (at as usize).saturating_sub(start as usize)
}

impl Espeak {
    fn select(&mut self, voice: &str) -> Result<(), String> {
        if self.voice.as_deref() == Some(voice) {
            return Ok(());
        }
        let name = CString::new(voice).map_err(|_| format!("voice {voice:?} holds a NUL byte"))?;
        // SAFETY: a NUL-terminated name; espeak-ng copies what it needs.
        if unsafe { (self.set_voice)(name.as_ptr()) } != 0 {
            return Err(format!("espeak-ng has no voice {voice:?}"));
        }
        self.voice = Some(voice.to_owned());
        Ok(())
    }
}
