//! Component tests in a real browser (headless Chromium through
//! wasm-bindgen-test-runner): the pure parts the pages rely on, and
//! components mounted into the page's DOM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use greenthread_web::chart::{self, Chart, Datum, Kind};
use greenthread_web::live::{self, Incoming};
use greenthread_web::playground::{ready_after, timing_line};
use greenthread_web::remote;
use greenthread_web::speech::{self, Timed};
use greenthread_web::sse::SseReader;
use greenthread_web::{App, Page, format};
use leptos::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn datum(bucket: usize, series: &str, value: f64) -> Datum {
    Datum { bucket, series: series.into(), value }
}

/// A fresh element on the page to mount into.
fn host() -> web_sys::HtmlElement {
    let document = web_sys::window().unwrap().document().unwrap();
    let el: web_sys::HtmlElement = document.create_element("div").unwrap().unchecked_into();
    document.body().unwrap().append_child(&el).unwrap();
    el
}

fn texts(root: &web_sys::HtmlElement, selector: &str) -> Vec<String> {
    let list = root.query_selector_all(selector).unwrap();
    (0..list.length()).map(|i| list.item(i).unwrap().text_content().unwrap_or_default()).collect()
}

/// Lets Leptos run its effects.
async fn settle() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        web_sys::window().unwrap().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 20).unwrap();
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.unwrap();
}

#[wasm_bindgen_test]
fn stacked_bars_reach_the_top_at_the_busiest_bucket_and_stack_in_series_order() {
    let data = [datum(0, "b", 30.0), datum(0, "a", 10.0), datum(2, "a", 20.0), datum(9, "a", 99.0)];
    let (marks, top) = chart::marks(&data, 3, Kind::Stacked);
    assert_eq!(top, 40.0, "bucket 9 is outside the three buckets");
    assert_eq!(marks.len(), 3);
    // Bucket 0: `a` at the bottom, `b` on it, together the full height.
    assert_eq!((marks[0].series.as_str(), marks[1].series.as_str()), ("a", "b"));
    assert!((marks[0].height + marks[1].height - chart::HEIGHT).abs() < 1e-9);
    assert!((marks[1].y - 0.0).abs() < 1e-9, "the busiest stack starts at the top");
    assert!((marks[2].height - chart::HEIGHT / 2.0).abs() < 1e-9);
    assert_ne!(marks[0].colour, marks[1].colour);
}

#[wasm_bindgen_test]
fn points_scale_to_the_largest_value_not_the_sum() {
    let data = [datum(1, "a", 100.0), datum(1, "b", 50.0)];
    let (marks, top) = chart::marks(&data, 4, Kind::Points);
    assert_eq!(top, 100.0);
    assert!(marks.iter().all(|m| m.height == 0.0));
    // The largest point sits just below the top, whole; half of it at half that height.
    let room = chart::HEIGHT - marks[0].y;
    assert!(marks[0].y > 0.0 && marks[0].y < 10.0, "{}", marks[0].y);
    assert!((chart::HEIGHT - marks[1].y - room / 2.0).abs() < 1e-9);
    assert_eq!(chart::marks(&[], 4, Kind::Points), (vec![], 0.0));
}

#[wasm_bindgen_test]
fn the_chart_component_draws_a_titled_mark_per_value_and_a_legend() {
    let root = host();
    let data = vec![datum(0, "qwen", 12.0), datum(0, "gemma", 3.0), datum(5, "qwen", 7.0)];
    let handle = leptos::mount::mount_to(root.clone(), move || {
        view! { <Chart title="Tokens by model" unit="tokens" data buckets=60 kind=Kind::Stacked /> }
    });
    assert_eq!(root.query_selector_all("rect[data-series]").unwrap().length(), 3);
    assert_eq!(root.query_selector_all("rect.zone").unwrap().length(), 60, "a hover zone per bucket");
    assert_eq!(texts(&root, "text.tick"), ["tokens", "0", "5", "10", "15"], "the unit, then the values");
    let titles = texts(&root, "rect > title");
    assert!(titles.contains(&"qwen: 12 tokens".to_owned()), "{titles:?}");
    assert_eq!(texts(&root, ".legend li"), ["gemma", "qwen"]);
    assert!(texts(&root, "figcaption")[0].contains("max 15 tokens"));
    drop(handle);
}

