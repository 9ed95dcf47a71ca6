//! Which engine serves a model: the builtin one, or an OpenAI-compatible
//! server that a node runs as a process — llama.cpp's `llama-server`, vLLM,
//! SGLang (presets: a binary and extra flags), or any command. Pure: what
//! to run and how to tell it is ready; the node spawns and supervises it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, duration_serde};

/// How long an engine may take to answer its health path, unless the spec says.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest readiness wait a spec may ask for.
pub const MAX_READY_TIMEOUT: Duration = Duration::from_secs(3600);

/// The placeholders an engine's command line may use, filled on the node.
pub const PLACEHOLDERS: [&str; 4] = ["{artifact}", "{host}", "{port}", "{model}"];

/// The engine that serves a model (`kind` in documents).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EngineSpec {
    /// GreenThread's own engine, in the node's process.
    #[default]
    Builtin,
    /// llama.cpp's `llama-server`.
    LlamaServer(Preset),
    /// vLLM's `vllm serve`.
    Vllm(Preset),
    /// SGLang's server (`binary` is the Python that has SGLang installed).
    Sglang(Preset),
    /// Any OpenAI-compatible server, started by `argv`.
    Command(CommandEngine),
}

/// How an external engine gives its device memory back while its model sleeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SleepMode {
    /// A CUDA checkpoint of the process where the node's driver has one
    /// (the process lives on with no device memory), else stop it.
    #[default]
    Auto,
    /// Stop the process; waking starts it again.
    Stop,
    /// The engine's own sleep endpoints (vLLM's `/sleep?level=1`, `/wake_up`).
    Engine,
}

impl SleepMode {
    fn is_auto(&self) -> bool {
        *self == Self::Auto
    }
}

/// An engine GreenThread knows how to start: the binary and flags of one's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    /// Absolute path of the program on the node.
    pub binary: PathBuf,
    /// Flags after the ones the preset writes (placeholders allowed).
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "SleepMode::is_auto")]
    pub sleep: SleepMode,
    /// Device memory the engine may hold; vLLM and SGLang are told their
    /// share of the GPU, and admission counts it before the engine is measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_memory: Option<ByteSize>,
}

/// A server started by a command line of the user's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandEngine {
    /// The program (an absolute path) and its arguments.
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The GET path that answers 200 once the server is ready.
    #[serde(default = "default_health")]
    pub health: String,
    #[serde(default, with = "optional_duration", skip_serializing_if = "Option::is_none")]
    pub ready_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "SleepMode::is_auto")]
    pub sleep: SleepMode,
    /// Device memory the engine holds, counted by admission until measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_memory: Option<ByteSize>,
}

fn default_health() -> String {
    "/health".to_owned()
}

/// What a node runs for an external engine, placeholders still unfilled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub health: String,
    pub ready_timeout: Duration,
    pub sleep: SleepMode,
    pub device_memory: Option<ByteSize>,
    /// The engine's flag for the share of the GPU it may take, when it has one.
    pub memory_share_flag: Option<&'static str>,
}

/// What the placeholders stand for on one node, for one start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholders<'a> {
    /// The staged artifact's local path.
    pub artifact: &'a Path,
    pub host: &'a str,
    pub port: u16,
    pub model: &'a str,
    /// The device's total memory, where the node has a GPU.
    pub device_total: Option<u64>,
}

/// Why an engine spec is refused, naming the field (`engine.argv[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EngineError {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> EngineError {
    EngineError { field: field.into(), message: message.into() }
}

/// Sequences the builtin engine generates at once by default. Decoding is
/// bound by reading the weights, so batching more sequences into each pass
/// is nearly free until the matrix kernels become compute bound.
pub const DEFAULT_BUILTIN_SEQUENCES: u32 = 16;

impl EngineSpec {
    /// Whether a process outside the node serves the model.
    pub fn is_external(&self) -> bool {
        !self.is_builtin()
    }

    pub fn is_builtin(&self) -> bool {
        matches!(self, Self::Builtin)
    }

