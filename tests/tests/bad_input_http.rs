//! Bad input on the HTTP API: phone numbers, verification codes (wrong, replayed, expired,
//! too many), broken and oversized JSON, bad keys, exhausted one-time prekeys, credentials,
//! unknown routes.
//!
//! Every test checks, where it applies, (a) the documented status and error `code`, (b) that
//! the server stays up and other users are unaffected, and (c) that nothing already accepted is
//! lost or spoiled by the bad request.

mod bad_input_support;

use bad_input_support::*;
use courier_client::client::PREKEY_BATCH;
use courier_client::{Api, Client, ClientError, Credentials, StateFile};
use courier_crypto::{IdentityKeyPair, OneTimePreKeyPair, SignedPreKeyPair};
use courier_protocol::DeviceAddress;
use courier_protocol::http::{
    IdentityKeys, OneTimePreKey, SignedPreKey, UploadKeys, VerifyCode, VerifyCodeResponse,
};
use courier_tests::{TestServer, messages, unique_phone};
use reqwest::Method;
use serde_json::{Value, json};

/// A valid key upload with `one_time` one-time prekeys, as the SDK would make it.
fn good_keys(one_time: u32) -> UploadKeys {
    let identity = IdentityKeyPair::generate().expect("identity");
    let signed = SignedPreKeyPair::generate(&identity, 1).expect("signed prekey");
    let public = identity.public();
    UploadKeys {
        identity: IdentityKeys {
            ed25519: public.ed25519.to_vec(),
            x25519: public.x25519.to_vec(),
        },
        signed_prekey: SignedPreKey {
            id: signed.id,
            public_key: signed.public.to_vec(),
            signature: signed.signature.to_vec(),
        },
        one_time_prekeys: OneTimePreKeyPair::generate_batch(1, one_time)
            .expect("one-time prekeys")
            .iter()
            .map(|key| OneTimePreKey {
                id: key.id,
                public_key: key.public.to_vec(),
            })
            .collect(),
    }
}

/// Uploads that are well-formed JSON but carry bad keys, each with what is wrong with it.
fn bad_key_uploads() -> Vec<(&'static str, UploadKeys)> {
    let mut cases = Vec::new();
    let mut case = |what: &'static str, spoil: &dyn Fn(&mut UploadKeys)| {
        let mut keys = good_keys(3);
        spoil(&mut keys);
        cases.push((what, keys));
    };
    case("identity.ed25519 of 31 bytes", &|k| {
        k.identity.ed25519.pop();
    });
    case("identity.x25519 of 33 bytes", &|k| {
        k.identity.x25519.push(0)
    });
    case("signed_prekey.public_key of 31 bytes", &|k| {
        k.signed_prekey.public_key.pop();
    });
    case("signed_prekey.signature of 63 bytes", &|k| {
        k.signed_prekey.signature.pop();
    });
    case("a signature that does not verify", &|k| {
        k.signed_prekey.signature[10] ^= 0x01;
    });
    case("a signature over another key", &|k| {
        k.signed_prekey.public_key[0] ^= 0x01;
    });
    case("a signed prekey signed by another identity", &|k| {
        k.signed_prekey = good_keys(0).signed_prekey;
    });
    case("a one-time prekey of 31 bytes", &|k| {
        k.one_time_prekeys[1].public_key.pop();
    });
    case("more one-time prekeys than one upload may carry", &|k| {
        k.one_time_prekeys = good_keys(201).one_time_prekeys;
    });
    cases
}

/// The status and error code of a failed SDK call.
fn api_error<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String, String) {
    match result {
        Err(ClientError::Api {
            status,
            code,
            message,
        }) => (status, code, message),
        other => panic!("expected an HTTP error answer, got {other:?}"),
    }
}

fn verify_request(phone: &str, code: &str, keys: UploadKeys) -> VerifyCode {
    VerifyCode {
        phone: phone.to_owned(),
        code: code.to_owned(),
        device_name: Some("test".into()),
        keys,
    }
}

/// A six-digit code different from `code`.
fn other_code(code: &str) -> String {
    let n: u32 = code.parse().expect("a numeric code");
    format!("{:06}", (n + 1) % 1_000_000)
}

