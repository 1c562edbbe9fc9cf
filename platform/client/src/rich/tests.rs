use courier_protocol::v1::{
    Button, Interactive, ListMenu, ListRow, ListSection, ReplyButtons, Template, content,
    interactive, interactive_reply::Kind,
};

use super::*;

fn buttons() -> Content {
    Content {
        body: Some(content::Body::Interactive(Interactive {
            header: "Order 42".into(),
            body: "Is this right?".into(),
            footer: String::new(),
            action: Some(interactive::Action::Buttons(ReplyButtons {
                buttons: vec![
                    Button {
                        id: "yes".into(),
                        title: "Yes".into(),
                    },
                    Button {
                        id: "no".into(),
                        title: "No".into(),
                    },
                ],
            })),
        })),
        ..Default::default()
    }
}

fn list() -> Content {
    let row = |id: &str, title: &str| ListRow {
        id: id.into(),
        title: title.into(),
        description: format!("about {title}"),
    };
    Content {
        body: Some(content::Body::Interactive(Interactive {
            body: "Pick a slot".into(),
            action: Some(interactive::Action::List(ListMenu {
                button: "Slots".into(),
                sections: vec![
                    ListSection {
                        title: "Morning".into(),
                        rows: vec![row("m9", "9:00"), row("m10", "10:00")],
                    },
                    ListSection {
                        title: "Evening".into(),
                        rows: vec![row("e6", "18:00")],
                    },
                ],
            })),
            ..Default::default()
        })),
        ..Default::default()
    }
}

#[test]
fn a_summary_shows_the_body_and_numbered_choices() {
    assert_eq!(
        summary(&buttons()),
        "Order 42 / Is this right? [1) Yes | 2) No]"
    );
    assert_eq!(summary(&text("hi")), "hi");
    assert_eq!(summary(&reaction("m1", "👍")), "reacted 👍 to m1");
    assert_eq!(summary(&reaction("m1", "")), "took back the reaction to m1");
    assert!(summary(&Content::default()).contains("does not know"));
}

#[test]
fn list_rows_are_numbered_across_sections() {
    let offered = choices(&list());
    let titles: Vec<&str> = offered.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles, ["9:00", "10:00", "18:00"]);
    assert!(offered.iter().all(|c| c.kind == Kind::List));
    assert_eq!(offered[2].description, "about 18:00");
}

#[test]
fn a_choice_is_found_by_number_id_or_title() {
    let by_number = choose(&buttons(), "2").unwrap();
    assert_eq!(
        (by_number.id.as_str(), by_number.title.as_str()),
        ("no", "No")
    );
    assert_eq!(by_number.kind, Kind::Button as i32);
    assert_eq!(choose(&buttons(), "yes").unwrap().title, "Yes");
    assert_eq!(choose(&buttons(), " NO ").unwrap().id, "no");
    assert_eq!(choose(&list(), "3").unwrap().id, "e6");
}

#[test]
fn a_wrong_choice_names_the_choices() {
    let error = choose(&buttons(), "7").unwrap_err().to_string();
    assert!(
        error.contains("1) Yes (yes)") && error.contains("2) No (no)"),
        "{error}"
    );
    assert!(choose(&buttons(), "0").is_err(), "numbers start at 1");
    let error = choose(&text("plain"), "1").unwrap_err().to_string();
    assert!(error.contains("no buttons or list"), "{error}");
}

#[test]
fn template_quick_replies_answer_as_template_buttons() {
    let template = Content {
        body: Some(content::Body::Template(Template {
            name: "delivery".into(),
            language: "en_US".into(),
            body: "Your parcel arrives today".into(),
            buttons: vec![Button {
                id: "resched".into(),
                title: "Reschedule".into(),
            }],
            ..Default::default()
        })),
        ..Default::default()
    };
    let answer = choose(&template, "1").unwrap();
    assert_eq!(answer.kind, Kind::TemplateButton as i32);
    let reply = interactive_reply(context("t1", None), answer);
    assert_eq!(reply.context.as_ref().unwrap().message_id, "t1");
    assert_eq!(summary(&reply), "chose \"Reschedule\" (resched)");
}

#[test]
fn plain_text_is_only_a_text_without_extras() {
    assert!(is_plain_text(&text("a")));
    assert!(!is_plain_text(&reply(context("m", None), "a")));
    let named = Content {
        sender_name: "Shop".into(),
        ..text("a")
    };
    assert!(!is_plain_text(&named));
    assert!(!is_plain_text(&buttons()));
}
