//! Security catalogue §C (RFC 9449 DPoP) at the token service: every proof-structure row (§C1) and every
//! request-binding row (§C2) at all three receivers — the token endpoint, PAR and userinfo — then the token and
//! PAR rows (§C3), nonces (§C4) and the protected resource (§C5). Each test is named after its row ID(s) in
//! `/work/shared/security/CATALOGUE.md`; the coverage table is `SECURITY.md`.
//!
//! A refused proof must give the row's full expectation: `AS-400(invalid_dpop_proof)` (400, JSON,
//! `Cache-Control: no-store`) at token and PAR, `RS-401(invalid_dpop_proof)` (`WWW-Authenticate: DPoP
//! error=…, algs=…`, no resource data) at userinfo; and every test ends with a correct proof accepted by the
//! same receiver, so the refusal is the forged detail's doing and left nothing broken behind.
//!
//! Run: `cargo test -p gatehouse-idp --test catalogue_dpop`.

#[path = "support/attacks.rs"]
mod attacks;
mod support;

use attacks::*;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use gatehouse_proto::b64;
use gatehouse_proto::dpop_key::DpopKey;
use gatehouse_proto::pkce::CodeChallenge;
use serde_json::{Value, json};
use support::*;

// ---------------------------------------------------------------------------------------------------------------
// The three receivers of a proof, and a bench holding a DPoP-bound access token for userinfo.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Token,
    Par,
    Userinfo,
}

const RECEIVERS: [At; 3] = [At::Token, At::Par, At::Userinfo];

impl At {
    fn htm(self) -> &'static str {
        if self == At::Userinfo { "GET" } else { "POST" }
    }

    fn htu(self) -> &'static str {
        match self {
            At::Token => TOKEN_URL,
            At::Par => PAR_URL,
            At::Userinfo => USERINFO_URL,
        }
    }

    fn path(self) -> &'static str {
        match self {
            At::Token => "/token",
            At::Par => "/par",
            At::Userinfo => "/userinfo",
        }
    }
}

struct Bench {
    h: Harness,
    /// The key `at` is bound to.
    key: DpopKey,
    /// A DPoP-bound access token of alice (`openid profile offline_access`), for userinfo.
    at: String,
    refresh_token: String,
    challenge: String,
}

impl Bench {
    async fn new() -> Self {
        Self::from(Harness::new().await).await
    }

    async fn from(h: Harness) -> Self {
        let key = DpopKey::generate().unwrap();
        let tokens = dpop_code_exchange(&h, &key, "openid profile offline_access").await;
        assert_eq!(tokens["token_type"], "DPoP");
        Self {
            at: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
            challenge: CodeChallenge::s256(&verifier()).as_str().to_owned(),
            h,
            key,
        }
    }

    fn now(&self) -> i64 {
        now(&self.h)
    }

    fn ath(&self, at: At) -> Option<&str> {
        (at == At::Userinfo).then_some(self.at.as_str())
    }

    /// Correct claims for `at`, with a fresh `jti`.
    fn claims(&self, at: At) -> Value {
        proof_claims(at.htm(), at.htu(), self.now(), self.ath(at))
    }

    fn header(&self) -> Value {
        proof_header(&self.key)
    }

    fn forge(&self, header: &Value, claims: &Value) -> String {
        sign(&self.key, header, claims)
    }

    fn valid(&self, at: At) -> String {
        self.key.proof(at.htm(), at.htu(), self.ath(at), None, self.now())
    }

    async fn send(&self, at: At, proofs: &[String]) -> Reply {
        self.send_with(at, proofs, &[], "").await
    }

    /// Sends `at`'s request with these `DPoP` header values, extra headers and a query string.
    async fn send_with(&self, at: At, proofs: &[String], extra: &[(&str, &str)], query: &str) -> Reply {
        let uri = format!("{}{query}", at.path());
        let mut headers: Vec<(&str, String)> = proofs.iter().map(|p| ("dpop", p.clone())).collect();
        headers.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        match at {
            At::Token => {
                headers.push(("authorization", basic("m2m", M2M_SECRET)));
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.h.post_form(&uri, &[("grant_type", "client_credentials")], &headers).await
            }
            At::Par => {
                headers.push(("authorization", basic("c1", C1_SECRET)));
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.h.post_form(&uri, &par_form(&self.challenge), &headers).await
            }
            At::Userinfo => {
                let mut request = Request::get(uri).header(header::AUTHORIZATION, format!("DPoP {}", self.at));
                for (name, value) in &headers {
                    request = request.header(*name, value.as_str());
                }
                self.h.send(request.body(Body::empty()).unwrap()).await
            }
        }
    }

    /// The receiver's refusal: `AS-400(error)` at token and PAR, `RS-401(error)` at userinfo.
    #[track_caller]
    fn assert_refused(&self, at: At, reply: &Reply, error: &str, what: &str) {
        let what = format!("{at:?}: {what}");
        if at == At::Userinfo { assert_rs401(reply, error, &what) } else { assert_as400(reply, error, &what) }
    }

    #[track_caller]
    fn assert_accepted(&self, at: At, reply: &Reply, what: &str) {
        match at {
            At::Token => {
                assert_eq!(reply.status, StatusCode::OK, "{at:?}: {what}: {}", reply.text());
                assert_eq!(reply.json()["token_type"], "DPoP", "{what}");
            }
            At::Par => assert_eq!(reply.status, StatusCode::CREATED, "{at:?}: {what}: {}", reply.text()),
            At::Userinfo => {
                assert_eq!(reply.status, StatusCode::OK, "{at:?}: {what}: {}", reply.text());
                assert_eq!(reply.json()["name"], "Alice Liddell", "{what}");
            }
        }
    }

    /// The positive control: a correct proof is accepted right after the refusals.
    async fn assert_still_accepts(&self, at: At) {
        let reply = self.send(at, &[self.valid(at)]).await;
        self.assert_accepted(at, &reply, "a correct proof after the refused ones");
    }

    /// Sends every case to every receiver, expects `invalid_dpop_proof` for each, then the positive control.
    async fn refuses_everywhere(&self, cases: impl Fn(&Bench, At) -> Vec<(String, Vec<String>)>) {
        for at in RECEIVERS {
            for (what, proofs) in cases(self, at) {
                let reply = self.send(at, &proofs).await;
                self.assert_refused(at, &reply, "invalid_dpop_proof", &what);
            }
            self.assert_still_accepts(at).await;
        }
    }
}