#[wasm_bindgen_test]
fn the_value_axis_has_round_steps_up_to_the_top() {
    assert_eq!(chart::ticks(15.0), [0.0, 5.0, 10.0, 15.0]);
    assert_eq!(chart::ticks(37.0), [0.0, 10.0, 20.0, 30.0, 40.0]);
    assert_eq!(chart::ticks(0.8).len(), 5, "steps of 0.2");
    assert_eq!(chart::ticks(0.0), [0.0]);
    for top in [1.0, 3.0, 7.5, 99.0, 1234.0, 98_765.0] {
        let t = chart::ticks(top);
        assert!(*t.last().unwrap() >= top && t.len() <= 6, "{top}: {t:?}");
    }
    assert_eq!(
        (chart::compact(950.0), chart::compact(1234.0), chart::compact(2.5e6)),
        ("950".into(), "1.2k".into(), "2.5M".into())
    );
}

#[wasm_bindgen_test]
async fn hovering_a_bucket_reads_out_its_values_and_time() {
    let root = host();
    let data = vec![datum(2, "qwen", 12.0), datum(2, "gemma", 3.0)];
    let start = js_sys::Date::new(&"2026-01-01T10:00:00".into()).get_time();
    let handle = leptos::mount::mount_to(root.clone(), move || {
        view! { <Chart title="Tokens" unit="tokens" data buckets=4 kind=Kind::Stacked start_ms=start bucket_ms=60_000.0 /> }
    });
    let zone: web_sys::Element = root.query_selector("rect.zone[data-bucket='2']").unwrap().unwrap();
    zone.dispatch_event(&web_sys::Event::new("mouseenter").unwrap()).unwrap();
    settle().await;
    assert_eq!(texts(&root, "[data-readout]"), ["10:02–10:03: gemma 3 tokens · qwen 12 tokens"]);
    let zone: web_sys::Element = root.query_selector("rect.zone[data-bucket='0']").unwrap().unwrap();
    zone.dispatch_event(&web_sys::Event::new("mouseenter").unwrap()).unwrap();
    settle().await;
    assert_eq!(texts(&root, "[data-readout]"), ["10:00–10:01: nothing"], "an empty bucket is a gap, not a zero bar");
    drop(handle);
}

#[wasm_bindgen_test]
fn an_empty_chart_says_so() {
    let root = host();
    let handle = leptos::mount::mount_to(root.clone(), || {
        view! { <Chart title="Wakes" unit="wakes" data=vec![] buckets=60 kind=Kind::Stacked /> }
    });
    assert_eq!(texts(&root, "svg text:not(.tick)"), ["No data in this window"]);
    drop(handle);
}

#[wasm_bindgen_test]
async fn a_page_shows_loading_then_the_error_or_the_data() {
    let root = host();
    let state = RwSignal::new(None::<Result<Vec<String>, String>>);
    let handle = leptos::mount::mount_to(root.clone(), move || {
        view! { <div>{move || remote::show(state.get(), Vec::is_empty, "Nothing yet.", |v| view! { <p class="ok">{v.join(",")}</p> }.into_any())}</div> }
    });
    assert_eq!(texts(&root, ".loading"), ["Loading…"]);
    state.set(Some(Err("the server cannot be reached".into())));
    settle().await;
    assert_eq!(texts(&root, "[role=alert]"), ["the server cannot be reached"]);
    state.set(Some(Ok(vec![])));
    settle().await;
    assert_eq!(texts(&root, "p"), ["Nothing yet."]);
    state.set(Some(Ok(vec!["a".into(), "b".into()])));
    settle().await;
    assert_eq!(texts(&root, ".ok"), ["a,b"]);
    drop(handle);
}

#[wasm_bindgen_test]
async fn without_a_session_the_console_asks_for_a_key() {
    web_sys::window().unwrap().session_storage().unwrap().unwrap().clear().unwrap();
    let root = host();
    let handle = leptos::mount::mount_to(root.clone(), App);
    settle().await;
    let input = root.query_selector("input#key").unwrap().expect("the key field");
    assert_eq!(input.get_attribute("type").as_deref(), Some("password"));
    assert_eq!(texts(&root, "form button"), ["Sign in"]);
    assert!(root.query_selector("nav").unwrap().is_none(), "no pages before sign-in");
    drop(handle);
}

