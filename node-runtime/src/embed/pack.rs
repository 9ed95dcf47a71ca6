//! A Hugging Face model directory as one file: its `model.safetensors` with
//! the small files beside it (config, tokenizer, pooling) carried in the
//! safetensors header's `__metadata__`. The result is still a valid
//! safetensors file, and the node's tiers move it exactly like a GGUF file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::Value;

/// Files read from a model directory: (path in the directory, required).
pub const DIRECTORY_FILES: &[(&str, bool)] = &[
    ("config.json", true),
    // Required by the models that read text; a voice has none.
    ("tokenizer.json", false),
    ("1_Pooling/config.json", false),
    ("modules.json", false),
    ("sentence_bert_config.json", false),
    // A chat model's special tokens, end-of-turn ids and chat template.
    ("tokenizer_config.json", false),
    ("generation_config.json", false),
    ("chat_template.jinja", false),
];
/// The weights of a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The weights of a model directory whose model is an ONNX graph (a Piper
/// voice): packed as one `U8` tensor of that name, so the file stays safetensors.
pub const ONNX_FILE: &str = "model.onnx";
/// Every weights file a model directory may hold, the one looked for first first.
pub const WEIGHTS_FILES: [&str; 2] = [WEIGHTS_FILE, ONNX_FILE];

/// Prefix of the metadata keys that carry the directory's files.
const KEY_PREFIX: &str = "greenthread.file.";
/// safetensors refuses headers above 100 MB; a tokenizer is a few MB at most.
const MAX_HEADER: u64 = 100 << 20;

fn bad(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads the JSON header of a safetensors file; returns it and where the data starts.
fn read_header(file: &mut File) -> std::io::Result<(serde_json::Map<String, Value>, u64)> {
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(bad(format!("safetensors header of {len} bytes is too large")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)?;
    let json: Value = serde_json::from_slice(&header).map_err(|e| bad(format!("safetensors header: {e}")))?;
    match json {
        Value::Object(map) => Ok((map, 8 + len)),
        _ => Err(bad("safetensors header is not an object")),
    }
}

/// The JSON header of the safetensors file at `path`, where its data
/// starts, and the file's length.
///
/// # Errors
/// When the file cannot be read or is not safetensors.
pub fn header(path: &Path) -> std::io::Result<(serde_json::Map<String, Value>, u64, u64)> {
    let mut file = File::open(path)?;
    let (header, data_start) = read_header(&mut file)?;
    Ok((header, data_start, file.metadata()?.len()))
}

/// Writes `weights` (a safetensors file) with `files` added to its metadata to `out`.
///
/// # Errors
/// When `weights` is not a safetensors file or a file cannot be read or written.
pub fn pack(weights: &Path, files: &BTreeMap<String, String>, out: &Path) -> std::io::Result<()> {
    let mut source = File::open(weights)?;
    let (mut header, data_start) = read_header(&mut source)?;
    let metadata = header.entry("__metadata__").or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Value::Object(metadata) = metadata else { return Err(bad("__metadata__ is not an object")) };
    for (name, text) in files {
        metadata.insert(format!("{KEY_PREFIX}{name}"), Value::String(text.clone()));
    }
    let mut bytes = serde_json::to_vec(&header).map_err(bad)?;
    // Pad with spaces (allowed by the format) so the tensor data stays 8-byte aligned.
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    let mut sink = BufWriter::new(File::create(out)?);
    sink.write_all(&(bytes.len() as u64).to_le_bytes())?;
    sink.write_all(&bytes)?;
    source.seek(SeekFrom::Start(data_start))?;
    std::io::copy(&mut source, &mut sink)?;
    let file = sink.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// Writes the ONNX graph `onnx` as one `U8` tensor named [`ONNX_FILE`],
/// with `files` in the metadata, to `out`.
///
/// # Errors
/// When a file cannot be read or written.
pub fn pack_onnx(onnx: &Path, files: &BTreeMap<String, String>, out: &Path) -> std::io::Result<()> {
    let mut source = File::open(onnx)?;
    let len = source.metadata()?.len();
    let metadata: serde_json::Map<String, Value> =
        files.iter().map(|(name, text)| (format!("{KEY_PREFIX}{name}"), Value::String(text.clone()))).collect();
    let header = serde_json::json!({
        ONNX_FILE: {"dtype": "U8", "shape": [len], "data_offsets": [0, len]},
        "__metadata__": metadata,
    });
    let mut bytes = serde_json::to_vec(&header).map_err(bad)?;
    bytes.resize(bytes.len().next_multiple_of(8), b' ');
    let mut sink = BufWriter::new(File::create(out)?);
    sink.write_all(&(bytes.len() as u64).to_le_bytes())?;
    sink.write_all(&bytes)?;
    std::io::copy(&mut source, &mut sink)?;
    let file = sink.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// The bytes of the tensor `name` in a packed file held in memory.
///
/// # Errors
/// When `bytes` is not safetensors or has no such tensor.
pub fn tensor_bytes<'a>(bytes: &'a [u8], name: &str) -> Result<&'a [u8], String> {
    let len = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).ok_or("file too short")?;
    let start = usize::try_from(len).ok().and_then(|l| l.checked_add(8)).filter(|s| *s <= bytes.len());
    let start = start.ok_or("the safetensors header runs past the file")?;
    let header: Value = serde_json::from_slice(&bytes[8..start]).map_err(|e| format!("safetensors header: {e}"))?;
    let offsets = header[name]["data_offsets"]
        .as_array()
        .and_then(|o| Some((o.first()?.as_u64()?, o.get(1)?.as_u64()?)))
        .ok_or_else(|| format!("the file has no tensor {name}"))?;
    let past = || format!("tensor {name} runs past the file");
    let from = (start as u64).checked_add(offsets.0).ok_or_else(past)?;
    let to = (start as u64).checked_add(offsets.1).ok_or_else(past)?;
    if from > to || to > bytes.len() as u64 {
        return Err(past());
    }
    Ok(&bytes[from as usize..to as usize])
}

/// The directory files a packed file carries, by their path in the
/// directory, and the bytes of tensor data it holds.
///
/// # Errors
/// When the file is not safetensors.
pub fn unpack_files(path: &Path) -> std::io::Result<(BTreeMap<String, String>, u64)> {
    let mut file = File::open(path)?;
    let (header, data_start) = read_header(&mut file)?;
    let data_bytes = file.metadata()?.len().saturating_sub(data_start);
    let Some(Value::Object(metadata)) = header.get("__metadata__") else { return Ok((BTreeMap::new(), data_bytes)) };
    let files = metadata
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(KEY_PREFIX)?.to_owned(), v.as_str()?.to_owned())))
        .collect();
    Ok((files, data_bytes))
}