fn par_form(challenge: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("response_type", "code"),
        ("redirect_uri", CALLBACK),
        ("scope", "openid"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

/// One case of one proof.
fn one(what: impl Into<String>, proof: String) -> (String, Vec<String>) {
    (what.into(), vec![proof])
}

/// Logs alice in as c1 and redeems the code with a proof of `key`; returns the token response.
async fn dpop_code_exchange(h: &Harness, key: &DpopKey, scope: &str) -> Value {
    let verifier = verifier();
    let (reply, _) = h.login("c1", &format!("scope={}&nonce=n-1", enc(scope)), &verifier).await;
    let code = reply.param("code").expect("a code");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    let mut nonce = None;
    for _ in 0..2 {
        let proof = key.proof("POST", TOKEN_URL, None, nonce.as_deref(), now(h));
        let reply = h.post_form("/token", &form, &[("authorization", &basic("c1", C1_SECRET)), ("dpop", &proof)]).await;
        if reply.status == StatusCode::BAD_REQUEST && reply.json()["error"] == "use_dpop_nonce" {
            nonce = Some(reply.headers["dpop-nonce"].to_str().unwrap().to_owned());
            continue;
        }
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        return reply.json();
    }
    panic!("no tokens after a nonce retry");
}

/// Splits a compact JWS into its three parts.
fn parts(jws: &str) -> (String, String, String) {
    let mut it = jws.split('.').map(str::to_owned);
    (it.next().unwrap(), it.next().unwrap(), it.next().unwrap())
}

// ---------------------------------------------------------------------------------------------------------------
// C1. Proof structure (token, PAR, userinfo)

#[tokio::test]
async fn dpop_s01_two_dpop_headers_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| vec![("two valid proofs".into(), vec![b.valid(at), b.valid(at)])]).await;
}

#[tokio::test]
async fn dpop_s02_two_proofs_folded_into_one_header_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        vec![
            one("comma and space", format!("{}, {}", b.valid(at), b.valid(at))),
            one("comma", format!("{},{}", b.valid(at), b.valid(at))),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s03_malformed_values_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let (h, p, s) = parts(&b.valid(at));
        vec![
            one("not a JWT", "not-a-jwt".into()),
            one("two segments", format!("{h}.{p}")),
            one("four segments", format!("{h}.{p}.{s}.{s}")),
            one("JWS JSON serialisation", json!({"protected": h, "payload": p, "signature": s}).to_string()),
            one(
                "JWE (five segments)",
                format!("{}.{s}.{s}.{p}.{s}", b64::encode(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)),
            ),
            one("empty signature", format!("{h}.{p}.")),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s04_non_token68_characters_are_refused_without_a_parser_error() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let (h, p, s) = parts(&b.valid(at));
        vec![
            one("raw JSON header", format!("{}.{p}.{s}", b.header())),
            one("quotes", format!("\"{h}.{p}.{s}\"")),
            one("space inside", format!("{h}.{p} .{s}")),
            one("percent-encoded", format!("%7B{h}.{p}.{s}")),
            one("standard base64 alphabet", format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/") + "+/")),
            one("padding", format!("{h}=.{p}.{s}")),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s05_typ_must_be_exactly_dpop_jwt() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        [None, Some("JWT"), Some("jwt"), Some("dpop+JWT"), Some("application/dpop+jwt"), Some("at+jwt")]
            .into_iter()
            .map(|typ| {
                let mut header = b.header();
                match typ {
                    Some(typ) => header["typ"] = typ.into(),
                    None => {
                        header.as_object_mut().unwrap().remove("typ");
                    }
                }
                one(format!("typ {typ:?}"), b.forge(&header, &b.claims(at)))
            })
            .collect()
    })
    .await;
}

#[tokio::test]
async fn dpop_s06_alg_none_in_every_spelling_is_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let mut cases = Vec::new();
        for alg in ["none", "None", "NONE", "nOnE", "none "] {
            let mut header = b.header();
            header["alg"] = alg.into();
            let claims = b.claims(at);
            cases.push(one(format!("{alg} with a trailing dot"), unsigned(&header, &claims, true)));
            cases.push(one(format!("{alg} without"), unsigned(&header, &claims, false)));
            // Signed anyway: the alg still decides.
            cases.push(one(format!("{alg} signed"), b.forge(&header, &claims)));
        }
        cases
    })
    .await;
}

