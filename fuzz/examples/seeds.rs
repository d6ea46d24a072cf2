//! Writes the committed seed inputs, a few small valid (and a few nearly valid) inputs per target, into
//! `fuzz/seeds/<target>/`. The fixtures are fixed (`gatehouse_fuzz`), so the seeds stay valid; sealed cookies
//! and signatures use fresh randomness, so running it again changes their bytes, not their meaning.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seeds

use std::path::{Path, PathBuf};

use gatehouse_bff::chunks;
use gatehouse_fuzz::*;
use serde_json::json;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    session_cookie(&root.join("session_cookie"))?;
    dpop_proof(&root.join("dpop_proof"))?;
    authorize_query(&root.join("authorize_query"))?;
    token_form(&root.join("token_form"))?;
    jose(&root.join("jose"))?;
    logout_token(&root.join("logout_token"))?;
    config(&root.join("config"))?;
    println!("seeds written under {}", root.display());
    Ok(())
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path: PathBuf = dir.join(name);
    std::fs::write(path, bytes)
}

fn session_cookie(dir: &Path) -> std::io::Result<()> {
    let ring = key_ring();
    // Server mode: a sealed session id among other cookies.
    let sealed = ring.seal(COOKIE_NAME, b"3q2-session-id-Zm9vYmFy");
    write(dir, "server-mode", format!("theme=dark; {COOKIE_NAME}={sealed}; lang=en"))?;
    // Cookie mode: a two-chunk set sealed under the older key, sent over two header lines.
    let plaintext: Vec<u8> = (0..4000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let values = chunks::seal(&old_key_ring(), COOKIE_NAME, &plaintext).expect("fits in chunks");
    let pairs: Vec<String> =
        values.iter().enumerate().map(|(i, v)| format!("{}={v}", chunks::chunk_name(COOKIE_NAME, i))).collect();
    write(dir, "cookie-mode", pairs.join("\n"))?;
    // Nearly valid: a chunk index the gateway never writes.
    write(dir, "unknown-chunk", format!("{COOKIE_NAME}={sealed}; {COOKIE_NAME}.01=AAAA"))
}

fn dpop_proof(dir: &Path) -> std::io::Result<()> {
    const NONCE: u8 = 0b0100;
    const ACCESS_TOKEN_SENT: u8 = 0b1000;
    let key = dpop_key();
    let nonce = nonce_issuer().current(NOW);
    let proof = key.proof(DPOP_METHOD, DPOP_URI, Some(ACCESS_TOKEN), Some(&nonce), NOW);
    write(dir, "raw-proof", [&[NONCE | ACCESS_TOKEN_SENT][..], proof.as_bytes()].concat())?;
    let claims = dpop_claims(true, true).to_string();
    write(dir, "claims", [&[1 | NONCE | ACCESS_TOKEN_SENT][..], claims.as_bytes()].concat())?;
    write(dir, "header", [&[2][..], dpop_header().to_string().as_bytes()].concat())?;
    let plain = key.proof(DPOP_METHOD, DPOP_URI, None, None, NOW);
    write(dir, "two-headers", [&[3][..], format!("{plain}\n{plain}").as_bytes()].concat())
}

fn authorize_query(dir: &Path) -> std::io::Result<()> {
    let callback: String = url::form_urlencoded::byte_serialize(b"https://app.test/bff/callback").collect();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let jkt = dpop_key().jkt();
    write(
        dir,
        "full",
        format!(
            "client_id=spa&redirect_uri={callback}&response_type=code&scope=openid%20profile%20api&state=s%2F1\
             &nonce=n-1&code_challenge={challenge}&code_challenge_method=S256&prompt=login&max_age=300\
             &login_hint=alice&dpop_jkt={jkt}&response_mode=query"
        ),
    )?;
    write(
        dir,
        "minimal",
        format!(
            "client_id=bff&response_type=code&scope=openid&code_challenge={challenge}&code_challenge_method=S256&redirect_uri={callback}"
        ),
    )?;
    write(dir, "repeated", "client_id=spa&client_id=bff&resource=a&resource=b")
}

fn token_form(dir: &Path) -> std::io::Result<()> {
    let basic = b64_standard(format!("bff:{BFF_SECRET}").as_bytes());
    write(
        dir,
        "code-basic",
        format!(
            "Basic {basic}\ngrant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fapp.test%2Fbff%2Fcallback\
             &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk&resource=https%3A%2F%2Fapi.test"
        ),
    )?;
    write(dir, "refresh-public", "\ngrant_type=refresh_token&refresh_token=rt-1&client_id=spa&scope=openid%20api")?;
    write(
        dir,
        "client-credentials-post",
        format!(
            "grant_type=client_credentials&client_id=m2m&client_secret={M2M_SECRET}&scope=billing\
             &resource=https%3A%2F%2Fbilling.test%2F"
        ),
    )?;
    let assertion = sign_compact(
        json!({"alg": "ES256", "typ": "JWT", "kid": "c1"}).to_string().as_bytes(),
        assertion_claims().to_string().as_bytes(),
    );
    write(
        dir,
        "private-key-jwt",
        format!(
            "\ngrant_type=refresh_token&refresh_token=rt-2&client_assertion_type=\
             urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
        ),
    )
}

fn jose(dir: &Path) -> std::io::Result<()> {
    let mut jwk = dpop_key().jwk().clone();
    jwk.kid = Some("k1".into());
    write(dir, "jwk-ec", serde_json::to_vec(&jwk)?)?;
    // RFC 7638 §3.1's example key.
    write(
        dir,
        "jwk-rsa",
        json!({
            "kty": "RSA", "alg": "RS256", "kid": "2011-04-29", "e": "AQAB",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        })
        .to_string(),
    )?;
    write(dir, "jwk-okp-private", json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}).to_string())?;
    write(dir, "jwks", json!({"keys": [jwk, {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]}).to_string())?;
    write(dir, "dpop-header", dpop_header().to_string())?;
    write(dir, "logout-header", logout_header().to_string())?;
    write(dir, "compact-jws", dpop_key().proof(DPOP_METHOD, DPOP_URI, None, None, NOW))
}

