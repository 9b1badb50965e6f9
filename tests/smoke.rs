//! The shortest path through the server: a stream sees a posted message.
mod support;
use support::*;

#[test]
fn a_stream_receives_a_posted_message() {
    let server = TestServer::start();
    let mut stream = Stream::open(&server, "/events?room=smoke", "");
    assert_eq!(stream.head.status, 200);
    assert_eq!(
        stream.head.header("content-type"),
        Some("text/event-stream")
    );
    let retry = stream.next_block();
    assert_eq!(retry.retry, Some(2000));
    let hello = stream.next_block();
    assert_eq!(hello.event.as_deref(), Some("hello"));
    let id = server.post_message("smoke", "ann", "hi");
    let message = stream.wait_for("message");
    assert_eq!(message.id, Some(id.to_string()));
    let json: serde_json::Value = serde_json::from_str(&message.data).unwrap();
    assert_eq!(json["text"], "hi");
    assert_eq!(json["user"], "ann");
}
