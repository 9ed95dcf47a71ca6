//! Sampling parameters: the raw request and its validated form.

/// A request parameter that is out of range, named as the API names it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ParamError {
    pub param: &'static str,
    pub message: String,
}

impl ParamError {
    pub fn new(param: &'static str, message: impl Into<String>) -> Self {
        Self { param, message: message.into() }
    }
}

/// Sampling parameters as a client sent them; `None` means "use the default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingRequest {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// `0` or a negative value disables top-k, as in vLLM and llama.cpp.
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<i64>,
    /// `logit_bias`: token ids (as the JSON object's keys) and what to add to their logits.
    pub logit_bias: Vec<(String, f32)>,
}

/// Most entries of `logit_bias` one request may give.
pub const MAX_LOGIT_BIAS: usize = 1024;

/// Validated sampling parameters. `temperature == 0` means greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: Option<u32>,
    pub min_p: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub repetition_penalty: f32,
    /// Seed of the request's own random stream; `None` draws a fresh one.
    pub seed: Option<u64>,
    /// Added to the logits of these tokens before sampling (-100 bans a
    /// token, 100 all but forces it), sorted by token id.
    pub logit_bias: Vec<(u32, f32)>,
}

impl SamplingParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

impl Default for SamplingParams {
    /// OpenAI's defaults: temperature 1, top_p 1, no penalties.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            seed: None,
            logit_bias: Vec::new(),
        }
    }
}

fn in_range(param: &'static str, value: Option<f32>, lo: f32, hi: f32) -> Result<Option<f32>, ParamError> {
    match value {
        Some(v) if !v.is_finite() || v < lo || v > hi => {
            Err(ParamError::new(param, format!("{v} is out of range; expected a number from {lo} to {hi}")))
        }
        other => Ok(other),
    }
}

impl SamplingRequest {
    /// Checks every parameter's range and fills in defaults.
    ///
    /// # Errors
    /// The first [`ParamError`] found, naming the parameter.
    pub fn validate(&self) -> Result<SamplingParams, ParamError> {
        let d = SamplingParams::default();
        let top_k = match self.top_k {
            None => None,
            Some(k) if k <= 0 => None,
            Some(k) => Some(u32::try_from(k).map_err(|_| ParamError::new("top_k", "is too large"))?),
        };
        let repetition_penalty = in_range("repetition_penalty", self.repetition_penalty, 0.0, 10.0)?;
        if repetition_penalty == Some(0.0) {
            return Err(ParamError::new("repetition_penalty", "must be greater than 0"));
        }
        if self.logit_bias.len() > MAX_LOGIT_BIAS {
            return Err(ParamError::new("logit_bias", format!("at most {MAX_LOGIT_BIAS} tokens may be biased")));
        }
        let mut logit_bias = Vec::with_capacity(self.logit_bias.len());
        for (token, bias) in &self.logit_bias {
            let id = token.parse::<u32>().map_err(|_| {
                ParamError::new("logit_bias", format!("keys are token ids (non-negative integers); got {token:?}"))
            })?;
            let bias = in_range("logit_bias", Some(*bias), -100.0, 100.0)?.unwrap_or_default();
            logit_bias.push((id, bias));
        }
        logit_bias.sort_by_key(|(id, _)| *id);
        logit_bias.dedup_by_key(|(id, _)| *id);
        Ok(SamplingParams {
            logit_bias,
            temperature: in_range("temperature", self.temperature, 0.0, 2.0)?.unwrap_or(d.temperature),
            top_p: in_range("top_p", self.top_p, 0.0, 1.0)?.unwrap_or(d.top_p),
            top_k,
            min_p: in_range("min_p", self.min_p, 0.0, 1.0)?.unwrap_or(d.min_p),
            presence_penalty: in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?
                .unwrap_or(d.presence_penalty),
            frequency_penalty: in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?
                .unwrap_or(d.frequency_penalty),
            repetition_penalty: repetition_penalty.unwrap_or(d.repetition_penalty),
            // OpenAI documents the seed as an integer; negative seeds are valid
            // there, so keep their bits rather than refuse them.
            seed: self.seed.map(|s| s as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn empty_request_gets_openai_defaults() {
        assert_eq!(SamplingRequest::default().validate(), Ok(SamplingParams::default()));
    }

    #[test]
    fn out_of_range_values_name_their_parameter() {
        let bad = SamplingRequest { temperature: Some(2.5), ..Default::default() };
        assert_eq!(bad.validate().map_err(|e| e.param), Err("temperature"));
        let bad = SamplingRequest { top_p: Some(f32::NAN), ..Default::default() };
        assert_eq!(bad.validate().map_err(|e| e.param), Err("top_p"));
        let bad = SamplingRequest { frequency_penalty: Some(-3.0), ..Default::default() };
        assert_eq!(bad.validate().map_err(|e| e.param), Err("frequency_penalty"));
        let bad = SamplingRequest { repetition_penalty: Some(0.0), ..Default::default() };
        assert_eq!(bad.validate().map_err(|e| e.param), Err("repetition_penalty"));
    }

    #[test]
    fn logit_bias_takes_token_ids_and_biases_in_range() {
        let req = |pairs: &[(&str, f32)]| SamplingRequest {
            logit_bias: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            ..Default::default()
        };
        assert_eq!(req(&[("7", -100.0), ("3", 5.5)]).validate().map(|p| p.logit_bias), Ok(vec![(3, 5.5), (7, -100.0)]));
        for bad in [req(&[("x", 1.0)]), req(&[("-1", 1.0)]), req(&[("1", 101.0)]), req(&[("1", f32::NAN)])] {
            assert_eq!(bad.validate().map_err(|e| e.param), Err("logit_bias"));
        }
        let many: Vec<(String, f32)> = (0..=MAX_LOGIT_BIAS).map(|i| (i.to_string(), 1.0)).collect();
        let too_many = SamplingRequest { logit_bias: many, ..Default::default() };
        assert_eq!(too_many.validate().map_err(|e| e.param), Err("logit_bias"));
    }

    #[test]
    fn non_positive_top_k_disables_it() {
        for k in [0, -1] {
            let req = SamplingRequest { top_k: Some(k), ..Default::default() };
            assert_eq!(req.validate().map(|p| p.top_k), Ok(None));
        }
        let req = SamplingRequest { top_k: Some(40), ..Default::default() };
        assert_eq!(req.validate().map(|p| p.top_k), Ok(Some(40)));
    }

    proptest! {
        #[test]
        fn validated_parameters_are_always_in_range(
            t in proptest::option::of(-5.0f32..5.0),
            p in proptest::option::of(-1.0f32..2.0),
            pp in proptest::option::of(-4.0f32..4.0),
        ) {
            let req = SamplingRequest { temperature: t, top_p: p, presence_penalty: pp, ..Default::default() };
            if let Ok(v) = req.validate() {
                prop_assert!((0.0..=2.0).contains(&v.temperature));
                prop_assert!((0.0..=1.0).contains(&v.top_p));
                prop_assert!((-2.0..=2.0).contains(&v.presence_penalty));
            }
        }
    }
}