/// Whether the file at `path` starts like a safetensors file (rather than GGUF).
pub fn is_safetensors(path: &Path) -> bool {
    let mut head = [0u8; 9];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[..4] != b"GGUF" && head[8] == b'{'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_files_come_back_and_the_tensors_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("model.safetensors");
        let t = candle_core::Tensor::arange(0f32, 6.0, &candle_core::Device::Cpu).unwrap().reshape((2, 3)).unwrap();
        candle_core::safetensors::save(&std::collections::HashMap::from([("w".to_owned(), t)]), &weights).unwrap();
        let files = BTreeMap::from([("config.json".to_owned(), "{\"a\": 1}".to_owned())]);
        let packed = dir.path().join("packed");
        pack(&weights, &files, &packed).unwrap();
        assert!(is_safetensors(&packed));
        assert_eq!(unpack_files(&packed).unwrap(), (files, 24));
        let loaded = candle_core::safetensors::load(&packed, &candle_core::Device::Cpu).unwrap();
        assert_eq!(loaded["w"].to_vec2::<f32>().unwrap(), [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]);
    }

    #[test]
    fn an_onnx_graph_packs_as_one_byte_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = dir.path().join(ONNX_FILE);
        std::fs::write(&onnx, b"\x08\x07graph bytes").unwrap();
        let files = BTreeMap::from([("config.json".to_owned(), "{\"audio\": {}}".to_owned())]);
        let packed = dir.path().join("packed");
        pack_onnx(&onnx, &files, &packed).unwrap();
        assert!(is_safetensors(&packed));
        assert_eq!(unpack_files(&packed).unwrap(), (files, 13));
        let bytes = std::fs::read(&packed).unwrap();
        assert_eq!(tensor_bytes(&bytes, ONNX_FILE).unwrap(), b"\x08\x07graph bytes");
        assert!(tensor_bytes(&bytes, "other").is_err());
        assert!(tensor_bytes(&bytes[..20], ONNX_FILE).is_err());
        // Offsets near the top of u64 are refused, not added past it.
        let header = format!(
            r#"{{"{ONNX_FILE}": {{"dtype": "U8", "shape": [1], "data_offsets": [{}, {}]}}}}"#,
            u64::MAX - 2,
            u64::MAX
        );
        let mut hostile = (header.len() as u64).to_le_bytes().to_vec();
        hostile.extend(header.as_bytes());
        assert!(tensor_bytes(&hostile, ONNX_FILE).is_err());
    }
}