#[wasm_bindgen_test]
fn server_sent_events_split_anywhere_come_out_whole() {
    let stream = "data: {\"a\":\"é\"}\n\n: comment\n\ndata: [DONE]\n\n".as_bytes();
    for cut in 0..stream.len() {
        let mut reader = SseReader::default();
        let mut out = reader.push(&stream[..cut]);
        out.extend(reader.push(&stream[cut..]));
        assert_eq!(out, ["{\"a\":\"é\"}", "[DONE]"], "cut at {cut}");
    }
    assert_eq!(SseReader::default().push(b"data: x\r\n\r\n"), ["x"]);
    let mut waiting = SseReader::default();
    assert!(waiting.push(b": waking qwen from ram, 40%\n\n: qwen ready after 812.5 ms\n\ndata: y\n\n") == ["y"]);
    assert_eq!(waiting.take_comments(), ["waking qwen from ram, 40%", "qwen ready after 812.5 ms"]);
    assert!(waiting.take_comments().is_empty(), "each comment once");
}

#[wasm_bindgen_test]
fn the_live_link_speaks_graphql_transport_ws() {
    let init: serde_json::Value = serde_json::from_str(&live::init_message("gt_secret")).unwrap();
    assert_eq!(init["type"], "connection_init");
    assert_eq!(init["payload"]["authorization"], "Bearer gt_secret");
    // The document holds every console operation: the subscription is picked by name.
    let subscribe: serde_json::Value = serde_json::from_str(&live::subscribe_message()).unwrap();
    assert_eq!(subscribe["type"], "subscribe");
    assert_eq!(subscribe["payload"]["operationName"], "ModelEvents");
    assert!(subscribe["payload"]["query"].as_str().unwrap().contains("subscription ModelEvents"));
    assert_eq!(live::parse(r#"{"type":"connection_ack"}"#), Incoming::Ack);
    assert_eq!(live::parse(r#"{"type":"ping"}"#), Incoming::Ping);
    let next = r#"{"id":"model-events","type":"next","payload":{"data":{"modelEvents":{"model":"m","project":"p","node":"local","from":"waking","to":"serving","tier":"device","cause":"request","afterMs":412.5,"at":"2026-01-01T00:00:00Z"}}}}"#;
    match live::parse(next) {
        Incoming::Event(e) => assert_eq!((e.model.as_str(), e.to.as_str(), e.after_ms), ("m", "serving", 412.5)),
        other => panic!("{other:?}"),
    }
    let refused = r#"{"id":"model-events","type":"error","payload":[{"message":"this key has no read scope"}]}"#;
    assert_eq!(live::parse(refused), Incoming::Refused("this key has no read scope".into()));
    assert_eq!(live::parse("not json"), Incoming::Other);
}

#[wasm_bindgen_test]
fn pages_are_found_by_their_fragment() {
    assert_eq!(Page::from_hash("#/audit"), Page::Audit);
    assert_eq!(Page::from_hash("#nodes"), Page::Nodes);
    assert_eq!(Page::from_hash(""), Page::Models);
    assert_eq!(Page::from_hash("#/../../etc"), Page::Models);
    for p in Page::ALL {
        assert_eq!(Page::from_hash(&format!("#/{}", p.slug())), p);
    }
}

#[wasm_bindgen_test]
fn numbers_and_times_read_well() {
    assert_eq!(format::bytes(0), "0 B");
    assert_eq!(format::bytes(1536), "1.5 KiB");
    assert_eq!(format::bytes(3 << 30), "3.0 GiB");
    assert_eq!(format::millis(412.4), "412 ms");
    assert_eq!(format::millis(12_500.0), "12.5 s");
    assert_eq!(format::ago(1_000.0, 2_000.0), "just now");
    assert_eq!(format::ago(0.0, 125_000.0), "2 min ago");
    assert_eq!(format::percent(5, 0), 0.0);
    assert_eq!(format::percent(150, 100), 100.0);
}

#[wasm_bindgen_test]
fn the_playground_tells_a_wake_from_a_wait() {
    assert_eq!(
        timing_line(Some("sleeping"), Some(840.0), 910.0),
        "Model was sleeping: woke in 840 ms (server-measured); first token after 910 ms"
    );
    assert_eq!(timing_line(Some("serving"), Some(0.1), 35.0), "Model was serving; first token after 35 ms");
    assert_eq!(timing_line(None, Some(5.0), 40.0), "Waited 5 ms for the model; first token after 40 ms");
    assert_eq!(ready_after("qwen ready after 812.5 ms"), Some(812.5));
    assert_eq!(ready_after("waking qwen from ram, 40%"), None);
}

#[wasm_bindgen_test]
fn transcript_times_read_as_minutes_and_seconds() {
    assert_eq!(speech::clock(0.0), "0:00.0");
    assert_eq!(speech::clock(61.26), "1:01.3");
    assert_eq!(speech::clock(-1.0), "0:00.0");
}

#[wasm_bindgen_test]
fn transcript_segments_come_from_verbose_json() {
    let verbose = serde_json::json!({"segments": [{"start": 0.0, "end": 2.5, "text": " Hello there."}]});
    assert_eq!(speech::segments(&verbose), [Timed { start: 0.0, end: 2.5, text: "Hello there.".into() }]);
    assert!(speech::segments(&serde_json::json!({})).is_empty());
}

#[wasm_bindgen_test]
fn a_streamed_wav_gets_its_real_sizes() {
    let mut wav = b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec();
    wav.extend([0u8; 20]);
    wav.extend(b"data\xdb\xff\xff\xff");
    wav.extend([1u8; 100]);
    speech::whole_wav(&mut wav);
    assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 136);
    assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 100);
}

#[wasm_bindgen_test]
fn a_recording_becomes_a_mono_16_bit_wav() {
    let wav = speech::wav_of(&[0.0, 1.0, -1.0, 2.0], 48_000);
    assert_eq!((&wav[..4], &wav[8..16], &wav[36..40]), (&b"RIFF"[..], &b"WAVEfmt "[..], &b"data"[..]));
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 48_000);
    assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 8);
    let samples: Vec<i16> = wav[44..].chunks(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(samples, [0, 32767, -32767, 32767], "clipped to full scale");
}

mod deploy {
    use greenthread_web::api::UserError;
    use greenthread_web::api::deploy::{ChangeRow, FieldDiff, Plan};
    use greenthread_web::deploy::document::{DocChange, Field, ModelForm, entry, field_of};
    use greenthread_web::deploy::plan::PlanView;
    use leptos::prelude::*;
    use serde_json::json;
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::{host, texts};

    fn document() -> serde_json::Value {
        json!({
            "projects": [{"name": "shop", "description": ""}],
            "services": [{"project": "shop", "name": "default", "description": ""}],
            "models": [{"name": "qwen2.5-coder", "project": "shop", "service": "default", "artifact": "/m/q.gguf",
                        "aliases": ["coder"], "min_replicas": 0, "max_replicas": 1, "idle_timeout": "5m",
                        "warm_tier": "ram", "never_preempt": false, "context_length": 4096}],
        })
    }

    #[wasm_bindgen_test]
    fn a_new_model_is_added_to_the_document_with_the_forms_fields() {
        let mut form = ModelForm::new_in("shop");
        form.name = " tiny ".into();
        form.artifact = "/m/tiny.gguf".into();
        form.aliases = "a, , b".into();
        form.kind = "chat".into();
        let put = DocChange::Put { replacing: None, entry: form.to_entry(None).unwrap() };
        let doc = put.applied_to(document());
        let tiny = entry(&doc, "tiny").unwrap();
        assert_eq!(tiny["aliases"], json!(["a", "b"]));
        assert_eq!((tiny["kind"].as_str(), tiny["service"].as_str()), (Some("chat"), Some("default")));
        assert!(tiny.get("engine").is_none(), "the builtin engine is the default");
        assert_eq!(doc["models"].as_array().unwrap().len(), 2);
    }

    #[wasm_bindgen_test]
    fn an_edit_keeps_the_fields_the_form_does_not_show_and_a_removal_takes_only_its_model() {
        let doc = document();
        let mut form = ModelForm::from_entry(entry(&doc, "qwen2.5-coder").unwrap());
        assert_eq!((form.aliases.as_str(), form.idle_timeout.as_str()), ("coder", "5m"));
        form.idle_timeout = "10m".into();
        let edited = form.to_entry(entry(&doc, "qwen2.5-coder")).unwrap();
        assert_eq!(edited["context_length"], 4096, "kept though the form has no such field");
        let doc = DocChange::Put { replacing: Some("qwen2.5-coder".into()), entry: edited }.applied_to(doc);
        assert_eq!(doc["models"].as_array().unwrap().len(), 1);
        assert_eq!(entry(&doc, "qwen2.5-coder").unwrap()["idle_timeout"], "10m");
        let doc = DocChange::Take("qwen2.5-coder".into()).applied_to(doc);
        assert_eq!(doc["models"], json!([]));
        assert_eq!(doc["services"].as_array().unwrap().len(), 1);
    }

    #[wasm_bindgen_test]
    fn the_form_refuses_what_it_can_tell_by_field() {
        let mut form = ModelForm::new_in("shop");
        assert_eq!(form.to_entry(None).unwrap_err().0, Field::Name);
        form.name = "m".into();
        assert_eq!(form.to_entry(None).unwrap_err().0, Field::Artifact);
        form.artifact = "/m/q.gguf".into();
        form.max_replicas = "two".into();
        assert_eq!(form.to_entry(None).unwrap_err().0, Field::MaxReplicas);
        form.max_replicas = "2".into();
        form.engine = "llama-server".into();
        form.engine_binary = "llama-server".into();
        assert_eq!(form.to_entry(None).unwrap_err().0, Field::Engine, "a relative binary");
        form.engine_binary = "/opt/llama-server".into();
        assert_eq!(
            form.to_entry(None).unwrap()["engine"],
            json!({"kind": "llama-server", "binary": "/opt/llama-server"})
        );
    }

    #[wasm_bindgen_test]
    fn the_servers_refusals_land_beside_their_fields() {
        let refusal = |field: &str, message: &str| UserError { field: Some(field.into()), message: message.into() };
        let name = "qwen2.5-coder";
        let cases = [
            (refusal("desired.models.qwen2.5-coder.artifact", "outside the artifact directories"), Field::Artifact),
            (refusal("desired.models.qwen2.5-coder.engine.binary", "not absolute"), Field::Engine),
            (refusal("desired", "models[3].idle_timeout: invalid duration \"soon\" at line 9"), Field::IdleTimeout),
            (refusal("desired.models", "the name \"qwen2.5-coder\" is already taken"), Field::Name),
            (refusal("desired.models", "model \"m\": max_replicas must be at least 1"), Field::MaxReplicas),
            (refusal("desired.services", "service \"x\" is declared twice"), Field::Service),
            (refusal("desired", "model qwen2.5-coder is declared twice"), Field::Name),
            (
                refusal(
                    "desired.models",
                    "model \"qwen2.5-coder\": max_replicas must be at least 1 and at least min_replicas, not 0",
                ),
                Field::MaxReplicas,
            ),
            (refusal("desired", "expected a document"), Field::Form),
        ];
        for (error, field) in cases {
            assert_eq!(field_of(&error, name), field, "{error:?}");
        }
        // A model whose name holds a field's name is still refused by its name.
        assert_eq!(
            field_of(&refusal("desired.models", "the name \"kind-bert\" is already taken"), "kind-bert"),
            Field::Name
        );
    }

    #[wasm_bindgen_test]
    fn a_plan_reads_as_a_diff_with_its_summary() {
        let root = host();
        let plan = Plan {
            etag: "e1".into(),
            changes: vec![
                ChangeRow {
                    action: "UPDATE".into(),
                    address: "model/qwen".into(),
                    destructive: false,
                    fields: vec![FieldDiff {
                        field: "idle_timeout".into(),
                        before: Some(json!("5m")),
                        after: Some(json!("10m")),
                    }],
                },
                ChangeRow { action: "DELETE".into(), address: "model/old".into(), destructive: true, fields: vec![] },
            ],
        };
        let handle = leptos::mount::mount_to(root.clone(), move || view! { <PlanView plan /> });
        assert_eq!(texts(&root, "[data-plan-summary]"), ["Plan: 0 to create, 1 to update, 1 to delete."]);
        assert_eq!(texts(&root, "[data-change='model/qwen'] td"), ["5m", "10m"]);
        assert_eq!(texts(&root, "[data-change='model/old'] .danger"), ["destructive"]);
        drop(handle);
    }
}

mod playground {
    use greenthread_web::playground::conversation::{Sampling, ToolCall, Turn, merge_tool_calls, request, speed_line};
    use greenthread_web::playground::markdown::to_html;
    use serde_json::json;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn markdown_renders_but_html_in_an_answer_stays_text() {
        let html = to_html(
            "**Paris**\n\n```rust\nfn main() {}\n```\n\n<script>alert(1)</script> <img src=x onerror=alert(1)>",
        );
        assert!(html.contains("<strong>Paris</strong>"), "{html}");
        assert!(html.contains("<code class=\"language-rust\">fn main() {}"), "{html}");
        assert!(!html.contains("<script") && !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
        let image = to_html("![the sky](https://example.com/sky.png?q=secret)");
        assert!(
            !image.contains("<img") && image.contains("<a href=\"https://example.com/sky.png?q=secret\">the sky</a>"),
            "{image}"
        );
        for (link, kept) in [
            ("[a](javascript:alert(1))", false),
            ("[a](JaVaScRiPt:alert(1))", false),
            ("[a](data:text/html,x)", false),
            ("![a](javascript:alert(1))", false),
            ("![a](https://example.com/x.png)", true),
            ("[a](https://example.com/x)", true),
            ("[a](/docs/page:1)", true),
        ] {
            let html = to_html(link);
            assert!(!html.contains("javascript") && !html.contains("data:"), "{link}: {html}");
            assert_eq!(html.contains("example.com") || html.contains("/docs/page:1"), kept, "{link}: {html}");
        }
    }

    #[wasm_bindgen_test]
    fn a_conversation_is_sent_whole_with_its_parameters_and_tools() {
        let mut answer = Turn::assistant();
        answer.content = "Hi.".into();
        let turns = [Turn::user("Hello"), answer, Turn::user("Weather?")];
        let sampling = Sampling { temperature: "0".into(), top_p: "".into(), max_tokens: "64".into() };
        let tools = r#"[{"type":"function","function":{"name":"weather","parameters":{"type":"object"}}}]"#;
        let body = request("m", "Be brief.", &turns, &sampling, tools).unwrap();
        let roles: Vec<&str> =
            body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!((body["temperature"].as_f64(), body["max_tokens"].as_u64()), (Some(0.0), Some(64)));
        assert!(body.get("top_p").is_none(), "an empty parameter is the server's default");
        assert_eq!(body["tools"][0]["function"]["name"], "weather");
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert!(request("m", "", &turns, &Sampling { temperature: "3".into(), ..Sampling::default() }, "").is_err());
        assert!(request("m", "", &turns, &Sampling::default(), "{not json").is_err());
        assert!(request("m", "", &turns, &Sampling { max_tokens: "1.5".into(), ..Sampling::default() }, "").is_err());
    }

    #[wasm_bindgen_test]
    fn streamed_tool_call_pieces_come_together() {
        let mut calls = Vec::new();
        merge_tool_calls(
            &mut calls,
            &json!([{"index": 0, "id": "call_1", "function": {"name": "weather", "arguments": "{\"ci"}}]),
        );
        merge_tool_calls(&mut calls, &json!([{"index": 0, "function": {"arguments": "ty\":\"Paris\"}"}}]));
        merge_tool_calls(
            &mut calls,
            &json!([{"index": 1, "id": "call_2", "function": {"name": "time", "arguments": "{}"}}]),
        );
        assert_eq!(
            calls,
            [
                ToolCall { id: "call_1".into(), name: "weather".into(), arguments: "{\"city\":\"Paris\"}".into() },
                ToolCall { id: "call_2".into(), name: "time".into(), arguments: "{}".into() },
            ]
        );
        // A turn with tool calls sends them back as the API expects.
        let mut turn = Turn::assistant();
        turn.tool_calls = calls;
        let body = request("m", "", &[turn], &Sampling::default(), "").unwrap();
        assert_eq!(body["messages"][0]["tool_calls"][1]["function"]["name"], "time");
    }

    #[wasm_bindgen_test]
    fn a_stopped_answer_does_not_break_the_next_turn() {
        let mut cut = Turn::assistant();
        cut.tool_calls = vec![ToolCall { id: "call_1".into(), name: "weather".into(), arguments: "{\"ci".into() }];
        let turns = [Turn::user("a"), Turn::assistant(), Turn::user("b"), cut, Turn::user("c")];
        let body = request("m", "", &turns, &Sampling::default(), "").unwrap();
        let roles: Vec<&str> =
            body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "user", "user"], "empty and cut-off answers are left out");
    }

    #[wasm_bindgen_test]
    fn speed_counts_the_tokens_after_the_first() {
        assert_eq!(speed_line(120.0, 1120.0, 11), "11 tokens at 10.0 tokens/s");
        assert_eq!(speed_line(120.0, 120.0, 1), "1 tokens");
    }
}

