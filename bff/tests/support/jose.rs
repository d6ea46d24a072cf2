//! The catalogue's JOSE attack material (§G, RFC 8725 / 8725bis), written once as data and used against every
//! acceptor of a JWT in the system, and a mock OpenID Provider for the gateway-side rows (§G ID tokens, §C6, §D4).
//!
//! - `Signer`: a signing key (RSA, P-256/384/521, or one of the token service's own keys) with its public
//!   encodings (JWK, SPKI DER/PEM, PKCS#1) — what HS256-with-the-public-key attacks key their MAC with.
//! - `Base`: a token an acceptor accepts (header, claims, the legitimate signer); attacks are variations of it,
//!   signed for real so that only the attacked detail is wrong.
//! - `attacks(kind)`: every attack row that applies to a kind of token (`Kind`), each tagged with its row ID.
//! - `MockOp`: discovery, JWKS, PAR, authorize, token, revocation; records what the gateway sends and answers
//!   the code exchange with whatever the test planned (a forged ID token, a Bearer token type, a nonce demand).
//!
//! Used from a test file as `#[path = "support/jose.rs"] mod jose;` next to `mod support;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use gatehouse_proto::b64;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------------------------
// Keys

enum Key {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str),
    /// One of the token service's signing keys (jsonwebtoken's signer).
    Idp(Arc<gatehouse_idp::keys::SigningKey>),
}

/// A signing key and its public encodings.
pub struct Signer {
    pub kid: Option<String>,
    /// The algorithm this key signs with legitimately.
    pub alg: &'static str,
    key: Key,
    /// The public JWK (with `kid` and `alg` when set).
    pub jwk: Value,
    /// SubjectPublicKeyInfo DER.
    pub spki: Vec<u8>,
    /// PKCS#1 `RSAPublicKey` DER (RSA) or the uncompressed point (EC).
    pub raw_public: Vec<u8>,
}

impl Signer {
    pub fn rsa(kid: Option<&str>) -> Self {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let mut jwk = json!({"kty": "RSA", "n": b64::encode(&components.n), "e": b64::encode(&components.e)});
        decorate(&mut jwk, kid, "RS256");
        let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
        let raw_public = pair.public_key().as_ref().to_vec();
        Self { kid: kid.map(str::to_owned), alg: "RS256", key: Key::Rsa(pair), jwk, spki, raw_public }
    }

    pub fn ec(kid: Option<&str>) -> Self {
        Self::ec_on(kid, &sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "ES256")
    }

    pub fn ec_p384(kid: Option<&str>) -> Self {
        Self::ec_on(kid, &sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", "ES384")
    }

    pub fn ec_p521(kid: Option<&str>) -> Self {
        Self::ec_on(kid, &sig::ECDSA_P521_SHA512_FIXED_SIGNING, "P-521", "ES512")
    }

    fn ec_on(kid: Option<&str>, alg: &'static sig::EcdsaSigningAlgorithm, crv: &str, name: &'static str) -> Self {
        let pair = EcdsaKeyPair::generate(alg).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let half = (point.len() - 1) / 2;
        let mut jwk =
            json!({"kty": "EC", "crv": crv, "x": b64::encode(&point[1..=half]), "y": b64::encode(&point[half + 1..])});
        decorate(&mut jwk, kid, name);
        let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
        Self { kid: kid.map(str::to_owned), alg: name, key: Key::Ec(pair, name), jwk, spki, raw_public: point }
    }

    /// One of the token service's keys, with its published JWK.
    pub fn idp(key: Arc<gatehouse_idp::keys::SigningKey>, jwk: &Value) -> Self {
        let alg = if jwk["kty"] == "RSA" { "RS256" } else { "ES256" };
        let (spki, raw_public) = if alg == "RS256" {
            let n = b64::decode(jwk["n"].as_str().unwrap()).unwrap();
            let e = b64::decode(jwk["e"].as_str().unwrap()).unwrap();
            let pkcs1 = der_sequence(&[der_integer(&n), der_integer(&e)]);
            let public = aws_lc_rs::rsa::PublicKey::from_der(&pkcs1).unwrap();
            (public.as_der().unwrap().as_ref().to_vec(), pkcs1)
        } else {
            let mut point = vec![4u8];
            point.extend(b64::decode(jwk["x"].as_str().unwrap()).unwrap());
            point.extend(b64::decode(jwk["y"].as_str().unwrap()).unwrap());
            // SPKI of a P-256 key: the fixed AlgorithmIdentifier (id-ecPublicKey, prime256v1), then the point.
            let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
            spki.extend_from_slice(&point);
            (spki, point)
        };
        Self { kid: Some(key.kid.clone()), alg, key: Key::Idp(key), jwk: jwk.clone(), spki, raw_public }
    }

    /// The signature over `input` with `alg`, which must fit this key.
    pub fn signature(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match &self.key {
            Key::Rsa(pair) => {
                let padding: &'static dyn sig::RsaEncoding = match alg {
                    "RS256" => &sig::RSA_PKCS1_SHA256,
                    "RS384" => &sig::RSA_PKCS1_SHA384,
                    "RS512" => &sig::RSA_PKCS1_SHA512,
                    "PS256" => &sig::RSA_PSS_SHA256,
                    "PS384" => &sig::RSA_PSS_SHA384,
                    "PS512" => &sig::RSA_PSS_SHA512,
                    other => panic!("an RSA key cannot make {other}"),
                };
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &rng, input, &mut out).unwrap();
                out
            }
            Key::Ec(pair, name) => {
                assert_eq!(alg, *name, "this EC key makes {name} only");
                pair.sign(&rng, input).unwrap().as_ref().to_vec()
            }
            Key::Idp(key) => {
                let alg: jsonwebtoken::Algorithm = alg.parse().unwrap();
                b64::decode(&jsonwebtoken::crypto::sign(input, &key.encoding, alg).unwrap()).unwrap()
            }
        }
    }

    /// The public key as PEM (`PUBLIC KEY`, SPKI).
    pub fn pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(&self.spki);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }

    /// The public JWK without `kid`/`alg`/`use` (as embedded in DPoP proofs).
    pub fn bare_jwk(&self) -> Value {
        let mut jwk = self.jwk.clone();
        for member in ["kid", "alg", "use"] {
            jwk.as_object_mut().unwrap().remove(member);
        }
        jwk
    }
}