#[tokio::test]
async fn dpop_s07_hs256_keyed_with_the_public_jwk_is_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let mut header = b.header();
        header["alg"] = "HS256".into();
        let jwk_json = serde_json::to_string(b.key.jwk()).unwrap();
        let x = b64::decode(b.key.jwk().x.as_deref().unwrap()).unwrap();
        vec![
            one("keyed with the JWK JSON", sign_hs256(jwk_json.as_bytes(), &header, &b.claims(at))),
            one("keyed with the x coordinate", sign_hs256(&x, &header, &b.claims(at))),
            one("keyed with the thumbprint", sign_hs256(b.key.jkt().as_bytes(), &header, &b.claims(at))),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s08_algs_outside_the_advertised_set_are_refused_and_userinfo_names_the_set() {
    let b = Bench::new().await;
    let advertised = b.h.get("/.well-known/openid-configuration", None).await.json();
    let advertised: Vec<String> = advertised["dpop_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    for alg in ["ES256K", "ES512", "PS512", "RS512", "HS512"] {
        assert!(!advertised.iter().any(|a| a == alg), "{alg} advertised");
    }
    b.refuses_everywhere(|b, at| {
        ["ES256K", "ES512", "PS512", "RS512", "HS512"]
            .into_iter()
            .map(|alg| {
                let mut header = b.header();
                header["alg"] = alg.into();
                one(alg, b.forge(&header, &b.claims(at)))
            })
            .collect()
    })
    .await;
    // §7.1: the resource's challenge carries algs="…" listing exactly the advertised algorithms.
    let mut header = b.header();
    header["alg"] = "ES256K".into();
    let reply = b.send(At::Userinfo, &[b.forge(&header, &b.claims(At::Userinfo))]).await;
    let challenge = dpop_challenge(&reply).unwrap();
    assert!(challenge.contains(&format!("algs=\"{}\"", advertised.join(" "))), "{challenge}");
}

#[tokio::test]
async fn dpop_s09_alg_and_key_mismatches_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let rsa = json!({"kty": "RSA", "n": RSA_N, "e": "AQAB"});
        let x25519 = json!({"kty": "OKP", "crv": "X25519", "x": b64::encode([9u8; 32])});
        let mut es256_rsa = b.header();
        es256_rsa["jwk"] = rsa.clone();
        let mut es384_p256 = b.header();
        es384_p256["alg"] = "ES384".into();
        let mut eddsa_x25519 = b.header();
        eddsa_x25519["alg"] = "EdDSA".into();
        eddsa_x25519["jwk"] = x25519;
        let mut rs256_ec = b.header();
        rs256_ec["alg"] = "RS256".into();
        vec![
            one("ES256 with an RSA jwk", b.forge(&es256_rsa, &b.claims(at))),
            one("ES384 with a P-256 jwk", b.forge(&es384_p256, &b.claims(at))),
            one("EdDSA with an X25519 jwk", b.forge(&eddsa_x25519, &b.claims(at))),
            one("RS256 with an EC jwk", b.forge(&rs256_ec, &b.claims(at))),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s10_psychic_and_der_encoded_signatures_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let input = signing_input(&b.header().to_string(), &b.claims(at).to_string());
        vec![
            one("r = s = 0", format!("{input}.{}", b64::encode([0u8; 64]))),
            one("r = s = n (the group order)", {
                let n = "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551";
                let n: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&n[2 * i..2 * i + 2], 16).unwrap()).collect();
                format!("{input}.{}", b64::encode([n.clone(), n].concat()))
            }),
            one("DER-encoded signature", sign_der(&b.key, &b.header(), &b.claims(at))),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s11_bad_signatures_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let other = DpopKey::generate().unwrap();
        let (h, p, s) = parts(&b.valid(at));
        let mut flipped = b64::decode(&s).unwrap();
        flipped[10] ^= 1;
        vec![
            one("signed by another key than jwk", sign(&other, &b.header(), &b.claims(at))),
            one("one signature bit flipped", format!("{h}.{p}.{}", b64::encode(flipped))),
            one("signature of another proof", {
                let (_, _, other_signature) = parts(&b.valid(at));
                format!("{h}.{}.{other_signature}", b64::encode(b.claims(at).to_string()))
            }),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s12_private_members_in_the_jwk_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let mut with_d = b.header();
        with_d["jwk"]["d"] = b64::encode([1u8; 32]).into();
        let mut rsa_private = b.header();
        rsa_private["alg"] = "RS256".into();
        rsa_private["jwk"] = json!({"kty": "RSA", "n": RSA_N, "e": "AQAB", "p": "AQAB", "q": "AQAB", "dp": "AQAB",
            "dq": "AQAB", "qi": "AQAB"});
        vec![
            one("EC jwk with d", b.forge(&with_d, &b.claims(at))),
            one("RSA jwk with p, q, dp, dq, qi", b.forge(&rsa_private, &b.claims(at))),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s13_symmetric_unknown_or_invalid_keys_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let jwk = |value: Value| {
            let mut header = b.header();
            header["jwk"] = value;
            b.forge(&header, &b.claims(at))
        };
        let x = b.key.jwk().x.clone().unwrap();
        let y = b.key.jwk().y.clone().unwrap();
        vec![
            one("kty oct", jwk(json!({"kty": "oct", "k": b64::encode([1u8; 32])}))),
            one("unknown kty", jwk(json!({"kty": "XYZ", "x": x}))),
            one(
                "point not on the curve",
                jwk(json!({"kty": "EC", "crv": "P-256", "x": x, "y": b64::encode([7u8; 32])})),
            ),
            one("crv P-384 with P-256 coordinates", jwk(json!({"kty": "EC", "crv": "P-384", "x": x, "y": y}))),
            one(
                "coordinates of the wrong length",
                jwk(json!({"kty": "EC", "crv": "P-256", "x": b64::encode([1u8; 31]), "y": y})),
            ),
            one("jwk not an object", jwk(json!("EC"))),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s14_a_referenced_key_is_refused_and_never_fetched() {
    let b = Bench::new().await;
    let tripwire = Tripwire::new();
    let url = tripwire.url.clone();
    b.refuses_everywhere(|b, at| {
        let without_jwk = |name: &str, value: Value| {
            let mut header = b.header();
            header.as_object_mut().unwrap().remove("jwk");
            header[name] = value;
            one(format!("{name} instead of jwk"), b.forge(&header, &b.claims(at)))
        };
        vec![
            without_jwk("kid", "k1".into()),
            without_jwk("jku", url.clone().into()),
            without_jwk("x5u", url.clone().into()),
            without_jwk("x5c", json!([b64::encode([0x30u8; 64])])),
        ]
    })
    .await;
    assert_eq!(tripwire.connections(), 0, "jku/x5u were fetched (SSRF)");
}

#[tokio::test]
async fn dpop_s15_each_required_claim_is_required() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        ["jti", "htm", "htu", "iat"]
            .into_iter()
            .map(|name| {
                let mut claims = b.claims(at);
                claims.as_object_mut().unwrap().remove(name);
                one(format!("no {name}"), b.forge(&b.header(), &claims))
            })
            .collect()
    })
    .await;
}

#[tokio::test]
async fn dpop_s16_claims_of_the_wrong_json_type_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let claims = b.claims(at);
        let change = |name: &str, value: Value| {
            let mut claims = claims.clone();
            claims[name] = value;
            one(format!("{name} = {}", claims[name]), b.forge(&b.header(), &claims))
        };
        vec![
            change("iat", b.now().to_string().into()),
            change("iat", json!(b.now() as f64 + 0.5)),
            change("htu", json!([at.htu()])),
            change("jti", json!(12345)),
            change("htm", json!(["POST"])),
            change("ath", json!(1)),
            ("claims not an object".into(), vec![sign_text(&b.key, &b.header().to_string(), "[1,2,3]")]),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s17_oversized_jti_and_proofs_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let mut long_jti = b.claims(at);
        long_jti["jti"] = "j".repeat(300).into();
        let mut huge_jti = b.claims(at);
        huge_jti["jti"] = "j".repeat(10 * 1024).into();
        let mut huge_proof = b.claims(at);
        huge_proof["padding"] = "p".repeat(100 * 1024).into();
        vec![
            one("jti of 300 characters", b.forge(&b.header(), &long_jti)),
            one("jti of 10 KB", b.forge(&b.header(), &huge_jti)),
            one("proof of 100 KB", b.forge(&b.header(), &huge_proof)),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s18_duplicate_members_are_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let jwk = serde_json::to_string(b.key.jwk()).unwrap();
        let claims = b.claims(at);
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk},"alg":"ES256"}}"#);
        let claims_text = claims.to_string();
        let twice_htu = format!(r#"{},"htu":"https://evil.test/x"}}"#, claims_text.trim_end_matches('}'));
        let twice_jti = format!(r#"{},"jti":"other"}}"#, claims_text.trim_end_matches('}'));
        vec![
            one("alg twice in the header", sign_text(&b.key, &header, &claims_text)),
            one("htu twice in the claims", sign_text(&b.key, &b.header().to_string(), &twice_htu)),
            one("jti twice in the claims", sign_text(&b.key, &b.header().to_string(), &twice_jti)),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s19_crit_with_an_unknown_extension_is_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let mut crit = b.header();
        crit["crit"] = json!(["exp-x"]);
        crit["exp-x"] = json!(1);
        let mut b64_false = b.header();
        b64_false["b64"] = false.into();
        b64_false["crit"] = json!(["b64"]);
        vec![
            one("crit [exp-x]", b.forge(&crit, &b.claims(at))),
            one("b64 false (RFC 7797)", b.forge(&b64_false, &b.claims(at))),
        ]
    })
    .await;
}

#[tokio::test]
async fn dpop_s20_unknown_header_parameters_and_claims_are_ignored() {
    let b = Bench::new().await;
    for at in RECEIVERS {
        let mut header = b.header();
        header["x-extra"] = "ignored".into();
        header["kid"] = "also-ignored".into();
        let mut claims = b.claims(at);
        claims["x-claim"] = json!({"nested": [1, 2]});
        claims["client_id"] = "anything".into();
        let reply = b.send(at, &[b.forge(&header, &claims)]).await;
        b.assert_accepted(at, &reply, "unknown members");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// C2. Request binding

#[tokio::test]
async fn dpop_b01_htm_must_be_the_method_case_sensitively() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let wrong = if at.htm() == "GET" { "POST" } else { "GET" };
        [wrong, &at.htm().to_lowercase(), "PUT", ""]
            .into_iter()
            .map(|htm| {
                let mut claims = b.claims(at);
                claims["htm"] = htm.into();
                one(format!("htm {htm:?}"), b.forge(&b.header(), &claims))
            })
            .collect()
    })
    .await;
}