    /// The name of its kind, as documents write it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::LlamaServer(_) => "llama-server",
            Self::Vllm(_) => "vllm",
            Self::Sglang(_) => "sglang",
            Self::Command(_) => "command",
        }
    }

    /// Sequences one replica runs at once unless the spec says: the
    /// builtin engine's batch, llama-server's default slots, vLLM's and
    /// SGLang's default running-request limits.
    pub fn default_concurrency(&self) -> u32 {
        match self {
            Self::Builtin | Self::Command(_) => DEFAULT_BUILTIN_SEQUENCES,
            Self::LlamaServer(_) => 4,
            Self::Vllm(_) | Self::Sglang(_) => 256,
        }
    }

    /// The process to run, for an external engine.
    pub fn launch(&self) -> Option<Launch> {
        let preset = |p: &Preset, flags: &[&str]| {
            let mut argv = vec![p.binary.display().to_string()];
            argv.extend(flags.iter().map(|f| (*f).to_owned()));
            argv.extend(p.args.iter().cloned());
            Launch {
                argv,
                env: p.env.clone(),
                health: default_health(),
                ready_timeout: p.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
                sleep: p.sleep,
                device_memory: p.device_memory,
                memory_share_flag: None,
            }
        };
        match self {
            Self::Builtin => None,
            Self::LlamaServer(p) => {
                Some(preset(p, &["-m", "{artifact}", "--host", "{host}", "--port", "{port}", "--alias", "{model}"]))
            }
            Self::Vllm(p) => {
                let mut launch = preset(
                    p,
                    &["serve", "{artifact}", "--host", "{host}", "--port", "{port}", "--served-model-name", "{model}"],
                );
                launch.memory_share_flag = Some("--gpu-memory-utilization");
                if p.sleep == SleepMode::Engine {
                    // vLLM serves /sleep and /wake_up only in its development mode.
                    launch.argv.push("--enable-sleep-mode".to_owned());
                    launch.env.entry("VLLM_SERVER_DEV_MODE".to_owned()).or_insert_with(|| "1".to_owned());
                }
                Some(launch)
            }
            Self::Sglang(p) => Some(preset(
                p,
                &[
                    "-m",
                    "sglang.launch_server",
                    "--model-path",
                    "{artifact}",
                    "--host",
                    "{host}",
                    "--port",
                    "{port}",
                    "--served-model-name",
                    "{model}",
                ],
            ))
            .map(|mut launch| {
                launch.memory_share_flag = Some("--mem-fraction-static");
                launch
            }),
            Self::Command(c) => Some(Launch {
                argv: c.argv.clone(),
                env: c.env.clone(),
                health: c.health.clone(),
                ready_timeout: c.ready_timeout.unwrap_or(DEFAULT_READY_TIMEOUT),
                sleep: c.sleep,
                device_memory: c.device_memory,
                memory_share_flag: None,
            }),
        }
    }

    /// Checks what a node will run: an absolute program, known placeholders
    /// only, `{host}` and `{port}` present (the node picks where the engine
    /// listens), a health path, a sane environment and readiness wait.
    ///
    /// # Errors
    /// Every problem found, each naming its field under `engine`.
    pub fn validate(&self) -> Result<(), Vec<EngineError>> {
        let Some(launch) = self.launch() else { return Ok(()) };
        let mut errors = Vec::new();
        let program_field = match self {
            Self::Command(_) => "engine.argv[0]",
            _ => "engine.binary",
        };
        match launch.argv.first() {
            None => errors.push(refuse("engine.argv", "must name a program")),
            Some(program) if !Path::new(program).is_absolute() || program.contains('{') => {
                errors.push(refuse(program_field, format!("{program:?} must be an absolute path")));
            }
            Some(_) => {}
        }
        let args_field = |i: usize| match self {
            Self::Command(_) => format!("engine.argv[{i}]"),
            _ => "engine.args".to_owned(),
        };
        for (i, arg) in launch.argv.iter().enumerate() {
            if arg.contains('\0') {
                errors.push(refuse(args_field(i), "must not contain NUL"));
            }
            if let Some(unknown) = unknown_placeholder(arg) {
                errors.push(refuse(
                    args_field(i),
                    format!("{unknown} is not a placeholder (known: {})", PLACEHOLDERS.join(", ")),
                ));
            }
        }
        for needed in ["{host}", "{port}"] {
            if !launch.argv.iter().any(|a| a.contains(needed)) {
                errors
                    .push(refuse("engine.argv", format!("must use {needed}: the node picks where the engine listens")));
            }
        }
        if !launch.health.starts_with('/') || launch.health.contains(char::is_whitespace) {
            errors.push(refuse("engine.health", "must be a path starting with '/'"));
        }
        for (key, value) in &launch.env {
            let bad_key = key.is_empty() || key.contains(['=', '\0']);
            if bad_key || value.contains('\0') {
                errors.push(refuse(format!("engine.env.{key}"), "names and values need no '=' in the name and no NUL"));
            }
        }
        if launch.ready_timeout.is_zero() || launch.ready_timeout > MAX_READY_TIMEOUT {
            errors.push(refuse("engine.ready_timeout", "must be more than 0s and at most 1h"));
        }
        if launch.sleep == SleepMode::Engine && !matches!(self, Self::Vllm(_)) {
            errors.push(refuse("engine.sleep", "`engine` sleep is vLLM's own; use auto or stop"));
        }
        if launch.device_memory.is_some_and(|m| m.bytes() == 0) {
            errors.push(refuse("engine.device_memory", "must be more than 0 bytes"));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// The first `{…}` in `arg` that is not one of [`PLACEHOLDERS`].
fn unknown_placeholder(arg: &str) -> Option<&str> {
    let mut rest = arg;
    while let Some(open) = rest.find('{') {
        let len = rest[open..].find('}')?;
        let candidate = &rest[open..=open + len];
        if !PLACEHOLDERS.contains(&candidate) {
            return Some(candidate);
        }
        rest = &rest[open + len + 1..];
    }
    None
}

impl Launch {
    /// The command line with its placeholders filled, and the engine's
    /// share of the GPU when its memory is declared and the node has one.
    pub fn render(&self, values: &Placeholders<'_>) -> Vec<String> {
        let artifact = values.artifact.display().to_string();
        let port = values.port.to_string();
        let mut argv: Vec<String> = self
            .argv
            .iter()
            .map(|arg| {
                arg.replace("{artifact}", &artifact)
                    .replace("{host}", values.host)
                    .replace("{port}", &port)
                    .replace("{model}", values.model)
            })
            .collect();
        if let (Some(flag), Some(share)) = (self.memory_share_flag, self.gpu_share(values.device_total))
            && !argv.iter().any(|a| a == flag)
        {
            argv.push(flag.to_owned());
            argv.push(format!("{share:.3}"));
        }
        argv
    }

    /// The declared device memory as a share of the GPU's, at most all of it.
    pub fn gpu_share(&self, device_total: Option<u64>) -> Option<f64> {
        let total = device_total.filter(|t| *t > 0)?;
        let wanted = self.device_memory?.bytes();
        Some((wanted as f64 / total as f64).min(1.0))
    }
}

/// An optional duration written as `120s`, `5m`.
mod optional_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_serde::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let raw = Option::<String>::deserialize(d)?;
        raw.map(|r| crate::units::parse_duration(&r).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> EngineSpec {
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fields(spec: &EngineSpec) -> Vec<String> {
        spec.validate().err().unwrap_or_default().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn the_default_is_builtin_and_runs_nothing() {
        assert_eq!(EngineSpec::default(), EngineSpec::Builtin);
        assert_eq!(spec(json!({"kind": "builtin"})).launch(), None);
        assert!(!EngineSpec::Builtin.is_external());
    }

    #[test]
    fn presets_write_the_engines_own_command_lines() {
        let llama = spec(json!({"kind": "llama-server", "binary": "/opt/llama-server", "args": ["-c", "2048"]}));
        let launch = llama.launch().unwrap_or_else(|| panic!("an external engine"));
        let values = Placeholders {
            artifact: Path::new("/cache/q.gguf"),
            host: "127.0.0.1",
            port: 41000,
            model: "q",
            device_total: None,
        };
        assert_eq!(
            launch.render(&values),
            [
                "/opt/llama-server",
                "-m",
                "/cache/q.gguf",
                "--host",
                "127.0.0.1",
                "--port",
                "41000",
                "--alias",
                "q",
                "-c",
                "2048"
            ]
        );
        assert_eq!((launch.health.as_str(), launch.ready_timeout), ("/health", DEFAULT_READY_TIMEOUT));
        let vllm = spec(json!({"kind": "vllm", "binary": "/venv/bin/vllm", "ready_timeout": "10m"}));
        let launch = vllm.launch().unwrap_or_else(|| panic!("an external engine"));
        assert_eq!(&launch.render(&values)[..3], ["/venv/bin/vllm", "serve", "/cache/q.gguf"]);
        assert_eq!(launch.ready_timeout, Duration::from_secs(600));
        let sglang = spec(json!({"kind": "sglang", "binary": "/venv/bin/python"}));
        assert!(
            sglang.launch().unwrap_or_else(|| panic!("external")).argv.contains(&"sglang.launch_server".to_owned())
        );
        for s in [llama, vllm, sglang] {
            assert_eq!(s.validate(), Ok(()), "{s:?}");
        }
    }

    #[test]
    fn a_command_is_checked_field_by_field() {
        let ok = spec(json!({"kind": "command", "argv": ["/usr/bin/srv", "--port", "{port}", "--host", "{host}"]}));
        assert_eq!(ok.validate(), Ok(()));
        let relative = spec(json!({"kind": "command", "argv": ["srv", "{host}:{port}"]}));
        assert_eq!(fields(&relative), ["engine.argv[0]"]);
        let unknown = spec(json!({"kind": "command", "argv": ["/srv", "{host}:{port}", "{weights}"]}));
        assert_eq!(fields(&unknown), ["engine.argv[2]"]);
        let no_port = spec(json!({"kind": "command", "argv": ["/srv", "--host", "{host}"]}));
        assert_eq!(fields(&no_port), ["engine.argv"]);
        let bad = spec(json!({"kind": "command", "argv": ["/srv", "{host}:{port}"], "health": "health",
                              "env": {"A=B": "x"}, "ready_timeout": "2h"}));
        assert_eq!(fields(&bad), ["engine.health", "engine.env.A=B", "engine.ready_timeout"]);
        let relative_binary = spec(json!({"kind": "vllm", "binary": "vllm"}));
        assert_eq!(fields(&relative_binary), ["engine.binary"]);
    }

    #[test]
    fn declared_memory_becomes_the_engines_share_of_the_gpu() {
        let vllm = spec(json!({"kind": "vllm", "binary": "/v/vllm", "device_memory": "20GiB", "sleep": "engine"}));
        assert_eq!(vllm.validate(), Ok(()));
        let launch = vllm.launch().unwrap_or_else(|| panic!("external"));
        assert_eq!(launch.env.get("VLLM_SERVER_DEV_MODE").map(String::as_str), Some("1"));
        let values = Placeholders {
            artifact: Path::new("/m"),
            host: "127.0.0.1",
            port: 1,
            model: "m",
            device_total: Some(80 << 30),
        };
        let argv = launch.render(&values);
        let at = argv.iter().position(|a| a == "--gpu-memory-utilization").unwrap_or_else(|| panic!("{argv:?}"));
        assert_eq!(argv[at + 1], "0.250");
        assert!(argv.contains(&"--enable-sleep-mode".to_owned()));
        let cpu = Placeholders { device_total: None, ..values };
        assert!(!launch.render(&cpu).contains(&"--gpu-memory-utilization".to_owned()), "no GPU, no share");
        let llama = spec(json!({"kind": "llama-server", "binary": "/l", "sleep": "engine"}));
        assert_eq!(fields(&llama), ["engine.sleep"]);
        let zero = spec(json!({"kind": "command", "argv": ["/s", "{host}:{port}"], "device_memory": 0}));
        assert_eq!(fields(&zero), ["engine.device_memory"]);
    }

    #[test]
    fn documents_that_are_not_engines_do_not_parse() {
        for bad in [
            json!({"kind": "ollama"}),
            json!({"kind": "command", "argv": "/usr/bin/srv --port {port}"}),
            json!({"kind": "vllm"}),
            json!({"kind": "vllm", "binary": "/v", "flags": []}),
        ] {
            assert!(serde_json::from_value::<EngineSpec>(bad.clone()).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn rendering_leaves_no_placeholder_and_keeps_the_arguments_apart(
            args in proptest::collection::vec("[a-z{}/ -]{0,12}", 0..6),
            port in 1u16..,
            model in "[a-z0-9-]{1,12}",
        ) {
            let engine = EngineSpec::LlamaServer(Preset {
                binary: PathBuf::from("/bin/llama-server"),
                args: args.clone(),
                env: BTreeMap::new(),
                ready_timeout: None,
                sleep: SleepMode::Auto,
                device_memory: None,
            });
            let launch = engine.launch().unwrap_or_else(|| panic!("external"));
            let values = Placeholders {
                artifact: Path::new("/a/m.gguf"),
                host: "127.0.0.1",
                port,
                model: &model,
                device_total: None,
            };
            let rendered = launch.render(&values);
            prop_assert_eq!(rendered.len(), 9 + args.len(), "one argument stays one argument");
            for arg in &rendered {
                for p in PLACEHOLDERS {
                    prop_assert!(!arg.contains(p), "{} left in {}", p, arg);
                }
            }
            prop_assert!(rendered.contains(&port.to_string()));
        }
    }
}