#[tokio::test]
async fn malformed_phone_numbers_are_refused_with_invalid_phone_number() {
    let server = TestServer::start().await;
    let api = Api::new(&server.url()).expect("api");
    let bad = [
        "15551234567",       // no '+'
        "+1 555 abc 1234",   // letters
        "+1234567",          // 7 digits
        "+1234567890123456", // 16 digits
        "+01555123456",      // country code starting with 0
        "",                  // nothing
        "+",                 // only the plus
        "+1555123456\u{0}",  // a NUL byte
        "+١٥٥٥١٢٣٤٥٦٧",      // non-ASCII digits
        "++15551234567",     // two pluses
    ];
    for phone in bad {
        let (status, code, _) = api_error(api.request_code(phone).await);
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_phone_number"),
            "{phone:?}"
        );
        // The same on verify (whose keys are fine).
        let request = verify_request(phone, "123456", good_keys(1));
        let (status, code, _) = api_error(api.verify(&request).await);
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_phone_number"),
            "verify {phone:?}"
        );
    }
    // Formatting characters are not errors: the number is normalised.
    let phone = unique_phone();
    let spaced = format!("{} {}-{}", &phone[..2], &phone[2..5], &phone[5..]);
    api.request_code(&spaced).await.expect("a formatted number");
    assert_eq!(server.codes.code_for(&phone).len(), 6);

    others_can_chat(&server).await;
}

#[tokio::test]
async fn wrong_codes_count_down_attempts_then_the_code_is_burnt() {
    let server = TestServer::start_with(|c| c.registration.max_attempts = 5).await;
    let api = Api::new(&server.url()).expect("api");
    let phone = unique_phone();
    api.request_code(&phone).await.expect("code requested");
    let code = server.codes.code_for(&phone);
    let wrong = other_code(&code);

    for left in (0..5).rev() {
        let request = verify_request(&phone, &wrong, good_keys(1));
        let (status, error, message) = api_error(api.verify(&request).await);
        assert_eq!((status, error.as_str()), (403, "invalid_code"), "{message}");
        assert!(
            message.contains(&format!("{left} attempts left")),
            "attempts count down: {message:?}"
        );
    }
    // Burnt: even the right code is refused now.
    let request = verify_request(&phone, &code, good_keys(1));
    let (status, error, _) = api_error(api.verify(&request).await);
    assert_eq!((status, error.as_str()), (403, "no_pending_code"));

    // A new code works.
    Client::request_code(&server.url(), &phone)
        .await
        .expect("new code");
    let fresh = server.codes.code_for(&phone);
    Client::register(&server.url(), &phone, &fresh, "test", StateFile::memory())
        .await
        .expect("registered with the new code");
    others_can_chat(&server).await;
}

#[tokio::test]
async fn a_used_code_cannot_be_replayed() {
    let server = TestServer::start().await;
    let api = Api::new(&server.url()).expect("api");
    let phone = unique_phone();
    api.request_code(&phone).await.expect("code requested");
    let code = server.codes.code_for(&phone);

    let first: VerifyCodeResponse = api
        .verify(&verify_request(&phone, &code, good_keys(3)))
        .await
        .expect("first verify");
    let (status, error, _) = api_error(
        api.verify(&verify_request(&phone, &code, good_keys(3)))
            .await,
    );
    assert_eq!((status, error.as_str()), (403, "no_pending_code"));

    // The replay did not register anything: the first device is intact.
    let credentials = Credentials {
        address: DeviceAddress::new(first.user_id, first.device_id),
        password: first.password,
    };
    assert_eq!(api.prekey_count(&credentials).await.expect("count"), 3);
    others_can_chat(&server).await;
}

#[tokio::test]
async fn an_expired_code_is_refused_with_410_code_expired() {
    let server = TestServer::start_with(|c| c.registration.code_ttl_secs = 0).await;
    let api = Api::new(&server.url()).expect("api");
    let phone = unique_phone();
    let answer = api.request_code(&phone).await.expect("code requested");
    assert_eq!(answer.expires_in_secs, 0);
    let code = server.codes.code_for(&phone);

    for _ in 0..2 {
        let (status, error, _) = api_error(
            api.verify(&verify_request(&phone, &code, good_keys(1)))
                .await,
        );
        assert_eq!((status, error.as_str()), (410, "code_expired"));
    }
    // Nobody can register on this server, but it is up.
    let ready = raw_http(&server, Method::GET, "/readyz", None, None, None).await;
    assert_eq!(ready.status, 200);
}

