//! Request validation for `/v1/chat/completions` and `/v1/completions`: reads the JSON object field by field so every
//! error names its `param` and uses OpenAI's codes (`missing_required_parameter`, `invalid_type`,
//! `decimal_above_max_value`, ...), and maps the sampling fields to the protocol's integer units.
//!
//! Unknown fields are ignored and `null` means absent, as with OpenAI and vLLM. Features the verifiable program cannot
//! honour (penalties, logit bias, tools, `echo`, `best_of`, several prompts per request) are rejected with a 400 naming
//! the field rather than silently ignored. Logprobs (chat `logprobs` + `top_logprobs` 0..=20, completions
//! `logprobs` 0..=5) become [`GenerationRequest::logprobs`].

use crate::error::ApiError;
use crate::ids::RequestKind;
use serde_json::{Map, Value};
use std::borrow::Cow;
use vir::tokenizer::ChatMessage;

/// Largest `n`.
pub const MAX_N: u32 = 128;

/// Most stop strings.
pub const MAX_STOP: usize = 4;

/// Default `max_tokens` of `/v1/completions` (chat defaults to the rest of the context).
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// Roles accepted in `messages`.
pub const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// The prompt of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// Chat messages, rendered with the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Completion text.
    Text(String),
    /// Completion token ids.
    Tokens(Vec<u32>),
}

/// A validated generation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationRequest {
    /// Endpoint.
    pub kind: RequestKind,
    /// Requested model id.
    pub model: String,
    /// Prompt.
    pub prompt: Prompt,
    /// Choices.
    pub n: u32,
    /// `max_completion_tokens`, else `max_tokens`; `None` = default of the endpoint.
    pub max_tokens: Option<u32>,
    /// Temperature × 1000, rounded.
    pub temperature_milli: u32,
    /// Top-p × 1000, rounded, at least 1.
    pub top_p_milli: u32,
    /// Seed (`None`: the sequencer draws one).
    pub seed: Option<u64>,
    /// Stop strings (non-empty ones only).
    pub stop: Vec<String>,
    /// SSE streaming.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Logprobs asked for: `None` = none; `Some(k)` = each token's logprob and its `k` most likely alternatives
    /// (chat `top_logprobs`, completions `logprobs`).
    pub logprobs: Option<u8>,
}

/// Reads typed fields of a JSON object, naming each failure.
struct Fields<'a, 'p> {
    map: &'a Map<String, Value>,
    prefix: &'p str,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn invalid_type(param: String, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            type_name(got)
        ),
        Some(Cow::Owned(param)),
        Some("invalid_type"),
    )
}

fn missing(param: String) -> ApiError {
    ApiError::invalid(
        format!("Missing required parameter: '{param}'."),
        Some(Cow::Owned(param)),
        Some("missing_required_parameter"),
    )
}

fn unsupported(param: &str, why: &str) -> ApiError {
    ApiError::invalid(
        format!("Unsupported value for '{param}': {why}"),
        Some(Cow::Owned(param.to_string())),
        Some("unsupported_value"),
    )
}

/// Formats a number for messages without a trailing `.0` on integers.
fn show(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl<'a> Fields<'a, '_> {
    fn param(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// The value, `None` when absent or null.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(invalid_type(self.param(name), "a boolean", v)),
        }
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(invalid_type(self.param(name), "a string", v)),
        }
    }

    /// A number in `min..=max` (`min_exclusive`: `min < x`).
    fn decimal(
        &self,
        name: &str,
        min: f64,
        min_exclusive: bool,
        max: f64,
    ) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let Some(x) = v.as_f64().filter(|_| v.is_number()) else {
            return Err(invalid_type(self.param(name), "a decimal", v));
        };
        let param = self.param(name);
        if x < min || (min_exclusive && x == min) {
            let op = if min_exclusive { ">" } else { ">=" };
            return Err(ApiError::invalid(
                format!(
                    "Invalid '{param}': decimal below minimum value. Expected a value {op} {}, but got {} instead.",
                    show(min),
                    show(x)
                ),
                Some(Cow::Owned(param)),
                Some("decimal_below_min_value"),
            ));
        }
        if x > max {
            return Err(ApiError::invalid(
                format!(
                    "Invalid '{param}': decimal above maximum value. Expected a value <= {}, but got {} instead.",
                    show(max),
                    show(x)
                ),
                Some(Cow::Owned(param)),
                Some("decimal_above_max_value"),
            ));
        }
        Ok(Some(x))
    }

    /// An integer in `min..=max`.
    fn integer(&self, name: &str, min: i128, max: i128) -> Result<Option<i128>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let param = self.param(name);
        let x = integer_value(v).ok_or_else(|| invalid_type(param.clone(), "an integer", v))?;
        if x < min {
            return Err(ApiError::invalid(
                format!(
                    "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {x} instead."
                ),
                Some(Cow::Owned(param)),
                Some("integer_below_min_value"),
            ));
        }
        if x > max {
            return Err(ApiError::invalid(
                format!(
                    "Invalid '{param}': integer above maximum value. Expected a value <= {max}, but got {x} instead."
                ),
                Some(Cow::Owned(param)),
                Some("integer_above_max_value"),
            ));
        }
        Ok(Some(x))
    }
}