fn decorate(jwk: &mut Value, kid: Option<&str>, alg: &str) {
    if let Some(kid) = kid {
        jwk["kid"] = kid.into();
        jwk["alg"] = alg.into();
        jwk["use"] = "sig".into();
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn der_length(len: usize) -> Vec<u8> {
    if len < 128 {
        vec![len as u8]
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        let mut out = vec![0x80 | bytes.len() as u8];
        out.extend(bytes);
        out
    }
}

fn der_integer(big_endian: &[u8]) -> Vec<u8> {
    let mut value: Vec<u8> = big_endian.iter().copied().skip_while(|b| *b == 0).collect();
    if value.first().is_none_or(|b| b & 0x80 != 0) {
        value.insert(0, 0);
    }
    let mut out = vec![0x02];
    out.extend(der_length(value.len()));
    out.extend(value);
    out
}

fn der_sequence(items: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = items.concat();
    let mut out = vec![0x30];
    out.extend(der_length(body.len()));
    out.extend(body);
    out
}

// ---------------------------------------------------------------------------------------------------------------
// A token an acceptor accepts, and variations of it

#[derive(Clone)]
pub struct Base {
    pub header: Value,
    pub claims: Value,
    pub signer: Arc<Signer>,
}

pub fn part(text: impl AsRef<[u8]>) -> String {
    b64::encode(text)
}

impl Base {
    pub fn alg(&self) -> &str {
        self.header["alg"].as_str().unwrap_or(self.signer.alg)
    }

    /// The legitimate token.
    pub fn token(&self) -> String {
        self.sign(&self.header, &self.claims)
    }

    /// Header and claims as given, signed with the legitimate key and algorithm.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_text(&header.to_string(), &claims.to_string())
    }

    /// JSON text kept byte for byte (duplicates, odd encodings), signed with the legitimate key and algorithm.
    pub fn sign_text(&self, header: &str, claims: &str) -> String {
        self.sign_bytes(header.as_bytes(), claims.as_bytes())
    }

    pub fn sign_bytes(&self, header: &[u8], claims: &[u8]) -> String {
        let input = format!("{}.{}", part(header), part(claims));
        let signature = self.signer.signature(self.signer.alg, input.as_bytes());
        format!("{input}.{}", part(signature))
    }

    /// Header and claims signed by `signer` with `alg` (another key, or the same key with another algorithm).
    pub fn sign_by(&self, signer: &Signer, alg: &str, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", part(header.to_string()), part(claims.to_string()));
        let signature = signer.signature(alg, input.as_bytes());
        format!("{input}.{}", part(signature))
    }

    /// The header with some members changed (`Value::Null` removes one).
    pub fn header_with(&self, changes: &[(&str, Value)]) -> Value {
        with(&self.header, changes)
    }

    pub fn claims_with(&self, changes: &[(&str, Value)]) -> Value {
        with(&self.claims, changes)
    }
}

pub fn with(value: &Value, changes: &[(&str, Value)]) -> Value {
    let mut value = value.clone();
    for (name, new) in changes {
        if new.is_null() {
            value.as_object_mut().unwrap().remove(*name);
        } else {
            value[*name] = new.clone();
        }
    }
    value
}

/// HMAC-SHA-256/384/512 keyed with `secret`.
pub fn hmac(alg: &str, secret: &[u8], input: &[u8]) -> Vec<u8> {
    let algorithm = match alg {
        "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        _ => aws_lc_rs::hmac::HMAC_SHA512,
    };
    aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(algorithm, secret), input).as_ref().to_vec()
}

pub fn now() -> i64 {
    gatehouse_bff::now()
}

pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    b64::encode(bytes)
}

// ---------------------------------------------------------------------------------------------------------------
// The attack set (catalogue §G), once, as data

