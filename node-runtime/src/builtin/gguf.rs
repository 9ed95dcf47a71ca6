//! Typed access to GGUF metadata, with errors that name the missing key.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use crate::tokenizer::{TokenType, TokenizerSpec};

/// A GGUF file's metadata, read for one architecture.
pub struct Metadata<'a> {
    map: &'a HashMap<String, Value>,
    arch: String,
}

type MetaResult<T> = Result<T, String>;

impl<'a> Metadata<'a> {
    /// # Errors
    /// When `general.architecture` is missing or not a string.
    pub fn new(map: &'a HashMap<String, Value>) -> MetaResult<Self> {
        let arch = match map.get("general.architecture") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err("missing general.architecture".into()),
        };
        Ok(Self { map, arch })
    }

    pub fn architecture(&self) -> &str {
        &self.arch
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    /// `{architecture}.{suffix}`, e.g. `qwen2.block_count`.
    pub fn arch_key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    pub fn opt_u64(&self, key: &str) -> MetaResult<Option<u64>> {
        Ok(match self.get(key) {
            None => None,
            Some(v) => Some(match v {
                Value::U8(x) => u64::from(*x),
                Value::U16(x) => u64::from(*x),
                Value::U32(x) => u64::from(*x),
                Value::U64(x) => *x,
                Value::I8(x) if *x >= 0 => *x as u64,
                Value::I16(x) if *x >= 0 => *x as u64,
                Value::I32(x) if *x >= 0 => *x as u64,
                Value::I64(x) if *x >= 0 => *x as u64,
                other => {
                    return Err(format!("{key} should be a non-negative integer, found {other:?}"));
                }
            }),
        })
    }

    pub fn usize(&self, key: &str) -> MetaResult<usize> {
        self.opt_u64(key)?.map(|v| v as usize).ok_or_else(|| format!("missing {key}"))
    }

    pub fn opt_usize(&self, key: &str) -> MetaResult<Option<usize>> {
        Ok(self.opt_u64(key)?.map(|v| v as usize))
    }

    pub fn opt_u32(&self, key: &str) -> MetaResult<Option<u32>> {
        self.opt_u64(key)?.map(|v| u32::try_from(v).map_err(|_| format!("{key} is too large"))).transpose()
    }

    pub fn opt_f32(&self, key: &str) -> MetaResult<Option<f32>> {
        Ok(match self.get(key) {
            None => None,
            Some(Value::F32(x)) => Some(*x),
            Some(Value::F64(x)) => Some(*x as f32),
            Some(other) => return Err(format!("{key} should be a float, found {other:?}")),
        })
    }

    pub fn opt_bool(&self, key: &str) -> MetaResult<Option<bool>> {
        Ok(match self.get(key) {
            None => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => return Err(format!("{key} should be a boolean, found {other:?}")),
        })
    }

    pub fn opt_str(&self, key: &str) -> MetaResult<Option<&'a str>> {
        Ok(match self.map.get(key) {
            None => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                return Err(format!("{key} should be a string, found {:?}", other.value_type()));
            }
        })
    }

    fn array(&self, key: &str) -> MetaResult<Option<&'a Vec<Value>>> {
        Ok(match self.map.get(key) {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(other) => {
                return Err(format!("{key} should be an array, found {:?}", other.value_type()));
            }
        })
    }

    pub fn str_array(&self, key: &str) -> MetaResult<Option<Vec<String>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{key} should hold strings, found {:?}", other.value_type())),
            })
            .collect::<MetaResult<Vec<_>>>()
            .map(Some)
    }

    pub fn f32_array(&self, key: &str) -> MetaResult<Option<Vec<f32>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::F32(x) => Ok(*x),
                Value::F64(x) => Ok(*x as f32),
                other => Err(format!("{key} should hold floats, found {:?}", other.value_type())),
            })
            .collect::<MetaResult<Vec<_>>>()
            .map(Some)
    }

    pub fn i32_array(&self, key: &str) -> MetaResult<Option<Vec<i32>>> {
        let Some(items) = self.array(key)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| match v {
                Value::I32(x) => Ok(*x),
                Value::U32(x) => i32::try_from(*x).map_err(|_| format!("{key} value {x} is too large")),
                Value::I8(x) => Ok(i32::from(*x)),
                Value::U8(x) => Ok(i32::from(*x)),
                other => Err(format!("{key} should hold integers, found {:?}", other.value_type())),
            })
            .collect::<MetaResult<Vec<_>>>()
            .map(Some)
    }

    /// Everything the tokenizer needs.
    pub fn tokenizer_spec(&self) -> MetaResult<TokenizerSpec> {
        Ok(TokenizerSpec {
            model: self.opt_str("tokenizer.ggml.model")?.ok_or("missing tokenizer.ggml.model")?.to_owned(),
            pre: self.opt_str("tokenizer.ggml.pre")?.map(str::to_owned),
            tokens: self.str_array("tokenizer.ggml.tokens")?.ok_or("missing tokenizer.ggml.tokens")?,
            token_types: self
                .i32_array("tokenizer.ggml.token_type")?
                .unwrap_or_default()
                .into_iter()
                .map(TokenType::from_gguf)
                .collect(),
            scores: self.f32_array("tokenizer.ggml.scores")?.unwrap_or_default(),
            merges: self.str_array("tokenizer.ggml.merges")?.unwrap_or_default(),
            bos: self.opt_u32("tokenizer.ggml.bos_token_id")?,
            eos: self.opt_u32("tokenizer.ggml.eos_token_id")?,
            eot: self.opt_u32("tokenizer.ggml.eot_token_id")?,
            unknown: self.opt_u32("tokenizer.ggml.unknown_token_id")?,
            // llama.cpp adds BOS for SentencePiece vocabularies unless told otherwise.
            add_bos: self
                .opt_bool("tokenizer.ggml.add_bos_token")?
                .unwrap_or(self.opt_str("tokenizer.ggml.model")? == Some("llama")),
            add_space_prefix: self
                .opt_bool("tokenizer.ggml.add_space_prefix")?
                .unwrap_or(self.opt_str("tokenizer.ggml.model")? == Some("llama")),
        })
    }
}