/// A JSON integer (not a decimal) as `i128`.
fn integer_value(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

/// The request object, or a 400 naming what the body was instead.
pub fn as_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::invalid(
            format!(
                "Invalid request body: expected a JSON object, but got {} instead.",
                type_name(body)
            ),
            None,
            Some("invalid_type"),
        )
    })
}

/// Validates a `/v1/chat/completions` body.
pub fn parse_chat(body: &Value) -> Result<GenerationRequest, ApiError> {
    let map = as_object(body)?;
    let f = Fields { map, prefix: "" };
    let model = parse_model(&f)?;
    let messages = parse_messages(&f)?;
    let wanted = f.bool("logprobs")?.unwrap_or(false);
    let top = f.integer("top_logprobs", 0, 20)?;
    if let Some(top) = top
        && top > 0
        && !wanted
    {
        return Err(ApiError::invalid(
            "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is used.",
            Some(Cow::Borrowed("top_logprobs")),
            Some("invalid_value"),
        ));
    }
    // Bounded by the range check.
    let logprobs = wanted.then(|| top.unwrap_or(0) as u8);
    for name in ["tools", "functions"] {
        if let Some(v) = f.get(name) {
            match v {
                Value::Array(a) if a.is_empty() => {}
                Value::Array(_) => {
                    return Err(unsupported(
                        name,
                        "tool and function calling are not supported by this server.",
                    ));
                }
                other => return Err(invalid_type(name.to_string(), "an array", other)),
            }
        }
    }
    if let Some(v) = f.get("response_format") {
        let fmt = v
            .as_object()
            .ok_or_else(|| invalid_type("response_format".into(), "an object", v))?;
        let rf = Fields {
            map: fmt,
            prefix: "response_format",
        };
        match rf.string("type")? {
            None | Some("text") => {}
            Some(_) => {
                return Err(unsupported(
                    "response_format",
                    "only {\"type\": \"text\"} is supported.",
                ));
            }
        }
    }
    let max_tokens = match f.integer("max_completion_tokens", 1, i128::from(u32::MAX))? {
        Some(v) => Some(v),
        None => f.integer("max_tokens", 1, i128::from(u32::MAX))?,
    };
    common(
        &f,
        RequestKind::Chat,
        model,
        Prompt::Chat(messages),
        max_tokens,
        logprobs,
    )
}

/// Validates a `/v1/completions` body.
pub fn parse_completion(body: &Value) -> Result<GenerationRequest, ApiError> {
    let map = as_object(body)?;
    let f = Fields { map, prefix: "" };
    let model = parse_model(&f)?;
    let prompt = parse_prompt(&f)?;
    // Bounded by the range check.
    let logprobs = f.integer("logprobs", 0, 5)?.map(|k| k as u8);
    if f.bool("echo")?.unwrap_or(false) {
        return Err(unsupported("echo", "echo is not supported by this server."));
    }
    if let Some(s) = f.string("suffix")?
        && !s.is_empty()
    {
        return Err(unsupported(
            "suffix",
            "suffix is not supported by this server.",
        ));
    }
    let max_tokens = f.integer("max_tokens", 1, i128::from(u32::MAX))?;
    let request = common(
        &f,
        RequestKind::Completion,
        model,
        prompt,
        max_tokens,
        logprobs,
    )?;
    if let Some(best_of) = f.integer("best_of", 1, i128::from(MAX_N))?
        && best_of != i128::from(request.n)
    {
        return Err(unsupported(
            "best_of",
            "best_of must equal n (ranking choices is not supported).",
        ));
    }
    Ok(request)
}