/// The kinds of JWT the system accepts, each at its acceptor(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ID token, at the gateway's callback.
    IdToken,
    /// Back-channel logout token, at the gateway's `/bff/backchannel`.
    LogoutToken,
    /// `private_key_jwt` client assertion, at the token service.
    ClientAssertion,
    /// DPoP proof, at the token service's token endpoint and userinfo.
    DpopProof,
    /// JWT access token, at the API-side verifier and userinfo.
    AccessToken,
    /// `id_token_hint`, at the token service's end_session.
    IdTokenHint,
}

impl Kind {
    /// The key is carried in the token (`jwk`), not named by `kid`.
    fn embeds_key(self) -> bool {
        self == Kind::DpopProof
    }
}

type Make = Arc<dyn Fn(&Base) -> String + Send + Sync>;

/// One attack: a row of the catalogue, a description, and how to derive the token from an accepted one.
#[derive(Clone)]
pub struct Attack {
    pub row: &'static str,
    pub name: String,
    make: Make,
}

impl Attack {
    pub fn token(&self, base: &Base) -> String {
        (self.make)(base)
    }
}

impl std::fmt::Debug for Attack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.row, self.name)
    }
}

struct Set {
    kind: Kind,
    attacks: Vec<Attack>,
}

impl Set {
    fn add(
        &mut self,
        row: &'static str,
        name: impl Into<String>,
        make: impl Fn(&Base) -> String + Send + Sync + 'static,
    ) {
        self.attacks.push(Attack { row, name: name.into(), make: Arc::new(make) });
    }
}