#[tokio::test]
async fn too_many_code_requests_for_a_number_get_429_with_retry_after() {
    const MAX: u32 = 3;
    const WINDOW_SECS: u64 = 600;
    let server = TestServer::start_with(|c| {
        c.registration.max_codes_per_window = MAX;
        c.registration.code_window_secs = WINDOW_SECS;
    })
    .await;
    let phone = unique_phone();
    let body = json!({ "phone": phone }).to_string();
    for _ in 0..MAX {
        let answer = post_json(&server, "/v1/registration/code", &body).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
    }
    let last_code = server.codes.code_for(&phone);

    let answer = post_json(&server, "/v1/registration/code", &body).await;
    answer.assert_error(429, "rate_limited");
    let retry_after: u64 = answer
        .headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("Retry-After in seconds");
    assert!(
        (1..=WINDOW_SECS).contains(&retry_after),
        "retry after {retry_after}s"
    );
    assert_eq!(answer.error().error.retry_after_secs, Some(retry_after));

    // The limit is per number, and the refused request did not replace the pending code.
    let other = json!({ "phone": unique_phone() }).to_string();
    assert_eq!(
        post_json(&server, "/v1/registration/code", &other)
            .await
            .status,
        202
    );
    Client::register(
        &server.url(),
        &phone,
        &last_code,
        "test",
        StateFile::memory(),
    )
    .await
    .expect("the last code sent still registers");
    others_can_chat(&server).await;
}

#[tokio::test]
async fn broken_json_bodies_are_refused_with_400_malformed_json() {
    let server = TestServer::start().await;
    let bob = server.register(&unique_phone()).await;
    let auth = bob.credentials().authorization();

    let mut bad_base64 = serde_json::to_value(good_keys(1)).expect("json");
    bad_base64["identity"]["ed25519"] = json!("***not base64***");
    let mut verify_bad_base64 = json!({ "phone": unique_phone(), "code": "123456" });
    verify_bad_base64["keys"] = bad_base64.clone();

    let cases: Vec<(Method, &str, bool, String)> = vec![
        (
            Method::POST,
            "/v1/registration/code",
            false,
            r#"{"phone": "+15551234567""#.into(),
        ),
        (
            Method::POST,
            "/v1/registration/code",
            false,
            "not json".into(),
        ),
        (Method::POST, "/v1/registration/code", false, String::new()),
        (
            Method::POST,
            "/v1/registration/code",
            false,
            r#"{"phone": 15551234567}"#.into(),
        ),
        (Method::POST, "/v1/registration/code", false, "{}".into()),
        (Method::POST, "/v1/registration/code", false, "[]".into()),
        (
            Method::POST,
            "/v1/registration/code",
            false,
            "\u{feff}{\"phone\":\"+15551234567\"".into(),
        ),
        (
            Method::POST,
            "/v1/registration/verify",
            false,
            r#"{"phone": "+15551234567", "code": "123456"}"#.into(),
        ),
        (
            Method::POST,
            "/v1/registration/verify",
            false,
            verify_bad_base64.to_string(),
        ),
        (Method::PUT, "/v1/keys", true, "{\"identity\":".into()),
        (Method::PUT, "/v1/keys", true, bad_base64.to_string()),
        (
            Method::POST,
            "/v1/keys/one-time",
            true,
            r#"{"one_time_prekeys": [{"id": -1, "public_key": ""}]}"#.into(),
        ),
        (Method::PUT, "/v1/keys/signed", true, "null".into()),
    ];
    for (method, path, authed, body) in cases {
        let answer = raw_http(
            &server,
            method.clone(),
            path,
            Some("application/json"),
            authed.then_some(auth.as_str()),
            Some(body.clone().into_bytes()),
        )
        .await;
        let body_shown = body.chars().take(60).collect::<String>();
        assert_eq!(
            (answer.status, answer.error().error.code.as_str()),
            (400, "malformed_json"),
            "{method} {path} {body_shown:?}: {}",
            answer.text
        );
    }

    // JSON sent without saying so is refused as well, with an error body.
    let answer = raw_http(
        &server,
        Method::POST,
        "/v1/registration/code",
        None,
        None,
        Some(json!({ "phone": unique_phone() }).to_string().into_bytes()),
    )
    .await;
    answer.assert_error(400, "malformed_json");

    // Bob's keys were not touched: a new contact still starts a session with him.
    assert_eq!(
        bob.api().prekey_count(&bob.credentials()).await.unwrap(),
        u64::from(PREKEY_BATCH)
    );
    let alice = server.register(&unique_phone()).await;
    let (alice_chat, _alice_events) = alice.connect().await.expect("alice connects");
    let (_bob_chat, mut bob_events) = bob.connect().await.expect("bob connects");
    let sent = alice_chat
        .send_text(bob.user_id(), "hello")
        .await
        .expect("sent");
    assert_eq!(
        messages(&mut bob_events, 1).await[0],
        (alice.user_id(), sent.id, "hello".into())
    );
    others_can_chat(&server).await;
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    const LIMIT: usize = 16 * 1024;
    let server = TestServer::start_with(|c| c.server.max_http_body_bytes = LIMIT).await;
    let bob = server.register(&unique_phone()).await;
    let pad = "x".repeat(LIMIT + 1000);

    let code_body = json!({ "phone": unique_phone(), "pad": pad }).to_string();
    let answer = post_json(&server, "/v1/registration/code", &code_body).await;
    answer.assert_error(413, "payload_too_large");

    let mut verify_body =
        serde_json::to_value(verify_request(&unique_phone(), "123456", good_keys(1)))
            .expect("json");
    verify_body["device_name"] = Value::String(pad.clone());
    let answer = post_json(&server, "/v1/registration/verify", &verify_body.to_string()).await;
    answer.assert_error(413, "payload_too_large");

    // Authenticated: too many keys at once in bytes (not in number).
    let mut keys = serde_json::to_value(good_keys(1)).expect("json");
    keys["pad"] = Value::String(pad.clone());
    let answer = raw_http(
        &server,
        Method::PUT,
        "/v1/keys",
        Some("application/json"),
        Some(&bob.credentials().authorization()),
        Some(keys.to_string().into_bytes()),
    )
    .await;
    answer.assert_error(413, "payload_too_large");
    assert_eq!(
        bob.api().prekey_count(&bob.credentials()).await.unwrap(),
        u64::from(PREKEY_BATCH),
        "the refused upload changed nothing"
    );

    // A body under the limit is fine, and registration (a few KiB) works.
    let small = json!({ "phone": unique_phone() }).to_string();
    assert_eq!(
        post_json(&server, "/v1/registration/code", &small)
            .await
            .status,
        202
    );
    others_can_chat(&server).await;
}