fn logout_token(dir: &Path) -> std::io::Result<()> {
    let token = sign_compact(logout_header().to_string().as_bytes(), logout_claims().to_string().as_bytes());
    write(dir, "raw-token", [&[0][..], token.as_bytes()].concat())?;
    write(dir, "claims", [&[1][..], logout_claims().to_string().as_bytes()].concat())?;
    write(dir, "header", [&[2][..], logout_header().to_string().as_bytes()].concat())?;
    let mut sid_only = logout_claims();
    let object = sid_only.as_object_mut().expect("claims are an object");
    object.remove("sub");
    object.remove("exp");
    object.insert("aud".into(), json!([CLIENT_ID, "other"]));
    write(dir, "claims-sid-only", [&[1][..], sid_only.to_string().as_bytes()].concat())
}

fn config(dir: &Path) -> std::io::Result<()> {
    let demo = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gatehouse.toml"))?;
    write(dir, "demo", &demo)?;
    let mut with_env = demo.clone();
    with_env.extend_from_slice(b"\0GATEHOUSE_IDP__LISTEN=127.0.0.1:0\nGATEHOUSE_BFF__ROUTES__0__UPSTREAMS=[\"http://127.0.0.1:1\"]\nGATEHOUSE_LOG__LEVEL=debug\n");
    write(dir, "demo-with-env", with_env)?;
    write(
        dir,
        "minimal",
        "[idp]\nissuer = \"https://id.example\"\nlisten = \"127.0.0.1:9000\"\nmaster_key = \"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n",
    )
}

/// `Basic` credentials use standard base64 with padding (RFC 7617 §2), not base64url.
fn b64_standard(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
