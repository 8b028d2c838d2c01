// counter: an edged module in Rust (Debian rustc 1.63, target wasm32-wasi, std).
// It counts the messages it receives and publishes the count with the topic on
// uplink/telemetry/count; println!/eprintln! reach the log through WASI fd_write.

use std::cell::RefCell;

#[link(wasm_import_module = "edge")]
extern "C" {
    fn publish(topic_ptr: *const u8, topic_len: i32, payload_ptr: *const u8, payload_len: i32) -> i32;
}

thread_local! {
    static INBOX: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    static COUNT: RefCell<u64> = RefCell::new(0);
}

#[no_mangle]
pub extern "C" fn edge_alloc(size: i32) -> *mut u8 {
    INBOX.with(|b| {
        let mut b = b.borrow_mut();
        b.resize(size as usize, 0);
        b.as_mut_ptr()
    })
}

#[no_mangle]
pub extern "C" fn edge_init() -> i32 {
    println!("counter ready");
    0
}

#[no_mangle]
pub extern "C" fn edge_on_message(topic_ptr: *const u8, topic_len: i32, _p: *const u8, _l: i32) -> i32 {
    let topic = unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(topic_ptr, topic_len as usize)) };
    let n = COUNT.with(|c| { *c.borrow_mut() += 1; *c.borrow() });
    let out = format!("{{\"topic\":\"{}\",\"count\":{}}}", topic, n);
    eprintln!("message {} on {}", n, topic);
    let t = "uplink/telemetry/count";
    unsafe { publish(t.as_ptr(), t.len() as i32, out.as_ptr(), out.len() as i32) }
}