#[tokio::test]
async fn bad_keys_on_verify_get_invalid_keys_and_do_not_burn_the_code() {
    let server = TestServer::start_with(|c| c.registration.max_attempts = 3).await;
    let api = Api::new(&server.url()).expect("api");
    let phone = unique_phone();
    api.request_code(&phone).await.expect("code requested");
    let code = server.codes.code_for(&phone);

    let cases = bad_key_uploads();
    assert!(cases.len() > 3, "more bad uploads than attempts");
    for (what, keys) in cases {
        let (status, error, message) =
            api_error(api.verify(&verify_request(&phone, &code, keys)).await);
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_keys"),
            "{what}: {message}"
        );
    }

    // The code still works with good keys.
    let registered = api
        .verify(&verify_request(&phone, &code, good_keys(5)))
        .await
        .expect("the code was not burnt by bad keys");
    let credentials = Credentials {
        address: DeviceAddress::new(registered.user_id, registered.device_id),
        password: registered.password,
    };
    assert_eq!(api.prekey_count(&credentials).await.expect("count"), 5);
    others_can_chat(&server).await;
}

#[tokio::test]
async fn bad_key_uploads_get_invalid_keys_and_leave_the_existing_keys_in_place() {
    let server = TestServer::start().await;
    let bob = server.register(&unique_phone()).await;
    let auth = bob.credentials().authorization();
    let upload = |path: &'static str, method: Method, body: Value| {
        let server = &server;
        let auth = auth.clone();
        async move {
            raw_http(
                server,
                method,
                path,
                Some("application/json"),
                Some(&auth),
                Some(body.to_string().into_bytes()),
            )
            .await
        }
    };

    for (what, keys) in bad_key_uploads() {
        let body = serde_json::to_value(&keys).expect("json");
        let answer = upload("/v1/keys", Method::PUT, body).await;
        assert_eq!(
            (answer.status, answer.error().error.code.as_str()),
            (400, "invalid_keys"),
            "PUT /v1/keys with {what}: {}",
            answer.text
        );
    }
    let short = json!({ "one_time_prekeys": [{ "id": 500, "public_key": "AAAA" }] });
    upload("/v1/keys/one-time", Method::POST, short)
        .await
        .assert_error(400, "invalid_keys");
    let many = json!({ "one_time_prekeys": good_keys(201).one_time_prekeys });
    upload("/v1/keys/one-time", Method::POST, many)
        .await
        .assert_error(400, "invalid_keys");
    // A signed prekey signed by some other identity than Bob's.
    let foreign = serde_json::to_value(good_keys(0).signed_prekey).expect("json");
    upload("/v1/keys/signed", Method::PUT, foreign)
        .await
        .assert_error(400, "invalid_keys");

    // Nothing changed: Bob's one-time prekeys are all there and his identity is intact, so a
    // new contact starts a session that Bob can decrypt.
    assert_eq!(
        bob.api().prekey_count(&bob.credentials()).await.unwrap(),
        u64::from(PREKEY_BATCH)
    );
    let alice = server.register(&unique_phone()).await;
    let (alice_chat, _alice_events) = alice.connect().await.expect("alice connects");
    let (_bob_chat, mut bob_events) = bob.connect().await.expect("bob connects");
    let sent = alice_chat
        .send_text(bob.user_id(), "do your keys still work?")
        .await
        .expect("sent");
    assert_eq!(
        messages(&mut bob_events, 1).await[0],
        (alice.user_id(), sent.id, "do your keys still work?".into())
    );
    others_can_chat(&server).await;
}

