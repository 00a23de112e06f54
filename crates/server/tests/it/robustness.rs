//! The real server under hostile and heavy input: malformed and oversize bodies, then a thousand
//! concurrent requests. Every request must get its documented answer, and the server must still
//! generate afterwards.

use std::sync::Arc;

use crate::support::{MAX_BODY_BYTES, MODEL_ID, Server, assert_error};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Requests in the flood.
const REQUESTS: usize = 1000;

/// Requests in flight at once: enough to keep every server worker busy, few enough that the client
/// stays well inside the file-descriptor limit.
const IN_FLIGHT: usize = 100;

/// POSTs raw bytes as JSON and returns the status and the parsed body.
async fn post_raw(client: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    let response = client.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn bad_bodies_and_a_request_flood_leave_the_server_serving() {
    let server = Server::start();
    let chat_url = server.url("/v1/chat/completions");

    let bad_bodies: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        b"".to_vec(),
        b"[1, 2".to_vec(),
        br#"{"model": 5, "messages": "hi"}"#.to_vec(),
        br#"{"model": "m", "messages": [{"role": 3, "content": "x"}]}"#.to_vec(),
        json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": "four"})
            .to_string()
            .into_bytes(),
        vec![0xff, 0xfe, b'{'],
        [br#"{"model": ""#.as_slice(), &[0xc3, 0x28], br#"", "messages": []}"#].concat(),
    ];
    for body in bad_bodies {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (status, reply) = post_raw(&server.client, &chat_url, body).await;
        assert_eq!(status, 400, "{shown}: {reply}");
        assert_error(status, &reply, 400);
    }

    // Sixteen times the limit, and valid JSON, so only the size can be refused.
    let huge = json!({"model": MODEL_ID, "messages": [{"role": "user", "content": "x".repeat(16 * MAX_BODY_BYTES)}]});
    let (status, reply) = post_raw(&server.client, &chat_url, huge.to_string().into_bytes()).await;
    assert_error(status, &reply, 413);

    // The flood: listings and bodies that fail validation, so no generation runs.
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = JoinSet::new();
    for i in 0..REQUESTS {
        let (client, permits) = (server.client.clone(), permits.clone());
        let (models_url, chat_url) = (server.url("/v1/models"), chat_url.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let (status, body, expected) = match i % 3 {
                0 => {
                    let response = client.get(&models_url).send().await.unwrap();
                    (response.status().as_u16(), response.json::<Value>().await.unwrap(), 200)
                }
                1 => {
                    let empty = json!({"model": MODEL_ID, "messages": []}).to_string().into_bytes();
                    let (status, body) = post_raw(&client, &chat_url, empty).await;
                    (status, body, 400)
                }
                _ => {
                    let (status, body) = post_raw(&client, &chat_url, b"{\"model\":".to_vec()).await;
                    (status, body, 400)
                }
            };
            assert_eq!(status, expected, "request {i}: {body}");
            if expected == 200 {
                assert_eq!(body["data"][0]["id"], MODEL_ID, "request {i}: {body}");
            } else {
                assert_error(status, &body, expected);
            }
        });
    }
    let mut answered = 0;
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
        answered += 1;
    }
    assert_eq!(answered, REQUESTS);

    // Still healthy, and still generating.
    assert_eq!(server.get_json("/v1/health").await, (200, json!({"status": "OK"})));
    let request = json!({
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "Say hello."}],
        "max_tokens": 4,
        "temperature": 0,
    });
    let (status, completion) = server.post_json("/v1/chat/completions", &request).await;
    assert_eq!(status, 200, "{completion}");
    assert!(completion["choices"][0]["message"]["content"].is_string(), "{completion}");
    let generated = completion["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(generated <= 4, "{completion}");
}