mod model_page {
    use greenthread_web::model_page::timeline::{Segment, Step, segments};
    use greenthread_web::model_page::{href, model_of};
    use wasm_bindgen_test::wasm_bindgen_test;

    fn seg(state: &str, start_ms: f64, end_ms: f64) -> Segment {
        Segment { state: state.into(), start_ms, end_ms }
    }

    fn step<'a>(at_ms: f64, node: &'a str, from: &'a str, to: &'a str) -> Step<'a> {
        Step { at_ms, node, from, to }
    }

    #[wasm_bindgen_test]
    fn the_band_follows_the_changes_and_leaves_the_unknown_out() {
        let steps = [
            step(400.0, "a", "serving", "sleeping"),
            step(100.0, "a", "sleeping", "serving"),
            step(700.0, "a", "sleeping", "waking"),
        ];
        assert_eq!(
            segments(&steps, Some("waking"), 0.0, 1000.0),
            [
                seg("sleeping", 0.0, 100.0),
                seg("serving", 100.0, 400.0),
                seg("sleeping", 400.0, 700.0),
                seg("waking", 700.0, 1000.0),
            ]
        );
        // Nothing changed: the current state all along; nothing known: nothing drawn.
        assert_eq!(segments(&[], Some("serving"), 0.0, 10.0), [seg("serving", 0.0, 10.0)]);
        assert_eq!(segments(&[], None, 0.0, 10.0), []);
        // Before the server had the model there is a gap; a change before the window counts from its start.
        let started = [step(500.0, "a", "absent", "staged"), step(-5.0, "a", "x", "absent")];
        assert_eq!(segments(&started, Some("staged"), 0.0, 1000.0), [seg("staged", 500.0, 1000.0)]);
        // A gap between two stretches of serving stays a gap.
        let gap = [step(300.0, "a", "serving", "absent"), step(600.0, "a", "absent", "serving")];
        assert_eq!(segments(&gap, None, 0.0, 900.0), [seg("serving", 0.0, 300.0), seg("serving", 600.0, 900.0)]);
        // A change stamped after now (a clock ahead) counts as now.
        let ahead = [step(2000.0, "a", "sleeping", "waking")];
        assert_eq!(segments(&ahead, None, 0.0, 1000.0), [seg("sleeping", 0.0, 1000.0)]);
    }

    #[wasm_bindgen_test]
    fn with_two_replicas_the_model_is_as_good_as_its_best() {
        // b wakes while a serves: still serving; a sleeps while b serves: still serving; then b sleeps too.
        let steps = [
            step(100.0, "b", "absent", "waking"),
            step(200.0, "b", "waking", "serving"),
            step(300.0, "a", "serving", "sleeping"),
            step(400.0, "b", "serving", "sleeping"),
        ];
        assert_eq!(segments(&steps, None, 0.0, 500.0), [seg("serving", 0.0, 400.0), seg("sleeping", 400.0, 500.0)]);
    }

    #[wasm_bindgen_test]
    fn a_models_page_has_its_own_address() {
        assert_eq!(href("qwen2.5-coder"), "#/models/qwen2.5-coder");
        assert_eq!(model_of(&href("team/model a")), Some("team/model a".into()));
        assert_eq!(model_of("#/models"), None);
        assert_eq!(model_of("#/models/"), None);
        assert_eq!(model_of("#/keys"), None);
    }
}