/// Every attack of rows JWT-01…JWT-20 and JWT-26 that applies to `kind`. `tripwire` is a URL nobody may fetch
/// (the `jku`/`x5u` of forged tokens).
pub fn attacks(kind: Kind, tripwire: &str) -> Vec<Attack> {
    let mut set = Set { kind, attacks: Vec::new() };
    let tripwire = tripwire.to_owned();

    // JWT-01 / JWT-02: `none` in every spelling, unsigned, with and without the trailing dot, and with the
    // legitimate signature left in place.
    set.add("JWT-01", "alg none, trailing dot", |b| {
        format!("{}.{}.", part(b.header_with(&[("alg", "none".into())]).to_string()), part(b.claims.to_string()))
    });
    set.add("JWT-01", "alg none, no trailing dot", |b| {
        format!("{}.{}", part(b.header_with(&[("alg", "none".into())]).to_string()), part(b.claims.to_string()))
    });
    for alg in ["None", "NONE", "nOnE", "none ", "none\u{0}"] {
        set.add("JWT-02", format!("alg {alg:?} unsigned"), move |b| {
            format!("{}.{}.", part(b.header_with(&[("alg", alg.into())]).to_string()), part(b.claims.to_string()))
        });
        set.add("JWT-02", format!("alg {alg:?} with the real signature"), move |b| {
            let signature = b.token().rsplit('.').next().unwrap().to_owned();
            format!(
                "{}.{}.{signature}",
                part(b.header_with(&[("alg", alg.into())]).to_string()),
                part(b.claims.to_string())
            )
        });
    }

    // JWT-03: RS/ES → HS confusion, the MAC keyed with the public key in every encoding.
    type Encoding = fn(&Signer) -> Vec<u8>;
    let encodings: [(&str, Encoding); 5] = [
        ("JWK JSON", |s| s.jwk.to_string().into_bytes()),
        ("bare JWK JSON", |s| s.bare_jwk().to_string().into_bytes()),
        ("SPKI DER", |s| s.spki.clone()),
        ("PEM", |s| s.pem().into_bytes()),
        ("PKCS#1 / raw point", |s| s.raw_public.clone()),
    ];
    for (encoding, key_of) in encodings {
        for alg in ["HS256", "HS512"] {
            set.add("JWT-03", format!("{alg} keyed with the public key ({encoding})"), move |b| {
                let header = b.header_with(&[("alg", alg.into())]);
                let input = format!("{}.{}", part(header.to_string()), part(b.claims.to_string()));
                format!("{input}.{}", part(hmac(alg, &key_of(&b.signer), input.as_bytes())))
            });
        }
    }

    // JWT-04: the key's algorithm is not the header's.
    set.add("JWT-04", "the other family's alg for this kid, signed by a key of that family", |b| {
        if b.signer.alg.starts_with("RS") {
            let ec = Signer::ec(None);
            b.sign_by(&ec, "ES256", &b.header_with(&[("alg", "ES256".into())]), &b.claims)
        } else {
            let rsa = Signer::rsa(None);
            b.sign_by(&rsa, "RS256", &b.header_with(&[("alg", "RS256".into())]), &b.claims)
        }
    });
    set.add("JWT-04", "PS256 by the RSA key / ES384 header on the P-256 key", |b| {
        if b.signer.alg.starts_with("RS") {
            b.sign_by(&b.signer, "PS256", &b.header_with(&[("alg", "PS256".into())]), &b.claims)
        } else {
            let header = b.header_with(&[("alg", "ES384".into())]);
            let input = format!("{}.{}", part(header.to_string()), part(b.claims.to_string()));
            format!("{input}.{}", part(b.signer.signature(b.signer.alg, input.as_bytes())))
        }
    });

    // JWT-05: valid signatures with algorithms outside the allow-list.
    set.add("JWT-05", "RS512 / ES512 with a valid signature", |b| {
        if b.signer.alg.starts_with("RS") {
            b.sign_by(&b.signer, "RS512", &b.header_with(&[("alg", "RS512".into())]), &b.claims)
        } else {
            let p521 = Signer::ec_p521(None);
            let mut header = b.header_with(&[("alg", "ES512".into())]);
            if header.get("jwk").is_some() {
                header["jwk"] = p521.bare_jwk();
            }
            b.sign_by(&p521, "ES512", &header, &b.claims)
        }
    });
    set.add("JWT-05", "ES384 with a valid P-384 signature", |b| {
        let p384 = Signer::ec_p384(None);
        let mut header = b.header_with(&[("alg", "ES384".into())]);
        if header.get("jwk").is_some() {
            header["jwk"] = p384.bare_jwk();
        }
        b.sign_by(&p384, "ES384", &header, &b.claims)
    });
    set.add("JWT-05", "HS256 with a random secret", |b| {
        let header = b.header_with(&[("alg", "HS256".into())]);
        let input = format!("{}.{}", part(header.to_string()), part(b.claims.to_string()));
        format!("{input}.{}", part(hmac("HS256", random_id().as_bytes(), input.as_bytes())))
    });

    // JWT-06: the psychic signature (CVE-2022-21449).
    set.add("JWT-06", "ES256 with r = s = 0", |b| {
        let header = b.header_with(&[("alg", "ES256".into())]);
        format!("{}.{}.{}", part(header.to_string()), part(b.claims.to_string()), part([0u8; 64]))
    });

    // JWT-07: injected kid values, signed with the real key (only the kid is wrong).
    if !kind.embeds_key() {
        for kid in ["../../../../dev/null", "' OR '1'='1", "*)(uid=*", "k\u{202e}dik", "😀"] {
            set.add("JWT-07", format!("kid {kid:?}"), move |b| {
                b.sign(&b.header_with(&[("kid", kid.into())]), &b.claims)
            });
        }
        set.add("JWT-07", "kid of 10 KB", |b| {
            b.sign(&b.header_with(&[("kid", "k".repeat(10 * 1024).into())]), &b.claims)
        });
        set.add("JWT-07", "kid not a string", |b| b.sign(&b.header_with(&[("kid", json!(["k"]))]), &b.claims));
    }

    // JWT-09: keys carried or referenced by the token, signed by the attacker's key.
    if !kind.embeds_key() {
        let jku = tripwire.clone();
        let x5u = tripwire.clone();
        set.add("JWT-09", "jwk header with the attacker's key", |b| {
            let attacker = Signer::ec(Some("attacker"));
            b.sign_by(
                &attacker,
                "ES256",
                &b.header_with(&[("alg", "ES256".into()), ("jwk", attacker.bare_jwk())]),
                &b.claims,
            )
        });
        set.add("JWT-09", "jwk header, kid of the real key", |b| {
            let attacker = Signer::ec(None);
            let header = b.header_with(&[("alg", "ES256".into()), ("jwk", attacker.bare_jwk())]);
            b.sign_by(&attacker, "ES256", &header, &b.claims)
        });
        set.add("JWT-09", "jku to a foreign JWKS", move |b| {
            let attacker = Signer::ec(Some("attacker"));
            let header =
                b.header_with(&[("alg", "ES256".into()), ("jku", jku.clone().into()), ("kid", "attacker".into())]);
            b.sign_by(&attacker, "ES256", &header, &b.claims)
        });
        set.add("JWT-09", "x5u to a foreign certificate", move |b| {
            let attacker = Signer::ec(Some("attacker"));
            let header =
                b.header_with(&[("alg", "ES256".into()), ("x5u", x5u.clone().into()), ("kid", "attacker".into())]);
            b.sign_by(&attacker, "ES256", &header, &b.claims)
        });
        set.add("JWT-09", "self-signed x5c", |b| {
            let attacker = Signer::ec(None);
            let header = b.header_with(&[
                ("alg", "ES256".into()),
                ("x5c", json!([base64::engine::general_purpose::STANDARD.encode(&attacker.spki)])),
            ]);
            b.sign_by(&attacker, "ES256", &header, &b.claims)
        });
    }

    // JWT-10: critical extensions nobody understands, and RFC 7797 unencoded payloads.
    set.add("JWT-10", "crit [exp-x]", |b| {
        b.sign(&b.header_with(&[("crit", json!(["exp-x"])), ("exp-x", 1.into())]), &b.claims)
    });
    set.add("JWT-10", "crit []", |b| b.sign(&b.header_with(&[("crit", json!([]))]), &b.claims));
    set.add("JWT-10", "b64 false", |b| {
        b.sign(&b.header_with(&[("b64", false.into()), ("crit", json!(["b64"]))]), &b.claims)
    });

    // JWT-11: not the compact serialisation of one JWS.
    set.add("JWT-11", "JWS JSON serialisation of the real token", |b| {
        let token = b.token();
        let mut p = token.split('.');
        json!({"protected": p.next(), "payload": p.next(), "signature": p.next()}).to_string()
    });
    set.add("JWT-11", "flattened JSON with a real signature over another payload", |b| {
        let other = b.sign(&b.header, &b.claims_with(&[("sub", "someone-else".into())]));
        let mut p = other.split('.');
        let (header, _, signature) = (p.next(), p.next(), p.next());
        json!({"protected": header, "payload": part(b.claims.to_string()), "signature": signature}).to_string()
    });
    set.add("JWT-11", "an extra segment", |b| format!("{}.{}", b.token(), part("extra")));
    set.add("JWT-11", "padding", |b| {
        let token = b.token();
        let (header, rest) = token.split_once('.').unwrap();
        format!("{header}==.{rest}")
    });
    set.add("JWT-11", "standard base64 alphabet", |b| {
        let token = b.token();
        let (input, signature) = token.rsplit_once('.').unwrap();
        let standard = base64::engine::general_purpose::STANDARD.encode(b64::decode(signature).unwrap());
        format!("{input}.{standard}")
    });
    set.add("JWT-11", "raw JSON header", |b| {
        let token = b.token();
        let (_, rest) = token.split_once('.').unwrap();
        format!("{}.{rest}", b.header)
    });
    set.add("JWT-11", "whitespace inside", |b| {
        let token = b.token();
        let (header, rest) = token.split_once('.').unwrap();
        format!("{header} .{rest}")
    });

    // JWT-12…15: JWE shapes (five parts). No acceptor decrypts anything.
    let jwe = |header: Value, ciphertext: String| {
        format!(
            "{}.{}.{}.{}.{}",
            part(header.to_string()),
            part([1u8; 32]),
            part([2u8; 12]),
            ciphertext,
            part([3u8; 16])
        )
    };
    set.add("JWT-12", "JWE to the acceptor's key", move |b| {
        let mut header = json!({"alg": "RSA-OAEP-256", "enc": "A256GCM", "cty": "JWT"});
        if let Some(kid) = b.header.get("kid") {
            header["kid"] = kid.clone();
        }
        jwe(header, part(b.claims.to_string()))
    });
    set.add("JWT-13", "JWE wrapping an unsigned JWT", move |b| {
        let inner = format!("{}.{}.", part(json!({"alg": "none"}).to_string()), part(b.claims.to_string()));
        jwe(json!({"alg": "dir", "enc": "A128GCM", "cty": "JWT"}), part(inner))
    });
    set.add("JWT-14", "PBES2 with p2c 100000000", move |_| {
        jwe(
            json!({"alg": "PBES2-HS256+A128KW", "enc": "A128GCM", "p2s": part([9u8; 16]), "p2c": 100_000_000}),
            part([0u8; 64]),
        )
    });
    set.add("JWT-15", "zip DEF bomb", move |_| {
        jwe(json!({"alg": "dir", "enc": "A128GCM", "zip": "DEF"}), part(vec![0u8; 4096]))
    });

    // JWT-16: duplicate members (the two parsers of a differential would read two values).
    set.add("JWT-16", "alg twice (real, then none)", |b| {
        let header = b.header.to_string();
        let doubled = format!(r#"{},"alg":"none"}}"#, header.trim_end_matches('}'));
        b.sign_text(&doubled, &b.claims.to_string())
    });
    let claim = match kind {
        Kind::DpopProof => "htu",
        _ => "sub",
    };
    set.add("JWT-16", format!("{claim} twice"), move |b| {
        let claims = b.claims.to_string();
        let doubled = format!(r#"{},"{claim}":"https://evil.example/x"}}"#, claims.trim_end_matches('}'));
        b.sign_text(&b.header.to_string(), &doubled)
    });
    set.add("JWT-16", "a member twice under an escaped name", |b| {
        let header = b.header.to_string();
        let doubled = format!(r#"{},"al\u0067":"HS256"}}"#, header.trim_end_matches('}'));
        b.sign_text(&doubled, &b.claims.to_string())
    });

    // JWT-17: not UTF-8 JSON.
    set.add("JWT-17", "UTF-16 header", |b| {
        let utf16: Vec<u8> = b.header.to_string().encode_utf16().flat_map(u16::to_le_bytes).collect();
        b.sign_bytes(&utf16, b.claims.to_string().as_bytes())
    });
    set.add("JWT-17", "BOM before the claims", |b| {
        let mut claims = vec![0xEF, 0xBB, 0xBF];
        claims.extend(b.claims.to_string().into_bytes());
        b.sign_bytes(b.header.to_string().as_bytes(), &claims)
    });
    set.add("JWT-17", "overlong UTF-8 in a claim", |b| {
        let claims = b.claims.to_string();
        let mut bytes = claims.trim_end_matches('}').as_bytes().to_vec();
        bytes.extend_from_slice(b",\"x\":\"\xC0\xAF\"}");
        b.sign_bytes(b.header.to_string().as_bytes(), &bytes)
    });

    // JWT-18 / JWT-26: the issuer, exactly.
    if kind != Kind::DpopProof {
        for (row, name, iss) in [
            ("JWT-18", "another issuer", Some("https://evil.example")),
            ("JWT-18", "trailing slash", None),
            ("JWT-18", "case changed", None),
            ("JWT-18", "missing", None),
            ("JWT-26", "a staging deployment sharing the keys", Some("https://staging.id.example")),
        ] {
            set.add(row, format!("iss: {name}"), move |b| {
                let real = b.claims["iss"].as_str().unwrap().to_owned();
                let iss = match (name, iss) {
                    (_, Some(iss)) => Value::from(iss),
                    ("trailing slash", _) => Value::from(format!("{real}/")),
                    ("case changed", _) => Value::from(real.to_uppercase()),
                    _ => Value::Null,
                };
                b.sign(&b.header, &b.claims_with(&[("iss", iss)]))
            });
        }
    }

    // JWT-19: the audience.
    if kind != Kind::DpopProof && kind != Kind::IdTokenHint {
        set.add("JWT-19", "aud: someone else", |b| {
            b.sign(&b.header, &b.claims_with(&[("aud", "someone-else".into())]))
        });
        set.add("JWT-19", "aud: missing", |b| b.sign(&b.header, &b.claims_with(&[("aud", Value::Null)])));
        if kind != Kind::AccessToken {
            // Several audiences are normal for access tokens (one per API); for the others one extra is untrusted.
            set.add("JWT-19", "aud: an extra untrusted entry", |b| {
                let aud = b.claims["aud"].clone();
                b.sign(&b.header, &b.claims_with(&[("aud", json!([aud, "https://evil.example"]))]))
            });
            set.add("JWT-19", "aud: an extra entry, azp naming the client", |b| {
                let aud = b.claims["aud"].clone();
                b.sign(&b.header, &b.claims_with(&[("aud", json!([aud, "https://evil.example"])), ("azp", aud)]))
            });
        }
    }

    // JWT-20: time claims.
    let t = now();
    let mut times: Vec<(&str, &str, Value)> = vec![
        ("exp in milliseconds", "exp", Value::from(t * 1000)),
        ("exp as a string", "exp", Value::from((t + 300).to_string())),
        ("iat as a fraction", "iat", json!(t as f64 + 0.5)),
        ("nbf negative", "nbf", Value::from(-1)),
    ];
    if kind != Kind::IdTokenHint {
        // RP-Initiated Logout §2: an expired hint is accepted (catalogue EP-ES02); the rest apply to all.
        times.extend([
            ("expired 10 minutes ago", "exp", Value::from(t - 600)),
            ("nbf in 10 minutes", "nbf", Value::from(t + 600)),
            ("iat a day ahead", "iat", Value::from(t + 86_400)),
        ]);
        if kind != Kind::DpopProof {
            times.push(("exp missing", "exp", Value::Null));
        }
    }
    for (name, claim, value) in times {
        set.add("JWT-20", name, move |b| {
            let mut claims = b.claims.clone();
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(claim);
            } else {
                claims[claim] = value.clone();
            }
            b.sign(&b.header, &claims)
        });
    }

    set.attacks
}

/// The rows `attacks` covers, for the test that checks each has at least one acceptor.
pub const TOKEN_ROWS: [&str; 20] = [
    "JWT-01", "JWT-02", "JWT-03", "JWT-04", "JWT-05", "JWT-06", "JWT-07", "JWT-09", "JWT-10", "JWT-11", "JWT-12",
    "JWT-13", "JWT-14", "JWT-15", "JWT-16", "JWT-17", "JWT-18", "JWT-19", "JWT-20", "JWT-26",
];

// ---------------------------------------------------------------------------------------------------------------
// A mock OpenID Provider

/// How the mock's token endpoint treats DPoP nonces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceDemand {
    Never,
    /// `use_dpop_nonce` until a proof carries `MOCK_NONCE`.
    UntilSent,
    /// `use_dpop_nonce` with a new nonce every time.
    Always,
}

pub const MOCK_NONCE: &str = "mock-nonce-1";

/// A request the mock received.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub form: HashMap<String, String>,
    /// Every `DPoP` header value.
    pub dpop: Vec<String>,
    pub authorization: Option<String>,
}

