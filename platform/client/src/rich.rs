//! Rich messages (`Content` fields 20-39): building them, a one-line text of any of them, and
//! answering one with buttons, a list or a template ([`choose`]).
//!
//! The types are the wire types of `content.proto` (`courier_protocol::v1`), so nothing the
//! sender put in is lost on the way to the application.

use courier_protocol::UserId;
use courier_protocol::v1::{
    Content, InteractiveReply, MessageContext, Reaction, Text, content, interactive,
    interactive_reply,
};

use crate::error::{ClientError, ClientResult};

/// A text message.
pub fn text(body: &str) -> Content {
    Content {
        body: Some(content::Body::Text(Text {
            body: body.to_owned(),
        })),
        ..Default::default()
    }
}

/// The message a reply quotes: its id and who sent it (`None`: the recipient of the reply).
pub fn context(message_id: &str, from: Option<UserId>) -> MessageContext {
    MessageContext {
        message_id: message_id.to_owned(),
        from_user: from.map(|user| user.to_string()).unwrap_or_default(),
    }
}

/// A text that replies to `quoted`.
pub fn reply(quoted: MessageContext, body: &str) -> Content {
    Content {
        context: Some(quoted),
        ..text(body)
    }
}

/// An emoji reaction to `message_id`; an empty emoji takes the reaction back.
pub fn reaction(message_id: &str, emoji: &str) -> Content {
    Content {
        body: Some(content::Body::Reaction(Reaction {
            message_id: message_id.to_owned(),
            emoji: emoji.to_owned(),
        })),
        ..Default::default()
    }
}

/// The answer to the interactive or template message `quoted`.
pub fn interactive_reply(quoted: MessageContext, reply: InteractiveReply) -> Content {
    Content {
        body: Some(content::Body::InteractiveReply(reply)),
        context: Some(quoted),
        ..Default::default()
    }
}

/// Whether `content` is a plain text: no rich body, no reply, no sender name.
pub fn is_plain_text(content: &Content) -> bool {
    matches!(content.body, Some(content::Body::Text(_)))
        && content.context.is_none()
        && content.sender_name.is_empty()
}

/// One line a human reads (what `Event::Message.text` and the history show): the text of a
/// text; the body and the numbered choices of an interactive message or a template; what a
/// reaction or a choice was.
pub fn summary(content: &Content) -> String {
    let Some(body) = &content.body else {
        return "(a kind of message this version does not know)".to_owned();
    };
    match body {
        content::Body::Text(text) => text.body.clone(),
        content::Body::Reaction(reaction) if reaction.emoji.is_empty() => {
            format!("took back the reaction to {}", reaction.message_id)
        }
        content::Body::Reaction(reaction) => {
            format!("reacted {} to {}", reaction.emoji, reaction.message_id)
        }
        content::Body::Interactive(message) => with_choices(
            &[&message.header, &message.body, &message.footer],
            &choices(content),
        ),
        content::Body::Template(template) => with_choices(
            &[&template.header, &template.body, &template.footer],
            &choices(content),
        ),
        content::Body::InteractiveReply(reply) => {
            format!("chose \"{}\" ({})", reply.title, reply.id)
        }
        content::Body::SenderKey(_) => "(a group key)".to_owned(),
    }
}

fn with_choices(parts: &[&String], choices: &[Choice]) -> String {
    let mut line = parts
        .iter()
        .filter(|part| !part.is_empty())
        .map(|part| part.as_str())
        .collect::<Vec<_>>()
        .join(" / ");
    if !choices.is_empty() {
        let numbered: Vec<String> = choices
            .iter()
            .enumerate()
            .map(|(i, choice)| format!("{}) {}", i + 1, choice.title))
            .collect();
        line.push_str(&format!(" [{}]", numbered.join(" | ")));
    }
    line
}

/// One choice an interactive message or a template offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub kind: interactive_reply::Kind,
    pub id: String,
    pub title: String,
    pub description: String,
}

impl Choice {
    /// The `InteractiveReply` that picks this choice.
    pub fn reply(&self) -> InteractiveReply {
        InteractiveReply {
            kind: self.kind as i32,
            id: self.id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
        }
    }
}

/// The choices of `content` in the order shown (numbered from 1): the reply buttons of an
/// interactive message, the rows of its list (section after section), the quick-reply buttons
/// of a template. Empty for anything else.
pub fn choices(content: &Content) -> Vec<Choice> {
    use interactive_reply::Kind;
    let button = |kind: Kind, button: &courier_protocol::v1::Button| Choice {
        kind,
        id: button.id.clone(),
        title: button.title.clone(),
        description: String::new(),
    };
    match &content.body {
        Some(content::Body::Interactive(message)) => match &message.action {
            Some(interactive::Action::Buttons(buttons)) => buttons
                .buttons
                .iter()
                .map(|b| button(Kind::Button, b))
                .collect(),
            Some(interactive::Action::List(list)) => list
                .sections
                .iter()
                .flat_map(|section| &section.rows)
                .map(|row| Choice {
                    kind: Kind::List,
                    id: row.id.clone(),
                    title: row.title.clone(),
                    description: row.description.clone(),
                })
                .collect(),
            None => Vec::new(),
        },
        Some(content::Body::Template(template)) => template
            .buttons
            .iter()
            .map(|b| button(Kind::TemplateButton, b))
            .collect(),
        _ => Vec::new(),
    }
}

/// The answer that picks `choice` on `content`: by number (`1` is the first choice shown),
/// else by id, else by title (ignoring case). The kind follows the message: `BUTTON` for reply
/// buttons, `LIST` for a list row, `TEMPLATE_BUTTON` for a template's quick reply.
pub fn choose(content: &Content, choice: &str) -> ClientResult<InteractiveReply> {
    let offered = choices(content);
    if offered.is_empty() {
        return Err(ClientError::Usage(
            "that message has no buttons or list to choose from".into(),
        ));
    }
    let choice = choice.trim();
    let by_number = choice
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|index| offered.get(index));
    let found = by_number
        .or_else(|| offered.iter().find(|c| c.id == choice))
        .or_else(|| {
            offered
                .iter()
                .find(|c| c.title.eq_ignore_ascii_case(choice))
        });
    match found {
        Some(found) => Ok(found.reply()),
        None => {
            let listed: Vec<String> = offered
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}) {} ({})", i + 1, c.title, c.id))
                .collect();
            Err(ClientError::Usage(format!(
                "no choice {choice:?}; the choices are {}",
                listed.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests;
