//! What decoding a stored entry costs per hit (the near cache decodes the entry's JSON on
//! every hit): a cache entry's envelope around a [`Stored`] answer, for a typical small JSON
//! body and a 4 KiB JSON body, stored as base64 (what the proxy writes; the decode includes
//! the base64 decoding into the body's bytes) and as a JSON string (what it wrote before, still
//! read). Not run by CI:
//! `cargo bench -p action-cache-proxy --bench stored_decode`. Prints nanoseconds per decode.

use action_cache_proxy::stored::Stored;
use serde::Deserialize;
use std::hint::black_box;
use std::time::Instant;

/// The cache's envelope as it is decoded on a hit (`at`, windows, and the value).
#[derive(Deserialize)]
#[allow(dead_code)]
struct Envelope {
    at: u64,
    f: u64,
    s: u64,
    d: u64,
    v: Stored,
}

fn entry(body_field: &str) -> Vec<u8> {
    format!(
        r#"{{"at":1796131199000,"f":1796131499000,"s":1796132099000,"d":50,"v":{{"status":200,"content_type":"application/json","body":{body_field},"at":1796131199000,"fresh":300000}}}}"#
    )
    .into_bytes()
}

fn per_decode(bytes: &[u8]) -> f64 {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this once as a smoke test.
    let measuring = std::env::args().any(|a| a == "--bench");
    let n = if measuring { 200_000 } else { 10 };
    for _ in 0..n / 20 {
        black_box(serde_json::from_slice::<Envelope>(black_box(bytes)).unwrap());
    }
    let start = Instant::now();
    for _ in 0..n {
        black_box(serde_json::from_slice::<Envelope>(black_box(bytes)).unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let small = r#"{"id": "k42", "name": "Account k42", "tier": "gold", "open_cases": 2}"#;
    let mut large = String::from("[");
    while large.len() < 4096 {
        large.push_str(r#"{"sku":"A-1001","qty":1,"price":"12.50","name":"Widget"},"#);
    }
    large.push_str("{}]");
    let text = |body: &str| {
        entry(&format!(
            r#"{{"text":{}}}"#,
            serde_json::to_string(body).unwrap()
        ))
    };
    let base64 = |body: &str| {
        use base64::Engine;
        entry(&format!(
            r#"{{"base64":"{}"}}"#,
            base64::engine::general_purpose::STANDARD.encode(body)
        ))
    };
    println!("| body | stored as | entry bytes | ns per decode |");
    println!("|---|---|---|---|");
    for (name, body) in [("68 B JSON", small), ("4 KiB JSON", large.as_str())] {
        for (how, bytes) in [
            ("base64 (written now)", base64(body)),
            ("JSON string (before)", text(body)),
        ] {
            println!(
                "| {name} | {how} | {} | {:.0} |",
                bytes.len(),
                per_decode(&bytes)
            );
        }
    }
}