impl Recorded {
    /// The payload of the (first) DPoP proof, unverified.
    pub fn proof_claims(&self) -> Value {
        jwt_part(self.dpop.first().expect("a DPoP proof"), 1)
    }

    pub fn proof_header(&self) -> Value {
        jwt_part(self.dpop.first().expect("a DPoP proof"), 0)
    }
}

/// Decodes part `index` of a compact JWS, unverified.
pub fn jwt_part(token: &str, index: usize) -> Value {
    token.split('.').nth(index).and_then(b64::decode).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// What the token endpoint answers to one code.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The `id_token` to return (default: a valid one for the login's nonce).
    pub id_token: Option<String>,
    /// The `token_type` (default `DPoP`).
    pub token_type: Option<String>,
}

#[derive(Default)]
struct OpState {
    pushed: HashMap<String, Recorded>,
    codes: HashMap<String, Recorded>,
    plans: HashMap<String, Plan>,
    par_requests: Vec<Recorded>,
    token_requests: Vec<Recorded>,
    jwks_fetches: usize,
    nonce: Option<NonceDemand>,
    nonce_counter: u64,
}

#[derive(Clone)]
pub struct MockOp {
    pub issuer: String,
    /// The RS256 key ID tokens and logout tokens are signed with.
    pub rsa: Arc<Signer>,
    /// A published ES256 key.
    pub ec: Arc<Signer>,
    state: Arc<Mutex<OpState>>,
}