#[tokio::test]
async fn exhausted_one_time_prekeys_fall_back_to_the_signed_prekey() {
    let server = TestServer::start().await;
    let bob = server.register(&unique_phone()).await;
    let mallory = server.register(&unique_phone()).await;
    let alice = server.register(&unique_phone()).await;

    // Someone fetches Bob's bundles until his one-time prekeys run out.
    let mut handed_out = Vec::new();
    loop {
        let bundles = mallory
            .api()
            .bundles(&mallory.credentials(), bob.user_id(), None)
            .await
            .expect("bundles");
        assert_eq!(bundles.devices.len(), 1);
        let bundle = &bundles.devices[0];
        assert_eq!(bundle.device_id, bob.address().device);
        match &bundle.one_time_prekey {
            Some(key) => handed_out.push(key.id),
            None => break,
        }
        assert!(
            handed_out.len() <= PREKEY_BATCH as usize,
            "more one-time prekeys handed out than Bob uploaded"
        );
    }
    assert_eq!(handed_out.len(), PREKEY_BATCH as usize);
    handed_out.sort_unstable();
    handed_out.dedup();
    assert_eq!(
        handed_out.len(),
        PREKEY_BATCH as usize,
        "each one-time prekey is handed out once"
    );
    assert_eq!(bob.api().prekey_count(&bob.credentials()).await.unwrap(), 0);

    // Alice, who never talked to Bob, still reaches him (X3DH with the signed prekey only).
    let (alice_chat, mut alice_events) = alice.connect().await.expect("alice connects");
    let (bob_chat, mut bob_events) = bob.connect().await.expect("bob connects");
    let sent = alice_chat
        .send_text(bob.user_id(), "no one-time prekey left for me")
        .await
        .expect("sent");
    assert_eq!(
        messages(&mut bob_events, 1).await[0],
        (
            alice.user_id(),
            sent.id,
            "no one-time prekey left for me".into()
        )
    );
    let reply = bob_chat
        .send_text(alice.user_id(), "got it anyway")
        .await
        .expect("sent");
    assert_eq!(
        messages(&mut alice_events, 1).await[0],
        (bob.user_id(), reply.id, "got it anyway".into())
    );
    others_can_chat(&server).await;
}

