//! Prints `COUNT` distinct DPoP proofs (one key, fresh `jti` each) for `METHOD URL`, one per line: the input
//! of `bench/token-endpoint.sh`, which needs a unique proof per request.
//!
//! ```sh
//! cargo run --release -p gatehouse-proto --example dpop_proofs -- 100000 POST http://127.0.0.1:9000/token
//! ```

use gatehouse_proto::dpop_key::DpopKey;
use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(count), Some(method), Some(url)) =
        (args.get(1).and_then(|c| c.parse::<usize>().ok()), args.get(2), args.get(3))
    else {
        eprintln!("usage: dpop_proofs COUNT METHOD URL");
        std::process::exit(2);
    };
    let key = DpopKey::generate().expect("key generation");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for _ in 0..count {
        let _ = writeln!(out, "{}", key.proof(method, url, None, None, now));
    }
}
