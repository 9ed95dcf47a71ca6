//! OpenAI's Responses API: a request read as a chat request ([`input`],
//! [`translate`]) and the answer written as a `response` object, whole or as
//! its stream of typed events ([`answer`]). A conversation continued with
//! `previous_response_id` arrives here already expanded into `input` items:
//! whoever holds the stored responses does that. Pure functions, no IO.

pub mod answer;
pub mod input;
pub mod translate;
pub mod types;