#[tokio::test]
async fn dpop_b02_htu_for_another_path_host_scheme_or_port_is_refused() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        let path = at.path();
        [
            format!("https://id.test{}x", path),
            "https://id.test/other".to_owned(),
            format!("https://evil.test{path}"),
            format!("http://id.test{path}"),
            format!("https://id.test:8443{path}"),
            path.to_owned(),
            format!("https://id.test.evil.test{path}"),
        ]
        .into_iter()
        .map(|htu| {
            let mut claims = b.claims(at);
            claims["htu"] = htu.clone().into();
            one(format!("htu {htu}"), b.forge(&b.header(), &claims))
        })
        .collect()
    })
    .await;
}

#[tokio::test]
async fn dpop_b03_query_and_fragment_are_ignored_on_both_sides() {
    let b = Bench::new().await;
    for at in RECEIVERS {
        for htu in [format!("{}?x=1", at.htu()), format!("{}#frag", at.htu())] {
            let mut claims = b.claims(at);
            claims["htu"] = htu.clone().into();
            let reply = b.send(at, &[b.forge(&b.header(), &claims)]).await;
            b.assert_accepted(at, &reply, &htu);
        }
        // The request has a query, the htu none.
        let reply = b.send_with(at, &[b.valid(at)], &[], "?x=1").await;
        b.assert_accepted(at, &reply, "request with a query");
    }
}

#[tokio::test]
async fn dpop_b04_htu_is_compared_after_rfc3986_normalisation_but_never_to_another_path() {
    let b = Bench::new().await;
    for at in RECEIVERS {
        let path = at.path();
        let encoded_path: String =
            path.chars().map(|c| if c == '/' { "/".to_owned() } else { format!("%{:02x}", c as u8) }).collect();
        for htu in [
            format!("HTTPS://ID.TEST{path}"),
            format!("https://id.test:443{path}"),
            format!("https://id.test.{path}"),
            format!("https://id.test{encoded_path}"),
            format!("https://id.test/x/..{path}"),
        ] {
            let mut claims = b.claims(at);
            claims["htu"] = htu.clone().into();
            let reply = b.send(at, &[b.forge(&b.header(), &claims)]).await;
            b.assert_accepted(at, &reply, &htu);
        }
    }
    b.refuses_everywhere(|b, at| {
        let path = at.path();
        [
            format!("https://id.test{}", path.to_uppercase()),
            format!("https://id.test{path}/../other"),
            format!("https://id.test{path}%2F"),
            format!("https://id.test{path}/"),
        ]
        .into_iter()
        .map(|htu| {
            let mut claims = b.claims(at);
            claims["htu"] = htu.clone().into();
            one(format!("htu {htu}"), b.forge(&b.header(), &claims))
        })
        .collect()
    })
    .await;
}