impl MockOp {
    /// Starts the mock on a free port, on the current runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let op = Self {
            issuer,
            rsa: Arc::new(Signer::rsa(Some("mock-rs"))),
            ec: Arc::new(Signer::ec(Some("mock-es"))),
            state: Arc::new(Mutex::new(OpState::default())),
        };
        let app = op.router();
        tokio::spawn(async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap()
        });
        op
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OpState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_nonce_demand(&self, demand: NonceDemand) {
        self.state().nonce = Some(demand);
    }

    /// What the token endpoint answers for `code`.
    pub fn plan(&self, code: &str, plan: Plan) {
        self.state().plans.insert(code.to_owned(), plan);
    }

    /// The authorization request (pushed or not) that produced `code`.
    pub fn request_of(&self, code: &str) -> Recorded {
        self.state().codes.get(code).cloned().expect("a code the mock issued")
    }

    pub fn par_requests(&self) -> Vec<Recorded> {
        self.state().par_requests.clone()
    }

    pub fn token_requests(&self) -> Vec<Recorded> {
        self.state().token_requests.clone()
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state().jwks_fetches
    }

    /// A valid ID token for the login that produced `code`.
    pub fn id_token_base(&self, code: &str) -> Base {
        let request = self.request_of(code);
        self.id_token_base_for(&request.form["client_id"], request.form.get("nonce").map(String::as_str))
    }

    pub fn id_token_base_for(&self, client_id: &str, nonce: Option<&str>) -> Base {
        let t = now();
        let mut claims = json!({"iss": self.issuer, "sub": "alice-sub", "aud": client_id, "exp": t + 300, "iat": t,
            "auth_time": t, "sid": random_id(), "azp": client_id, "name": "Alice"});
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        Base { header: json!({"alg": "RS256", "typ": "JWT", "kid": "mock-rs"}), claims, signer: self.rsa.clone() }
    }

    /// A valid logout token for `sub`/`sid`.
    pub fn logout_token_base(&self, client_id: &str, sub: &str, sid: &str) -> Base {
        let t = now();
        let claims = json!({"iss": self.issuer, "aud": client_id, "iat": t, "exp": t + 120, "jti": random_id(),
            "sub": sub, "sid": sid, "events": {"http://schemas.openid.net/event/backchannel-logout": {}}});
        Base {
            header: json!({"alg": "RS256", "typ": "logout+jwt", "kid": "mock-rs"}),
            claims,
            signer: self.rsa.clone(),
        }
    }

    /// An access token as an RFC 9068 JWT (the gateway does not read it; the API would).
    pub fn access_token(&self, client_id: &str, jkt: Option<&str>) -> String {
        let t = now();
        let mut claims = json!({"iss": self.issuer, "sub": "alice-sub", "aud": "https://api.test", "client_id": client_id,
            "scope": "openid api", "jti": random_id(), "iat": t, "exp": t + 300});
        if let Some(jkt) = jkt {
            claims["cnf"] = json!({"jkt": jkt});
        }
        Base { header: json!({"alg": "ES256", "typ": "at+jwt", "kid": "mock-es"}), claims, signer: self.ec.clone() }
            .token()
    }

    fn router(&self) -> axum::Router {
        use axum::routing::{get, post};
        let op = self.clone();
        let discovery = {
            let issuer = op.issuer.clone();
            move || {
                let issuer = issuer.clone();
                async move {
                    axum::Json(json!({
                        "issuer": issuer,
                        "authorization_endpoint": format!("{issuer}/authorize"),
                        "token_endpoint": format!("{issuer}/token"),
                        "jwks_uri": format!("{issuer}/jwks"),
                        "pushed_authorization_request_endpoint": format!("{issuer}/par"),
                        "end_session_endpoint": format!("{issuer}/end_session"),
                        "revocation_endpoint": format!("{issuer}/revoke"),
                        "authorization_response_iss_parameter_supported": true,
                        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                        "dpop_signing_alg_values_supported": ["ES256"],
                        "prompt_values_supported": ["none", "login"],
                    }))
                }
            }
        };
        let jwks = {
            let op = op.clone();
            move || {
                let op = op.clone();
                async move {
                    op.state().jwks_fetches += 1;
                    axum::Json(json!({"keys": [op.rsa.jwk, op.ec.jwk]}))
                }
            }
        };
        let par = {
            let op = op.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let op = op.clone();
                async move {
                    let recorded = record(&headers, &body);
                    let request_uri = format!("urn:ietf:params:oauth:request_uri:{}", random_id());
                    let mut state = op.state();
                    state.par_requests.push(recorded.clone());
                    state.pushed.insert(request_uri.clone(), recorded);
                    (axum::http::StatusCode::CREATED, axum::Json(json!({"request_uri": request_uri, "expires_in": 60})))
                }
            }
        };
        let authorize = {
            let op = op.clone();
            move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                let op = op.clone();
                async move {
                    let query: HashMap<String, String> =
                        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
                    let request = match query.get("request_uri") {
                        Some(uri) => op.state().pushed.remove(uri),
                        None => Some(Recorded { form: query.clone(), ..Recorded::default() }),
                    };
                    let Some(request) = request else {
                        return axum::response::Response::builder()
                            .status(400)
                            .body(axum::body::Body::from("unknown request_uri"))
                            .unwrap();
                    };
                    let code = random_id();
                    let mut location = url::Url::parse(&request.form["redirect_uri"]).unwrap();
                    location
                        .query_pairs_mut()
                        .append_pair("code", &code)
                        .append_pair("state", request.form.get("state").map(String::as_str).unwrap_or(""))
                        .append_pair("iss", &op.issuer);
                    op.state().codes.insert(code, request);
                    axum::response::Response::builder()
                        .status(303)
                        .header("location", location.as_str())
                        .body(axum::body::Body::empty())
                        .unwrap()
                }
            }
        };
        let token = {
            let op = op.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let op = op.clone();
                async move { op.token_endpoint(record(&headers, &body)) }
            }
        };
        axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/par", post(par))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(|| async { axum::http::StatusCode::OK }))
            .route("/end_session", get(|| async { "signed out" }))
    }

    fn token_endpoint(&self, request: Recorded) -> axum::response::Response {
        use axum::response::IntoResponse;
        let proof_nonce = request.dpop.first().map(|p| jwt_part(p, 1)["nonce"].as_str().unwrap_or("").to_owned());
        let mut state = self.state();
        state.token_requests.push(request.clone());
        let demand = state.nonce.unwrap_or(NonceDemand::Never);
        let asked = match demand {
            NonceDemand::Never => None,
            NonceDemand::UntilSent if proof_nonce.as_deref() == Some(MOCK_NONCE) => None,
            NonceDemand::UntilSent => Some(MOCK_NONCE.to_owned()),
            NonceDemand::Always => {
                state.nonce_counter += 1;
                Some(format!("mock-nonce-{}", state.nonce_counter + 100))
            }
        };
        if let Some(nonce) = asked {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                [("dpop-nonce", nonce), ("cache-control", "no-store".to_owned())],
                axum::Json(json!({"error": "use_dpop_nonce", "error_description": "a nonce is required"})),
            )
                .into_response();
        }
        let code = request.form.get("code").cloned().unwrap_or_default();
        let plan = state.plans.get(&code).cloned().unwrap_or_default();
        let login = state.codes.get(&code).cloned();
        drop(state);
        let client_id = login.as_ref().and_then(|l| l.form.get("client_id").cloned()).unwrap_or_else(|| "bff".into());
        let jkt = request.dpop.first().and_then(|p| {
            let jwk: gatehouse_proto::Jwk = serde_json::from_value(jwt_part(p, 0)["jwk"].clone()).ok()?;
            jwk.thumbprint().ok()
        });
        let mut body = json!({
            "access_token": self.access_token(&client_id, jkt.as_deref()),
            "token_type": plan.token_type.clone().unwrap_or_else(|| "DPoP".into()),
            "expires_in": 300,
            "refresh_token": random_id(),
            "scope": "openid profile email offline_access api",
        });
        if request.form.get("grant_type").map(String::as_str) == Some("authorization_code") {
            let id_token = match plan.id_token {
                Some(token) => token,
                None => {
                    let nonce = login.as_ref().and_then(|l| l.form.get("nonce").cloned());
                    self.id_token_base_for(&client_id, nonce.as_deref()).token()
                }
            };
            body["id_token"] = id_token.into();
        }
        ([("cache-control", "no-store")], axum::Json(body)).into_response()
    }
}

fn record(headers: &axum::http::HeaderMap, body: &[u8]) -> Recorded {
    Recorded {
        form: url::form_urlencoded::parse(body).into_owned().collect(),
        dpop: headers.get_all("dpop").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect(),
        authorization: headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned),
    }
}

/// The gateway's OIDC settings for a token service at `issuer` (client `bff`).
pub fn oidc_settings(issuer: &str, secret: &str) -> gatehouse_bff::settings::OidcSettings {
    gatehouse_bff::settings::OidcSettings {
        issuer: url::Url::parse(issuer).unwrap(),
        client_id: "bff".into(),
        client_secret: gatehouse_proto::Secret::new(secret),
        scopes: ["openid", "profile", "email", "offline_access", "api"].map(String::from).to_vec(),
        use_par: true,
        id_token_algs: vec!["RS256".into(), "ES256".into()],
        timeout: std::time::Duration::from_secs(5),
        metadata_ttl: std::time::Duration::from_secs(300),
        jwks_min_refresh: std::time::Duration::from_secs(30),
        leeway_seconds: 30,
    }
}
