use serde_json::json;

use super::*;
use crate::api::send_request::parse;
use crate::repo::model::{Template as Stored, TemplateStatus};

fn request(value: serde_json::Value) -> SendRequest {
    parse(value.to_string().as_bytes()).unwrap()
}

fn stored(status: TemplateStatus) -> Stored {
    Stored {
        id: "1".into(),
        business_id: "b".into(),
        name: "order_update".into(),
        language: "en_US".into(),
        category: "UTILITY".into(),
        status,
        components: vec![
            json!({"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"}),
            json!({"type": "BODY", "text": "Hi {{1}}, order {{2}} ships {{3}}. Thanks {{1}}!"}),
            json!({"type": "FOOTER", "text": "Reply STOP to opt out"}),
            json!({"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Track"}, {"type": "QUICK_REPLY", "text": "Cancel"}]}),
        ],
        parameter_format: "POSITIONAL".into(),
        created_ms: 0,
    }
}

#[test]
fn text_with_reply_context() {
    let r = request(
        json!({"messaging_product": "whatsapp", "to": "1555", "type": "text",
        "text": {"body": "hello"}, "context": {"message_id": "wamid.X"}}),
    );
    let content = compose(&r, "text", "Shop", None).unwrap();
    assert_eq!(
        content.body,
        Some(content::Body::Text(Text {
            body: "hello".into()
        }))
    );
    assert_eq!(content.context.unwrap().message_id, "wamid.X");
    assert_eq!(content.sender_name, "Shop");
}

#[test]
fn text_limits_and_unknown_fields() {
    let long = "x".repeat(MAX_TEXT_CHARS + 1);
    let r = request(json!({"messaging_product": "whatsapp", "to": "1", "text": {"body": long}}));
    assert!(matches!(
        compose(&r, "text", "", None),
        Err(BusinessError::Invalid(_))
    ));
    let broken = parse(
        br#"{"messaging_product": "whatsapp", "to": "1", "text": {"body": "x", "colour": 1}}"#,
    );
    assert!(matches!(broken, Err(BusinessError::Invalid(m)) if m.contains("colour")));
    assert!(matches!(
        parse(b"{not json"),
        Err(BusinessError::Invalid(_))
    ));
}

#[test]
fn reply_buttons_and_their_limits() {
    let mut body = json!({"messaging_product": "whatsapp", "to": "1", "type": "interactive",
        "interactive": {"type": "button", "header": {"type": "text", "text": "Pick"},
            "body": {"text": "Which?"}, "footer": {"text": "f"},
            "action": {"buttons": [
                {"type": "reply", "reply": {"id": "a", "title": "A"}},
                {"type": "reply", "reply": {"id": "b", "title": "B"}}]}}});
    let content = compose(&request(body.clone()), "interactive", "", None).unwrap();
    let Some(content::Body::Interactive(i)) = content.body else {
        panic!()
    };
    assert_eq!(i.header, "Pick");
    let Some(interactive::Action::Buttons(b)) = i.action else {
        panic!()
    };
    assert_eq!(
        b.buttons.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    body["interactive"]["action"]["buttons"][1]["reply"]["id"] = json!("a");
    assert!(compose(&request(body.clone()), "interactive", "", None).is_err());
    body["interactive"]["action"]["buttons"][1]["reply"]["title"] = json!("x".repeat(21));
    assert!(compose(&request(body), "interactive", "", None).is_err());
}

#[test]
fn list_rows_counted_over_sections() {
    let rows: Vec<_> = (0..11)
        .map(|i| json!({"id": format!("r{i}"), "title": "t"}))
        .collect();
    let body = json!({"messaging_product": "whatsapp", "to": "1", "type": "interactive",
        "interactive": {"type": "list", "body": {"text": "menu"},
            "action": {"button": "Open", "sections": [{"title": "s", "rows": rows}]}}});
    assert!(compose(&request(body), "interactive", "", None).is_err());
    let body = json!({"messaging_product": "whatsapp", "to": "1", "type": "interactive",
        "interactive": {"type": "list", "body": {"text": "menu"},
            "action": {"button": "Open", "sections": [{"title": "s", "rows": [{"id": "r1", "title": "One", "description": "d"}]}]}}});
    let content = compose(&request(body), "interactive", "", None).unwrap();
    let Some(content::Body::Interactive(i)) = content.body else {
        panic!()
    };
    let Some(interactive::Action::List(list)) = i.action else {
        panic!()
    };
    assert_eq!(list.sections[0].rows[0].description, "d");
}

#[test]
fn template_rendering_parameters_and_payloads() {
    let r = request(
        json!({"messaging_product": "whatsapp", "to": "1", "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}, "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "#42"}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}, {"type": "text", "text": "#42"}, {"type": "text", "text": "today"}]},
            {"type": "button", "sub_type": "quick_reply", "index": "1", "parameters": [{"type": "payload", "payload": "CANCEL-42"}]}]}}),
    );
    let content = compose(&r, "template", "", Some(&stored(TemplateStatus::Approved))).unwrap();
    let Some(content::Body::Template(t)) = content.body else {
        panic!()
    };
    assert_eq!(t.header, "Order #42");
    assert_eq!(t.body, "Hi Ann, order #42 ships today. Thanks Ann!");
    assert_eq!(t.footer, "Reply STOP to opt out");
    assert_eq!(t.buttons[0].id, "Track");
    assert_eq!(t.buttons[1].id, "CANCEL-42");
}

#[test]
fn template_errors_have_template_codes() {
    let missing_param = request(
        json!({"messaging_product": "whatsapp", "to": "1", "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ann"}]}]}}),
    );
    let code = |r: &SendRequest, t: Option<&Stored>| match compose(r, "template", "", t) {
        Err(BusinessError::Template { code, .. }) => code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(&missing_param, Some(&stored(TemplateStatus::Approved))),
        132000
    );
    assert_eq!(code(&missing_param, None), 132001);
    assert_eq!(
        code(&missing_param, Some(&stored(TemplateStatus::Paused))),
        132015
    );
    assert_eq!(
        code(&missing_param, Some(&stored(TemplateStatus::Pending))),
        132001
    );
}

#[test]
fn media_types_are_refused_clearly() {
    let r = request(
        json!({"messaging_product": "whatsapp", "to": "1", "type": "image", "image": {"id": "1"}}),
    );
    assert!(matches!(
        compose(&r, "image", "", None),
        Err(BusinessError::Unsupported(_))
    ));
}