/// Catalogue rank 9 (E11): `htu` is compared with the configured issuer's URL, never with a host the client
/// names in forwarding headers.
#[tokio::test]
async fn dpop_b05_spoofed_forwarding_headers_never_change_the_expected_htu() {
    let b = Bench::new().await;
    let spoof = [
        ("x-forwarded-host", "other.example"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-port", "8443"),
        ("forwarded", "host=other.example;proto=http"),
        ("x-original-url", "/other"),
    ];
    for at in RECEIVERS {
        for htu in [format!("https://other.example{}", at.path()), format!("http://id.test{}", at.path())] {
            let mut claims = b.claims(at);
            claims["htu"] = htu.clone().into();
            let reply = b.send_with(at, &[b.forge(&b.header(), &claims)], &spoof, "").await;
            b.assert_refused(at, &reply, "invalid_dpop_proof", &format!("htu {htu} with spoofed headers"));
        }
        let reply = b.send_with(at, &[b.valid(at)], &spoof, "").await;
        b.assert_accepted(at, &reply, "the configured htu despite spoofed headers");
    }
}

#[tokio::test]
async fn dpop_b06_b07_dd5_iat_ten_seconds_off_is_accepted_an_hour_off_is_not() {
    let b = Bench::new().await;
    for at in RECEIVERS {
        for offset in [-10, 10] {
            let mut claims = b.claims(at);
            claims["iat"] = (b.now() + offset).into();
            let reply = b.send(at, &[b.forge(&b.header(), &claims)]).await;
            b.assert_accepted(at, &reply, &format!("iat {offset:+}"));
        }
    }
    b.refuses_everywhere(|b, at| {
        [b.now() + 3600, b.now() - 3600, 0, b.now() * 1000, b.now() + 61, b.now() - 301]
            .into_iter()
            .map(|iat| {
                let mut claims = b.claims(at);
                claims["iat"] = iat.into();
                one(format!("iat {iat}"), b.forge(&b.header(), &claims))
            })
            .collect()
    })
    .await;
}

#[tokio::test]
async fn dpop_b08_exp_and_nbf_keep_their_jwt_meaning() {
    let b = Bench::new().await;
    for at in RECEIVERS {
        let mut claims = b.claims(at);
        claims["nbf"] = b.now().into();
        claims["exp"] = (b.now() + 300).into();
        let reply = b.send(at, &[b.forge(&b.header(), &claims)]).await;
        b.assert_accepted(at, &reply, "nbf = now, exp = now + 5 min");
    }
    b.refuses_everywhere(|b, at| {
        let change = |name: &str, value: Value| {
            let mut claims = b.claims(at);
            claims[name] = value;
            one(format!("{name} = {}", claims[name]), b.forge(&b.header(), &claims))
        };
        vec![
            change("exp", (b.now() - 600).into()),
            change("nbf", (b.now() + 600).into()),
            change("exp", (b.now() + 300).to_string().into()),
        ]
    })
    .await;
}

/// DD4: a proof is good for one request.
#[tokio::test]
async fn dpop_b09_dd4_an_exact_replay_is_refused() {
    let b = Bench::new().await;
    for at in RECEIVERS {
        let proof = b.valid(at);
        let first = b.send(at, std::slice::from_ref(&proof)).await;
        b.assert_accepted(at, &first, "first use");
        let again = b.send(at, &[proof]).await;
        b.assert_refused(at, &again, "invalid_dpop_proof", "replay");
        b.assert_still_accepts(at).await;
    }
}

/// The replay key is the canonical (jkt, jti): cosmetic variants of the same proof are replays too.
#[tokio::test]
async fn dpop_b10_replays_that_differ_only_cosmetically_are_refused() {
    let b = Bench::new().await;
    for at in RECEIVERS {
        let claims = b.claims(at);
        let first = b.send(at, &[b.forge(&b.header(), &claims)]).await;
        b.assert_accepted(at, &first, "first use");
        for (what, name, value) in [
            ("htu with a query", "htu", Value::from(format!("{}?x=1", at.htu()))),
            ("htu upper-case host", "htu", Value::from(at.htu().replace("id.test", "ID.TEST"))),
            ("iat one second later", "iat", Value::from(b.now() + 1)),
        ] {
            let mut variant = claims.clone();
            variant[name] = value;
            let reply = b.send(at, &[b.forge(&b.header(), &variant)]).await;
            b.assert_refused(at, &reply, "invalid_dpop_proof", what);
        }
        // The same jti under another key is another proof (the replay key is scoped to the key).
        let other = DpopKey::generate().unwrap();
        if at != At::Userinfo {
            let reply = b.send(at, &[sign(&other, &proof_header(&other), &claims)]).await;
            b.assert_accepted(at, &reply, "same jti, other key");
        }
    }
}

#[tokio::test]
async fn dpop_b11_a_proof_for_one_endpoint_is_refused_at_another() {
    let b = Bench::new().await;
    b.refuses_everywhere(|b, at| {
        RECEIVERS
            .into_iter()
            .filter(|other| *other != at)
            .map(|other| one(format!("a proof made for {other:?}"), b.valid(other)))
            .collect()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// C3. Token endpoint and PAR

/// DPOP-T01 on the code exchange, and DPOP-R10: introspection reports the binding and takes no proof.
#[tokio::test]
async fn dpop_t01_r10_a_code_exchange_with_a_proof_binds_the_token_and_introspection_shows_it() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let verifier = verifier();
    let (reply, _) = h.login("c1", "scope=openid%20api", &verifier).await;
    let code = reply.param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    let proof = key.proof("POST", TOKEN_URL, None, None, now(&h));
    let reply = h.post_form("/token", &form, &[("authorization", &basic("c1", C1_SECRET)), ("dpop", &proof)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "DPoP");
    let at = tokens["access_token"].as_str().unwrap();
    let (_, claims) = jwt_parts(at);
    assert_eq!(claims["cnf"]["jkt"], key.jkt(), "RFC 7638 SHA-256 thumbprint of the proof key");
    assert_eq!(key.jwk().thumbprint().unwrap(), key.jkt());
    // R10: introspection (no DPoP header) reports cnf.jkt and token_type DPoP.
    let answer = h.post_form("/introspect", &[("token", at)], &[("authorization", &basic("c1", C1_SECRET))]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store");
    let answer = answer.json();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["cnf"]["jkt"], key.jkt());
    assert_eq!(answer["token_type"], "DPoP");
}

/// A client registered with `require_dpop` (the product's counterpart of DCR's `dpop_bound_access_tokens`).
async fn dpop_required_client(h: &Harness) -> String {
    let mut record = client(
        "dpc",
        gatehouse_proto::vocab::ClientAuthMethod::ClientSecretBasic,
        &[
            gatehouse_proto::vocab::GrantType::AuthorizationCode,
            gatehouse_proto::vocab::GrantType::RefreshToken,
            gatehouse_proto::vocab::GrantType::ClientCredentials,
        ],
        &["openid", "offline_access", "api"],
    );
    record.require_dpop = true;
    gatehouse_idp::admin::add_client(&h.store, record).await.unwrap().unwrap().expose().to_owned()
}

#[tokio::test]
async fn dpop_t03_t04_a_client_that_must_use_dpop_gets_nothing_without_a_proof() {
    let h = Harness::new().await;
    let secret = dpop_required_client(&h).await;
    let auth = basic("dpc", &secret);
    let reply = h.post_form("/token", &[("grant_type", "client_credentials")], &[("authorization", &auth)]).await;
    assert_as400(&reply, "invalid_dpop_proof", "client_credentials without DPoP");
    // The code exchange: refused without a proof, before the code is spent.
    let verifier = verifier();
    let (reply, _) = h.login("dpc", "scope=openid", &verifier).await;
    let code = reply.param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    assert_as400(&h.post_form("/token", &form, &[("authorization", &auth)]).await, "invalid_dpop_proof", "exchange");
    let key = DpopKey::generate().unwrap();
    let proof = key.proof("POST", TOKEN_URL, None, None, now(&h));
    let reply = h.post_form("/token", &form, &[("authorization", &auth), ("dpop", &proof)]).await;
    assert_eq!(reply.status, StatusCode::OK, "NO-SIDE-EFFECT: the code is still good: {}", reply.text());
    assert_eq!(reply.json()["token_type"], "DPoP");
    // PAR without a proof or dpop_jkt.
    let challenge = CodeChallenge::s256(&support::verifier()).as_str().to_owned();
    let reply = h.post_form("/par", &par_form(&challenge), &[("authorization", &auth)]).await;
    assert_as400(&reply, "invalid_dpop_proof", "PAR without DPoP");
}

/// DD3: `ath` in a proof at the token endpoint and PAR is ignored.
#[tokio::test]
async fn dpop_t05_dd3_ath_at_the_token_endpoint_and_par_is_ignored() {
    let b = Bench::new().await;
    for at in [At::Token, At::Par] {
        let proof = b.key.proof(at.htm(), at.htu(), Some("some-access-token"), None, b.now());
        let reply = b.send(at, &[proof]).await;
        b.assert_accepted(at, &reply, "a proof with ath");
    }
}

/// Logs alice in with `extra` authorization parameters and returns the code and verifier.
async fn code_with(h: &Harness, extra: &str) -> (String, gatehouse_proto::pkce::CodeVerifier) {
    let verifier = verifier();
    let (reply, _) = h.login("c1", &format!("scope=openid{extra}"), &verifier).await;
    (reply.param("code").expect("a code"), verifier)
}

async fn redeem(h: &Harness, code: &str, verifier: &str, proof: Option<String>) -> Reply {
    let form =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", CALLBACK), ("code_verifier", verifier)];
    let auth = basic("c1", C1_SECRET);
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(proof) = &proof {
        headers.push(("dpop", proof.as_str()));
    }
    h.post_form("/token", &form, &headers).await
}

#[tokio::test]
async fn dpop_t06_a_code_bound_with_dpop_jkt_needs_that_key() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let other = DpopKey::generate().unwrap();
    for (what, proof) in [("another key", Some(&other)), ("no proof", None)] {
        let (code, verifier) = code_with(&h, &format!("&dpop_jkt={}", key.jkt())).await;
        let reply =
            redeem(&h, &code, verifier.expose(), proof.map(|k| k.proof("POST", TOKEN_URL, None, None, now(&h)))).await;
        assert_as400(&reply, "invalid_dpop_proof", what);
        // NO-SIDE-EFFECT for the attacker: nothing issued; the attempt spent the code (RFC 9700 §4.2.4).
        let again = redeem(&h, &code, verifier.expose(), Some(key.proof("POST", TOKEN_URL, None, None, now(&h)))).await;
        assert_as400(&again, "invalid_grant", "the code after a wrong-key attempt");
    }
    let (code, verifier) = code_with(&h, &format!("&dpop_jkt={}", key.jkt())).await;
    let reply = redeem(&h, &code, verifier.expose(), Some(key.proof("POST", TOKEN_URL, None, None, now(&h)))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(jwt_parts(reply.json()["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
}

/// Pushes a request with a proof of `key` (RFC 9449 §10.1), completes the login and returns code and verifier.
async fn par_code(h: &Harness, key: &DpopKey) -> (String, gatehouse_proto::pkce::CodeVerifier) {
    let verifier = verifier();
    let challenge = CodeChallenge::s256(&verifier).as_str().to_owned();
    let proof = key.proof("POST", PAR_URL, None, None, now(h));
    let reply = h
        .post_form("/par", &par_form(&challenge), &[("authorization", &basic("c1", C1_SECRET)), ("dpop", &proof)])
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let request_uri = reply.json()["request_uri"].as_str().unwrap().to_owned();
    let page = h.get(&format!("/authorize?client_id=c1&request_uri={}", enc(&request_uri)), None).await;
    let (csrf, request) = form_fields(&page.text());
    let cookie = cookie_pair(&page.headers, "gh-csrf");
    let reply = h
        .post_form(
            "/login",
            &[("username", "alice"), ("password", ALICE_PASSWORD), ("csrf", &csrf), ("request", &request)],
            &[("cookie", &cookie)],
        )
        .await;
    (reply.param("code").expect("a code"), verifier)
}

#[tokio::test]
async fn dpop_t07_a_code_bound_by_the_par_proof_needs_that_key() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let (code, verifier) = par_code(&h, &key).await;
    let other = DpopKey::generate().unwrap();
    let reply = redeem(&h, &code, verifier.expose(), Some(other.proof("POST", TOKEN_URL, None, None, now(&h)))).await;
    assert_as400(&reply, "invalid_dpop_proof", "another key than the PAR proof's");
    let (code, verifier) = par_code(&h, &key).await;
    let reply = redeem(&h, &code, verifier.expose(), Some(key.proof("POST", TOKEN_URL, None, None, now(&h)))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
}

#[tokio::test]
async fn dpop_t09_a_par_proof_is_checked_in_full() {
    let b = Bench::new().await;
    for (what, proof) in [
        ("htu of the token endpoint", b.key.proof("POST", TOKEN_URL, None, None, b.now())),
        ("htm GET", b.key.proof("GET", PAR_URL, None, None, b.now())),
        ("an hour old", b.key.proof("POST", PAR_URL, None, None, b.now() - 3600)),
    ] {
        let reply = b.send(At::Par, &[proof]).await;
        assert_as400(&reply, "invalid_dpop_proof", what);
        assert!(reply.json().get("request_uri").is_none());
    }
}

#[tokio::test]
async fn dpop_t10_a_malformed_dpop_jkt_is_invalid_request() {
    let h = Harness::new().await;
    let challenge = CodeChallenge::s256(&verifier()).as_str().to_owned();
    let auth = basic("c1", C1_SECRET);
    for jkt in ["not base64url!", "AAAA", &"A".repeat(44), &"A".repeat(43).replace('A', "+"), ""] {
        let mut form = par_form(&challenge);
        form.push(("dpop_jkt", jkt));
        let reply = h.post_form("/par", &form, &[("authorization", &auth)]).await;
        if jkt.is_empty() {
            // An empty parameter is treated as absent.
            assert!(reply.status == StatusCode::CREATED || reply.status == StatusCode::BAD_REQUEST);
            continue;
        }
        assert_as400(&reply, "invalid_request", &format!("PAR dpop_jkt {jkt:?}"));
        let front = h.get(&authorize_uri("c1", &format!("state=s&dpop_jkt={}", enc(jkt)), &verifier()), None).await;
        assert_eq!(front.status, StatusCode::SEE_OTHER, "front channel {jkt:?}");
        assert_eq!(front.param("error").as_deref(), Some("invalid_request"));
        assert_eq!(front.param("state").as_deref(), Some("s"));
        assert_eq!(front.param("iss").as_deref(), Some(ISSUER));
        assert!(front.param("code").is_none());
    }
}

/// DD2: a public client's refresh token is bound to its DPoP key.
#[tokio::test]
async fn dpop_t12_dd2_a_public_clients_refresh_token_needs_its_key() {
    let h = Harness::new().await;
    let key = DpopKey::generate().unwrap();
    let verifier = verifier();
    let (reply, _) = h.login("pub", "scope=openid%20offline_access", &verifier).await;
    let code = reply.param("code").unwrap();
    let form = [
        ("client_id", "pub"),
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    let reply = h.post_form("/token", &form, &[("dpop", &key.proof("POST", TOKEN_URL, None, None, now(&h)))]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let rt = reply.json()["refresh_token"].as_str().unwrap().to_owned();
    let refresh = [("client_id", "pub"), ("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
    let other = DpopKey::generate().unwrap();
    let wrong =
        h.post_form("/token", &refresh, &[("dpop", &other.proof("POST", TOKEN_URL, None, None, now(&h)))]).await;
    assert_as400(&wrong, "invalid_dpop_proof", "another key");
    assert_as400(&h.post_form("/token", &refresh, &[]).await, "invalid_dpop_proof", "no proof");
    // NO-SIDE-EFFECT: the refused attempts did not rotate or revoke the token.
    let right = h.post_form("/token", &refresh, &[("dpop", &key.proof("POST", TOKEN_URL, None, None, now(&h)))]).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text());
    assert_eq!(jwt_parts(right.json()["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
}

/// A confidential client that is not required to use DPoP gets a Bearer token when it refreshes without a
/// proof (catalogue's "if policy allows": `token_type=Bearer`, no `cnf`; the gateway refuses such an answer,
/// DPOP-C06); a client registered with `require_dpop` is refused.
#[tokio::test]
async fn dpop_t13_refresh_without_a_proof_is_bearer_or_refused_by_policy() {
    let b = Bench::new().await;
    let reply =
        b.h.token_basic("c1", C1_SECRET, &[("grant_type", "refresh_token"), ("refresh_token", &b.refresh_token)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let tokens = reply.json();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(jwt_parts(tokens["access_token"].as_str().unwrap()).1.get("cnf").is_none());
    // The policy client.
    let h = Harness::new().await;
    let secret = dpop_required_client(&h).await;
    let key = DpopKey::generate().unwrap();
    let verifier = verifier();
    let (reply, _) = h.login("dpc", "scope=openid%20offline_access", &verifier).await;
    let code = reply.param("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", verifier.expose()),
    ];
    let auth = basic("dpc", &secret);
    let tokens = h
        .post_form(
            "/token",
            &form,
            &[("authorization", &auth), ("dpop", &key.proof("POST", TOKEN_URL, None, None, now(&h)))],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text());
    let rt = tokens.json()["refresh_token"].as_str().unwrap().to_owned();
    let refresh = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
    assert_as400(&h.post_form("/token", &refresh, &[("authorization", &auth)]).await, "invalid_dpop_proof", "no proof");
}

/// Policy: a client may use its `private_key_jwt` key as its DPoP key too — one key, one algorithm (ES256) for
/// both, and the two JWTs cannot stand in for each other (`typ`, claims: catalogue JWT-25).
#[tokio::test]
async fn dpop_t14_the_client_assertion_key_as_dpop_key_is_accepted_with_one_algorithm() {
    let key = DpopKey::generate().unwrap();
    let mut jwk = key.jwk().clone();
    jwk.kid = Some("k1".into());
    jwk.alg = Some("ES256".into());
    let h = Harness::with(|_| {}, Some(gatehouse_proto::JwkSet { keys: vec![jwk] })).await;
    let assertion = sign(
        &key,
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"iss": "pkjwt", "sub": "pkjwt", "aud": ISSUER, "jti": jti(), "exp": now(&h) + 60, "iat": now(&h)}),
    );
    let reply = h
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", &assertion),
            ],
            &[("dpop", &key.proof("POST", TOKEN_URL, None, None, now(&h)))],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(jwt_parts(reply.json()["access_token"].as_str().unwrap()).1["cnf"]["jkt"], key.jkt());
}

// ---------------------------------------------------------------------------------------------------------------
// C4. Nonces (with `[idp.dpop] require_nonce`)

async fn nonce_bench() -> Bench {
    Bench::from(Harness::with(|s| s.dpop.require_nonce = true, None).await).await
}

/// The one `DPoP-Nonce` header of a reply, checked against RFC 9449 §8.1 `1*NQCHAR`.
#[track_caller]
fn the_nonce(reply: &Reply) -> String {
    let values: Vec<_> = reply.headers.get_all("dpop-nonce").iter().collect();
    assert_eq!(values.len(), 1, "exactly one DPoP-Nonce header");
    let nonce = values[0].to_str().unwrap().to_owned();
    assert!(!nonce.is_empty() && nonce.bytes().all(|c| matches!(c, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)), "{nonce:?}");
    nonce
}

#[tokio::test]
async fn dpop_n01_n02_n04_a_nonce_is_demanded_used_and_never_optional_afterwards() {
    let b = nonce_bench().await;
    for at in RECEIVERS {
        // N01: a proof without nonce: the server's error with exactly one well-formed DPoP-Nonce.
        let first = b.send(at, &[b.valid(at)]).await;
        b.assert_refused(at, &first, "use_dpop_nonce", "no nonce");
        let nonce = the_nonce(&first);
        // N02: the retry with the nonce succeeds.
        let proof = b.key.proof(at.htm(), at.htu(), b.ath(at), Some(&nonce), b.now());
        let second = b.send(at, &[proof]).await;
        b.assert_accepted(at, &second, "with the nonce");
        if second.headers.contains_key("dpop-nonce") {
            assert_eq!(second.headers[header::CACHE_CONTROL], "no-store");
        }
        // N04: having been given a nonce, a proof without one is still refused.
        let downgrade = b.send(at, &[b.valid(at)]).await;
        b.assert_refused(at, &downgrade, "use_dpop_nonce", "nonce downgrade");
    }
}

#[tokio::test]
async fn dpop_n03_a_wrong_stale_or_foreign_nonce_gets_a_fresh_one() {
    let b = nonce_bench().await;
    let foreign = Harness::with(
        |s| {
            s.dpop.require_nonce = true;
            s.master_key = gatehouse_idp::settings::MasterKey([8; 32]);
        },
        None,
    )
    .await;
    let key = DpopKey::generate().unwrap();
    let reply = foreign
        .post_form(
            "/token",
            &[("grant_type", "client_credentials")],
            &[
                ("authorization", &basic("m2m", M2M_SECRET)),
                ("dpop", &key.proof("POST", TOKEN_URL, None, None, now(&foreign))),
            ],
        )
        .await;
    let foreign_nonce = the_nonce(&reply);
    let current = the_nonce(&b.send(At::Token, &[b.valid(At::Token)]).await);
    assert_ne!(foreign_nonce, current, "another deployment's nonces differ");
    let stale = current.clone();
    b.h.clock.advance(3 * 300);
    // The userinfo token has expired by now; token and PAR show the rule.
    for at in [At::Token, At::Par] {
        for (what, nonce) in
            [("wrong", "AAAA".to_owned()), ("stale", stale.clone()), ("foreign", foreign_nonce.clone())]
        {
            let proof = b.key.proof(at.htm(), at.htu(), None, Some(&nonce), b.now());
            let reply = b.send(at, &[proof]).await;
            b.assert_refused(at, &reply, "use_dpop_nonce", what);
            let fresh = the_nonce(&reply);
            assert_ne!(fresh, nonce, "{what}: a fresh nonce");
            let retry = b.key.proof(at.htm(), at.htu(), None, Some(&fresh), b.now());
            b.assert_accepted(at, &b.send(at, &[retry]).await, &format!("{what}: retried with the fresh nonce"));
        }
    }
}

/// DPOP-N05: the resource (userinfo) demands its nonce with 401 and a `DPoP-Nonce`.
#[tokio::test]
async fn dpop_n05_userinfo_demands_a_nonce_with_401() {
    let b = nonce_bench().await;
    let reply = b.send(At::Userinfo, &[b.valid(At::Userinfo)]).await;
    assert_rs401(&reply, "use_dpop_nonce", "no nonce at userinfo");
    let nonce = the_nonce(&reply);
    let proof = b.key.proof("GET", USERINFO_URL, Some(&b.at), Some(&nonce), b.now());
    b.assert_accepted(At::Userinfo, &b.send(At::Userinfo, &[proof]).await, "with the nonce");
}

/// Nonces are HMACs of a time slot: unpredictable without the server's key, new every slot, the same on every
/// node of one deployment (and for every client within one slot, by design: they are stateless).
#[tokio::test]
async fn dpop_n07_nonces_are_unpredictable_and_never_repeat_across_slots() {
    let h = Harness::with(|s| s.dpop.require_nonce = true, None).await;
    let key = DpopKey::generate().unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut tags = std::collections::HashSet::new();
    for _ in 0..1000 {
        let proof = key.proof("POST", TOKEN_URL, None, None, now(&h));
        let reply = h
            .post_form(
                "/token",
                &[("grant_type", "client_credentials")],
                &[("authorization", &basic("m2m", M2M_SECRET)), ("dpop", &proof)],
            )
            .await;
        let nonce = the_nonce(&reply);
        let bytes = b64::decode(&nonce).expect("base64url");
        assert!(bytes.len() >= 24, "a 128-bit tag besides the slot");
        assert!(tags.insert(bytes[8..].to_vec()), "a tag repeated");
        assert!(seen.insert(nonce), "a nonce repeated");
        h.clock.advance(300);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// C5. Protected resource (userinfo)

#[tokio::test]
async fn dpop_r01_no_credentials_offers_both_schemes_without_an_error_code() {
    let h = Harness::new().await;
    let reply = h.get("/userinfo", None).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<String> =
        reply.headers.get_all(header::WWW_AUTHENTICATE).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let dpop = challenges.iter().find(|c| c.starts_with("DPoP")).expect("a DPoP challenge");
    assert!(dpop.contains("algs=\"") && !dpop.contains("error="), "{dpop}");
    let bearer = challenges.iter().find(|c| c.starts_with("Bearer")).expect("a Bearer challenge");
    assert!(!bearer.contains("error="), "{bearer}");
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn dpop_r02_a_bound_token_without_a_proof_is_refused() {
    let b = Bench::new().await;
    assert_rs401(&b.send(At::Userinfo, &[]).await, "invalid_dpop_proof", "no DPoP header");
    b.assert_still_accepts(At::Userinfo).await;
}

#[tokio::test]
async fn dpop_r03_a_bound_token_is_never_accepted_as_a_bearer_token() {
    let b = Bench::new().await;
    for proof in [None, Some(b.valid(At::Userinfo))] {
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let mut request = Request::get("/userinfo").header(header::AUTHORIZATION, format!("{scheme} {}", b.at));
            if let Some(proof) = &proof {
                request = request.header("dpop", proof.as_str());
            }
            let reply = b.h.send(request.body(Body::empty()).unwrap()).await;
            assert_rs401(&reply, "invalid_token", &format!("{scheme}, proof {}", proof.is_some()));
        }
    }
    b.assert_still_accepts(At::Userinfo).await;
}

#[tokio::test]
async fn dpop_r04_ath_must_be_the_hash_of_this_token() {
    use sha2::Digest;
    let b = Bench::new().await;
    let digest = sha2::Sha256::digest(b.at.as_bytes());
    let padded = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE, digest);
    // The standard alphabet, padded: differs from base64url in its `=` even when no `+` or `/` occurs.
    let standard = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, digest);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    let of_another_encoding = b64::encode(sha2::Sha256::digest(format!("DPoP {}", b.at).as_bytes()));
    let mut cases: Vec<(&str, Option<Value>)> = vec![
        ("missing", None),
        ("of another token", Some(gatehouse_proto::dpop::ath("another").into())),
        ("padded base64url", Some(padded.into())),
        ("standard base64 (padded)", Some(standard.into())),
        ("hex", Some(hex.into())),
        ("hash of the Authorization value", Some(of_another_encoding.into())),
    ];
    // The standard alphabet without padding differs only when the digest's encoding has a `+` or `/`.
    let unpadded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, digest);
    if unpadded != b64::encode(digest) {
        cases.push(("standard base64", Some(unpadded.into())));
    }
    for (what, ath) in cases {
        let mut claims = b.claims(At::Userinfo);
        match ath {
            Some(ath) => claims["ath"] = ath,
            None => {
                claims.as_object_mut().unwrap().remove("ath");
            }
        }
        let reply = b.send(At::Userinfo, &[b.forge(&b.header(), &claims)]).await;
        assert_rs401(&reply, "invalid_dpop_proof", what);
    }
    b.assert_still_accepts(At::Userinfo).await;
}

/// RFC 9449 §7.1: a proof by another key than the token's `cnf.jkt` is "Invalid DPoP key binding".
#[tokio::test]
async fn dpop_r05_a_proof_by_another_key_than_cnf_jkt_is_invalid_token() {
    let b = Bench::new().await;
    let other = DpopKey::generate().unwrap();
    let proof = other.proof("GET", USERINFO_URL, Some(&b.at), None, b.now());
    assert_rs401(&b.send(At::Userinfo, &[proof]).await, "invalid_token", "another key");
    b.assert_still_accepts(At::Userinfo).await;
}

#[tokio::test]
async fn dpop_r06_two_authorization_headers_are_invalid_request() {
    let b = Bench::new().await;
    let reply =
        b.h.send(
            Request::get("/userinfo")
                .header(header::AUTHORIZATION, format!("Bearer {}", b.at))
                .header(header::AUTHORIZATION, format!("DPoP {}", b.at))
                .header("dpop", b.valid(At::Userinfo))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_as400(&reply, "invalid_request", "Bearer and DPoP Authorization headers");
    assert!(reply.json().get("sub").is_none());
    b.assert_still_accepts(At::Userinfo).await;
}

#[tokio::test]
async fn dpop_r07_the_scheme_is_case_insensitive() {
    let b = Bench::new().await;
    for scheme in ["dpop", "DPOP", "DPoP", "dPoP"] {
        let reply =
            b.h.send(
                Request::get("/userinfo")
                    .header(header::AUTHORIZATION, format!("{scheme} {}", b.at))
                    .header("dpop", b.valid(At::Userinfo))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        b.assert_accepted(At::Userinfo, &reply, scheme);
    }
}

/// DPOP-R08 and DPOP-R14: a token in the query or a form body is not a credential (RFC 9700 §4.3.2).
#[tokio::test]
async fn dpop_r08_r14_a_token_in_the_query_or_the_body_is_not_accepted() {
    let b = Bench::new().await;
    let proof = b.valid(At::Userinfo);
    let query =
        b.h.send(
            Request::get(format!("/userinfo?access_token={}", b.at))
                .header("dpop", proof.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let proof = b.key.proof("POST", USERINFO_URL, Some(&b.at), None, b.now());
    let body = b.h.post_form("/userinfo", &[("access_token", &b.at)], &[("dpop", &proof)]).await;
    for (what, reply) in [("query", query), ("form body", body)] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(reply.json().get("sub").is_none(), "{what}");
        assert!(dpop_challenge(&reply).is_some(), "{what}");
    }
}

#[tokio::test]
async fn dpop_r09_proxy_authorization_is_not_a_credential() {
    let b = Bench::new().await;
    let reply =
        b.h.send(
            Request::get("/userinfo")
                .header(header::PROXY_AUTHORIZATION, format!("DPoP {}", b.at))
                .header("dpop", b.valid(At::Userinfo))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.json().get("sub").is_none());
}

#[tokio::test]
async fn dpop_r11_an_expired_or_revoked_token_is_invalid_token_even_with_a_good_proof() {
    let b = Bench::new().await;
    // Revoked: RFC 7009 revocation of the grant's refresh token revokes its access tokens.
    let revoked =
        b.h.post_form("/revoke", &[("token", &b.refresh_token)], &[("authorization", &basic("c1", C1_SECRET))]).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_rs401(&b.send(At::Userinfo, &[b.valid(At::Userinfo)]).await, "invalid_token", "revoked");
    // Expired.
    let b = Bench::new().await;
    b.h.clock.advance(301);
    assert_rs401(&b.send(At::Userinfo, &[b.valid(At::Userinfo)]).await, "invalid_token", "expired");
}

#[tokio::test]
async fn dpop_r12_a_proof_for_one_token_is_refused_with_another_of_the_same_key() {
    let b = Bench::new().await;
    let refreshed =
        b.h.post_form(
            "/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &b.refresh_token)],
            &[
                ("authorization", &basic("c1", C1_SECRET)),
                ("dpop", &b.key.proof("POST", TOKEN_URL, None, None, b.now())),
            ],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    let second = refreshed.json()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(second, b.at);
    let proof_for_first = b.valid(At::Userinfo);
    let reply =
        b.h.send(
            Request::get("/userinfo")
                .header(header::AUTHORIZATION, format!("DPoP {second}"))
                .header("dpop", proof_for_first.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_rs401(&reply, "invalid_dpop_proof", "ath of the first token");
}

#[tokio::test]
async fn dpop_r13_refusals_never_echo_the_token_the_proof_or_the_key() {
    let b = Bench::new().await;
    let x = b.key.jwk().x.clone().unwrap();
    let (_, _, signature) = parts(&b.valid(At::Userinfo));
    let other = DpopKey::generate().unwrap();
    let refusals = vec![
        b.send(At::Userinfo, &[]).await,
        b.send(At::Userinfo, &[other.proof("GET", USERINFO_URL, Some(&b.at), None, b.now())]).await,
        b.send(At::Userinfo, &[b.key.proof("GET", USERINFO_URL, None, None, b.now())]).await,
        b.send(At::Userinfo, &["garbage.proof.value".into()]).await,
        b.h.userinfo(&b.at).await,
        b.send(At::Token, &[b.key.proof("GET", TOKEN_URL, None, None, b.now())]).await,
        b.send(At::Par, &[b.key.proof("GET", PAR_URL, None, None, b.now())]).await,
    ];
    for reply in refusals {
        assert!(reply.status.is_client_error());
        let mut everything = reply.text();
        for (name, value) in &reply.headers {
            everything.push_str(&format!("\n{name}: {}", value.to_str().unwrap_or("")));
        }
        for secret in [b.at.as_str(), x.as_str(), b.key.jkt(), other.jkt(), signature.as_str(), "garbage.proof"] {
            assert!(!everything.contains(secret), "{secret:.12}… echoed in {everything}");
        }
    }
}