fn parse_model(f: &Fields<'_, '_>) -> Result<String, ApiError> {
    match f.string("model")? {
        Some(m) => Ok(m.to_string()),
        None => Err(missing("model".into())),
    }
}

fn parse_messages(f: &Fields<'_, '_>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(v) = f.get("messages") else {
        return Err(missing("messages".into()));
    };
    let Value::Array(items) = v else {
        return Err(invalid_type("messages".into(), "an array", v));
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array \
             instead.",
            Some(Cow::Borrowed("messages")),
            Some("empty_array"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_message(i, item))
        .collect()
}

fn parse_message(i: usize, item: &Value) -> Result<ChatMessage, ApiError> {
    let prefix = format!("messages[{i}]");
    let Value::Object(map) = item else {
        return Err(invalid_type(prefix, "an object", item));
    };
    let f = Fields {
        map,
        prefix: &prefix,
    };
    let role = f.string("role")?.ok_or_else(|| missing(f.param("role")))?;
    if !ROLES.contains(&role) {
        return Err(ApiError::invalid(
            format!(
                "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', \
                 and 'developer'."
            ),
            Some(Cow::Owned(f.param("role"))),
            Some("invalid_value"),
        ));
    }
    let content = match f.get("content") {
        None if role == "assistant" => String::new(),
        None => return Err(missing(f.param("content"))),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let part_param = format!("{prefix}.content[{j}]");
                let Value::Object(pm) = part else {
                    return Err(invalid_type(part_param, "an object", part));
                };
                let pf = Fields {
                    map: pm,
                    prefix: &part_param,
                };
                match pf.string("type")? {
                    Some("text") => {}
                    Some(other) => {
                        return Err(unsupported(
                            &pf.param("type"),
                            &format!(
                                "content parts of type '{other}' are not supported; only 'text' is."
                            ),
                        ));
                    }
                    None => return Err(missing(pf.param("type"))),
                }
                let text = pf
                    .string("text")?
                    .ok_or_else(|| missing(pf.param("text")))?;
                texts.push(text);
            }
            texts.join("\n")
        }
        Some(other) => {
            return Err(invalid_type(
                f.param("content"),
                "a string or an array of content parts",
                other,
            ));
        }
    };
    // The chat templates of our model family know `system`; `developer` is OpenAI's newer name for it.
    let role = if role == "developer" { "system" } else { role };
    Ok(ChatMessage::new(role, content))
}

fn parse_prompt(f: &Fields<'_, '_>) -> Result<Prompt, ApiError> {
    let Some(v) = f.get("prompt") else {
        return Err(missing("prompt".into()));
    };
    let several = || {
        unsupported(
            "prompt",
            "several prompts in one request are not supported; send one request per prompt.",
        )
    };
    let expected =
        "a string, an array of strings, an array of integers or an array of integer arrays";
    match v {
        Value::String(s) => Ok(Prompt::Text(s.clone())),
        Value::Array(items) if items.is_empty() => Err(ApiError::invalid(
            "Invalid 'prompt': empty array. Expected an array with minimum length 1, but got an empty array \
             instead.",
            Some(Cow::Borrowed("prompt")),
            Some("empty_array"),
        )),
        Value::Array(items) => match &items[0] {
            Value::String(s) if items.len() == 1 => Ok(Prompt::Text(s.clone())),
            Value::String(_) if items.iter().all(Value::is_string) => Err(several()),
            Value::Number(_) => token_list(items, "prompt").map(Prompt::Tokens),
            Value::Array(inner) if items.len() == 1 => {
                token_list(inner, "prompt[0]").map(Prompt::Tokens)
            }
            Value::Array(_) if items.iter().all(Value::is_array) => Err(several()),
            _ => Err(invalid_type("prompt".into(), expected, v)),
        },
        other => Err(invalid_type("prompt".into(), expected, other)),
    }
}

fn token_list(items: &[Value], param: &str) -> Result<Vec<u32>, ApiError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            integer_value(item)
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        format!(
                            "Invalid '{param}[{i}]': expected a token id (a non-negative integer)."
                        ),
                        Some(Cow::Owned(format!("{param}[{i}]"))),
                        Some("invalid_value"),
                    )
                })
        })
        .collect()
}