/// `Basic <base64(login)>`, built by hand for malformed logins the SDK would never send.
fn basic(login: &str) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in login.as_bytes().chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test]
async fn authenticated_endpoints_without_or_with_wrong_credentials_get_401() {
    let server = TestServer::start().await;
    let bob = server.register(&unique_phone()).await;
    let good = bob.credentials();
    let wrong_password = Credentials {
        address: good.address,
        password: "guess".into(),
    }
    .authorization();
    let unknown_device = Credentials {
        address: DeviceAddress::new(good.address.user, good.address.device + 1),
        password: good.password.clone(),
    }
    .authorization();
    let headers: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        ("a wrong password", Some(wrong_password)),
        ("an unknown device", Some(unknown_device)),
        ("another scheme", Some(format!("Bearer {}", good.password))),
        ("bad base64", Some("Basic !!!".into())),
        (
            "no device id",
            Some(basic(&format!("{}:{}", good.address.user, good.password))),
        ),
        (
            "no password separator",
            Some(basic(&good.address.user.to_string())),
        ),
    ];
    let paths = [
        (Method::GET, "/v1/keys/count".to_owned()),
        (Method::GET, format!("/v1/keys/{}", bob.user_id())),
        (Method::GET, format!("/v1/directory/{}", bob.phone())),
        (Method::PUT, "/v1/keys".to_owned()),
        (Method::POST, "/v1/keys/one-time".to_owned()),
    ];
    for (what, header) in &headers {
        for (method, path) in &paths {
            let body = matches!(*method, Method::PUT | Method::POST)
                .then(|| serde_json::to_vec(&good_keys(1)).expect("json"));
            let answer = raw_http(
                &server,
                method.clone(),
                path,
                Some("application/json"),
                header.as_deref(),
                body,
            )
            .await;
            assert_eq!(
                (answer.status, answer.error().error.code.as_str()),
                (401, "unauthorized"),
                "{method} {path} with {what}: {}",
                answer.text
            );
            assert!(answer.headers.contains_key("www-authenticate"));
        }
    }
    // Through the SDK: ClientError::Api with 401.
    let wrong = Credentials {
        address: good.address,
        password: "guess".into(),
    };
    let (status, code, _) = api_error(bob.api().prekey_count(&wrong).await);
    assert_eq!((status, code.as_str()), (401, "unauthorized"));

    // None of it did anything: the right credentials work, the keys are all there.
    assert_eq!(
        bob.api().prekey_count(&good).await.unwrap(),
        u64::from(PREKEY_BATCH)
    );
    others_can_chat(&server).await;
}

#[tokio::test]
async fn unknown_routes_get_404_with_an_error_body_and_ops_endpoints_answer() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::POST, "/v1/nope"),
        (Method::GET, "/v2/gateway"),
        (Method::DELETE, "/v1/registration/code/extra"),
        (Method::GET, "/v1/keys/a/b"),
    ] {
        let answer = raw_http(&server, method.clone(), path, None, None, None).await;
        answer.assert_error(404, "not_found");
    }

    let health = raw_http(&server, Method::GET, "/healthz", None, None, None).await;
    assert_eq!(health.status, 200);
    let ready = raw_http(&server, Method::GET, "/readyz", None, None, None).await;
    assert_eq!(ready.status, 200);

    // Some traffic, then the metrics show it.
    let alice = server.register(&unique_phone()).await;
    let bob = server.register(&unique_phone()).await;
    let (alice_chat, _alice_events) = alice.connect().await.expect("alice connects");
    let (_bob_chat, mut bob_events) = bob.connect().await.expect("bob connects");
    alice_chat
        .send_text(bob.user_id(), "counted")
        .await
        .expect("sent");
    messages(&mut bob_events, 1).await;

    let metrics = raw_http(&server, Method::GET, "/metrics", None, None, None).await;
    assert_eq!(metrics.status, 200);
    let value = |name: &str| -> f64 {
        metrics
            .text
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(name)?;
                rest.strip_prefix(' ')?.trim().parse().ok()
            })
            .unwrap_or_else(|| panic!("metric {name} missing from:\n{}", metrics.text))
    };
    assert_eq!(value("courier_connections"), 2.0, "two open connections");
    assert_eq!(
        value("courier_messages_in_total"),
        1.0,
        "one message accepted"
    );
    others_can_chat(&server).await;
}

#[tokio::test]
async fn every_error_answer_has_the_documented_error_body() {
    let server = TestServer::start().await;
    for (method, path) in [
        (Method::GET, "/v1/registration/code"),
        (Method::POST, "/v1/keys/count"),
        (Method::DELETE, "/healthz"),
    ] {
        let answer = raw_http(&server, method.clone(), path, None, None, None).await;
        assert_eq!(answer.status, 405, "{method} {path}");
        answer.error();
    }
    // A plain GET of the gateway path, without the WebSocket upgrade headers.
    let answer = raw_http(&server, Method::GET, "/v1/gateway", None, None, None).await;
    assert!(answer.status >= 400, "refused: {}", answer.status);
    answer.error();
}