fn common(
    f: &Fields<'_, '_>,
    kind: RequestKind,
    model: String,
    prompt: Prompt,
    max_tokens: Option<i128>,
    logprobs: Option<u8>,
) -> Result<GenerationRequest, ApiError> {
    let n = f.integer("n", 1, i128::from(MAX_N))?.unwrap_or(1);
    let temperature = f.decimal("temperature", 0.0, false, 2.0)?.unwrap_or(1.0);
    let top_p = f.decimal("top_p", 0.0, true, 1.0)?.unwrap_or(1.0);
    let seed = f
        .integer("seed", i128::from(i64::MIN), i128::from(u64::MAX))?
        // Negative seeds (int64 in OpenAI's schema) are taken by their two's-complement bit pattern.
        .map(|s| s as u64);
    for name in ["presence_penalty", "frequency_penalty"] {
        if let Some(x) = f.decimal(name, -2.0, false, 2.0)?
            && x != 0.0
        {
            return Err(unsupported(
                name,
                "penalties are not part of the verifiable sampling program; use 0.",
            ));
        }
    }
    if let Some(v) = f.get("logit_bias") {
        match v {
            Value::Object(m) if m.is_empty() => {}
            Value::Object(_) => {
                return Err(unsupported(
                    "logit_bias",
                    "logit bias is not part of the verifiable sampling program.",
                ));
            }
            other => return Err(invalid_type("logit_bias".into(), "an object", other)),
        }
    }
    let stop = match f.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > MAX_STOP {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, but got \
                         an array with length {} instead.",
                        items.len()
                    ),
                    Some(Cow::Borrowed("stop")),
                    Some("array_above_max_length"),
                ));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(invalid_type(format!("stop[{i}]"), "a string", other)),
                })
                .collect::<Result<Vec<_>, _>>()?
        }
        Some(other) => {
            return Err(invalid_type(
                "stop".into(),
                "a string or an array of strings",
                other,
            ));
        }
    };
    let stream = f.bool("stream")?.unwrap_or(false);
    let mut include_usage = false;
    if let Some(v) = f.get("stream_options") {
        let Value::Object(so) = v else {
            return Err(invalid_type("stream_options".into(), "an object", v));
        };
        if !stream {
            return Err(ApiError::invalid(
                "Invalid 'stream_options': stream_options can only be set when stream is true.",
                Some(Cow::Borrowed("stream_options")),
                Some("invalid_value"),
            ));
        }
        let sf = Fields {
            map: so,
            prefix: "stream_options",
        };
        include_usage = sf.bool("include_usage")?.unwrap_or(false);
        sf.bool("continuous_usage_stats")?;
    }
    f.string("user")?;
    Ok(GenerationRequest {
        kind,
        model,
        prompt,
        // Bounded by the range checks above.
        n: n as u32,
        max_tokens: max_tokens.map(|m| m as u32),
        temperature_milli: (temperature * 1000.0).round() as u32,
        top_p_milli: ((top_p * 1000.0).round() as u32).max(1),
        seed,
        stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
        stream,
        include_usage,
        logprobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(extra: Value) -> Result<GenerationRequest, ApiError> {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        parse_chat(&body)
    }

    fn err(
        r: Result<GenerationRequest, ApiError>,
    ) -> (String, Option<String>, Option<&'static str>) {
        let e = r.expect_err("must be rejected");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        (e.message, e.param.map(|p| p.to_string()), e.code)
    }

    #[test]
    fn defaults_and_units() {
        let r = chat(json!({})).expect("valid");
        assert_eq!(
            (r.n, r.temperature_milli, r.top_p_milli, r.max_tokens),
            (1, 1000, 1000, None)
        );
        let r = chat(
            json!({"temperature": 0.7004, "top_p": 0.0001, "n": 3, "max_tokens": 5, "seed": -1}),
        )
        .expect("valid");
        assert_eq!((r.temperature_milli, r.top_p_milli, r.n), (700, 1, 3));
        assert_eq!((r.max_tokens, r.seed), (Some(5), Some(u64::MAX)));
        let r =
            chat(json!({"max_tokens": 5, "max_completion_tokens": 7, "stop": "x"})).expect("valid");
        assert_eq!((r.max_tokens, r.stop), (Some(7), vec!["x".to_string()]));
    }

    #[test]
    fn range_and_type_errors_name_the_param() {
        let (_, p, c) = err(chat(json!({"temperature": 2.5})));
        assert_eq!(
            (p.as_deref(), c),
            (Some("temperature"), Some("decimal_above_max_value"))
        );
        let (_, p, c) = err(chat(json!({"top_p": 0})));
        assert_eq!(
            (p.as_deref(), c),
            (Some("top_p"), Some("decimal_below_min_value"))
        );
        let (_, p, c) = err(chat(json!({"n": 0})));
        assert_eq!(
            (p.as_deref(), c),
            (Some("n"), Some("integer_below_min_value"))
        );
        let (_, p, c) = err(chat(json!({"max_tokens": 1.5})));
        assert_eq!(
            (p.as_deref(), c),
            (Some("max_tokens"), Some("invalid_type"))
        );
        let (_, p, _) = err(chat(json!({"temperature": "hot"})));
        assert_eq!(p.as_deref(), Some("temperature"));
        let (_, p, c) = err(chat(json!({"stop": ["a", "b", "c", "d", "e"]})));
        assert_eq!(
            (p.as_deref(), c),
            (Some("stop"), Some("array_above_max_length"))
        );
        let (_, p, _) = err(chat(json!({"stream_options": {"include_usage": true}})));
        assert_eq!(p.as_deref(), Some("stream_options"));
        let (_, p, _) = err(chat(json!({"presence_penalty": 1})));
        assert_eq!(p.as_deref(), Some("presence_penalty"));
    }

    #[test]
    fn messages_are_checked() {
        let (_, p, c) = err(parse_chat(&json!({"model": "m", "messages": []})));
        assert_eq!((p.as_deref(), c), (Some("messages"), Some("empty_array")));
        let (_, p, c) = err(parse_chat(&json!({"model": "m"})));
        assert_eq!(
            (p.as_deref(), c),
            (Some("messages"), Some("missing_required_parameter"))
        );
        let (m, p, _) = err(parse_chat(
            &json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}),
        ));
        assert_eq!(p.as_deref(), Some("messages[0].role"));
        assert!(m.contains("wizard"));
        let (_, p, _) = err(parse_chat(
            &json!({"model": "m", "messages": [{"role": "user"}]}),
        ));
        assert_eq!(p.as_deref(), Some("messages[0].content"));
        let r = parse_chat(&json!({"model": "m", "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null}]}))
        .expect("valid");
        assert_eq!(
            r.prompt,
            Prompt::Chat(vec![
                ChatMessage::new("system", "a\nb"),
                ChatMessage::new("assistant", "")
            ])
        );
        let (_, p, _) = err(parse_chat(&json!({"model": 3, "messages": []})));
        assert_eq!(p.as_deref(), Some("model"));
    }

    #[test]
    fn logprobs_settings() {
        assert_eq!(chat(json!({})).expect("valid").logprobs, None);
        assert_eq!(
            chat(json!({"logprobs": true})).expect("valid").logprobs,
            Some(0)
        );
        let r = chat(json!({"logprobs": true, "top_logprobs": 20})).expect("valid");
        assert_eq!(r.logprobs, Some(20));
        assert_eq!(
            chat(json!({"logprobs": false, "top_logprobs": 0}))
                .expect("valid")
                .logprobs,
            None
        );
        let (_, p, _) = err(chat(json!({"top_logprobs": 2})));
        assert_eq!(p.as_deref(), Some("top_logprobs"));
        let (_, p, _) = err(chat(json!({"logprobs": true, "top_logprobs": 21})));
        assert_eq!(p.as_deref(), Some("top_logprobs"));
        let c = |v: Value| parse_completion(&json!({"model": "m", "prompt": "a", "logprobs": v}));
        assert_eq!(c(json!(0)).expect("valid").logprobs, Some(0));
        assert_eq!(c(json!(5)).expect("valid").logprobs, Some(5));
        assert_eq!(c(Value::Null).expect("valid").logprobs, None);
        assert!(c(json!(6)).is_err());
    }

    #[test]
    fn completion_prompts() {
        let p = |v: Value| parse_completion(&json!({"model": "m", "prompt": v})).map(|r| r.prompt);
        assert_eq!(p(json!("a")).expect("ok"), Prompt::Text("a".into()));
        assert_eq!(p(json!(["a"])).expect("ok"), Prompt::Text("a".into()));
        assert_eq!(p(json!([1, 2])).expect("ok"), Prompt::Tokens(vec![1, 2]));
        assert_eq!(p(json!([[3]])).expect("ok"), Prompt::Tokens(vec![3]));
        assert!(p(json!(["a", "b"])).is_err());
        assert!(p(json!([-1])).is_err());
        assert!(p(json!({})).is_err());
        assert!(p(json!([])).is_err());
    }
}
