//! From a Cloud API send request to the `courier.v1.Content` that the number's device
//! encrypts for the recipient: text, reaction, interactive (reply buttons, lists) and
//! template messages, each with its reply `context`, validated with the Cloud API's limits.

use courier_protocol::v1::{
    Button, Content, Interactive, ListMenu, ListRow, ListSection, MessageContext, Reaction,
    ReplyButtons, Template, Text, content, interactive,
};

use crate::api::send_request::{
    ComponentParam, InteractiveParam, MAX_TEXT_CHARS, SendRequest, TemplateParam, invalid,
};
use crate::error::{BusinessError, BusinessResult};
use crate::repo::model::{self, TemplateStatus};

fn check_len(what: &str, text: &str, max: usize) -> BusinessResult<()> {
    let chars = text.chars().count();
    if chars > max {
        return Err(invalid(format!(
            "{what} is {chars} characters; at most {max}"
        )));
    }
    Ok(())
}

fn required<'a, T>(value: &'a Option<T>, name: &str) -> BusinessResult<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| invalid(format!("The parameter {name} is required.")))
}

/// The content of a message of `kind`, with `template` the stored template when `kind` is
/// `"template"` (looked up by the caller, so that its absence is a 132001 error there).
pub fn compose(
    request: &SendRequest,
    kind: &str,
    sender_name: &str,
    template: Option<&model::Template>,
) -> BusinessResult<Content> {
    let body = match kind {
        "text" => {
            let text = required(&request.text, "text")?;
            if text.body.trim().is_empty() {
                return Err(invalid("text.body must not be empty"));
            }
            check_len("text.body", &text.body, MAX_TEXT_CHARS)?;
            content::Body::Text(Text {
                body: text.body.clone(),
            })
        }
        "reaction" => {
            let reaction = required(&request.reaction, "reaction")?;
            if reaction.message_id.is_empty() {
                return Err(invalid("reaction.message_id must not be empty"));
            }
            if reaction.emoji.chars().count() > 8 {
                return Err(invalid(
                    "reaction.emoji must be one emoji (or empty to remove)",
                ));
            }
            content::Body::Reaction(Reaction {
                message_id: reaction.message_id.clone(),
                emoji: reaction.emoji.clone(),
            })
        }
        "interactive" => content::Body::Interactive(interactive_body(required(
            &request.interactive,
            "interactive",
        )?)?),
        "template" => {
            let param = required(&request.template, "template")?;
            let stored = template.ok_or_else(|| BusinessError::Template {
                code: 132001,
                message: format!(
                    "template name ({}) does not exist in {}",
                    param.name, param.language.code
                ),
            })?;
            content::Body::Template(render_template(param, stored)?)
        }
        "image" | "audio" | "video" | "document" | "sticker" => {
            return Err(BusinessError::Unsupported(format!(
                "{kind} messages need the media service, which this deployment does not have yet"
            )));
        }
        other => {
            return Err(BusinessError::Unsupported(format!(
                "message type {other:?} is not supported"
            )));
        }
    };
    let context = match &request.context {
        Some(context) if !context.message_id.is_empty() => Some(MessageContext {
            message_id: context.message_id.clone(),
            from_user: String::new(),
        }),
        Some(_) => return Err(invalid("context.message_id must not be empty")),
        None => None,
    };
    Ok(Content {
        body: Some(body),
        context,
        sender_name: sender_name.to_owned(),
    })
}

fn interactive_body(param: &InteractiveParam) -> BusinessResult<Interactive> {
    let header = match &param.header {
        None => String::new(),
        Some(h) if h.kind == "text" => {
            let text = required(&h.text, "interactive.header.text")?;
            check_len("interactive.header.text", text, 60)?;
            text.clone()
        }
        Some(h) => {
            return Err(BusinessError::Unsupported(format!(
                "interactive header of type {:?} needs the media service",
                h.kind
            )));
        }
    };
    let body = required(&param.body, "interactive.body")?.text.clone();
    check_len("interactive.body.text", &body, 1024)?;
    let footer = param
        .footer
        .as_ref()
        .map(|f| f.text.clone())
        .unwrap_or_default();
    check_len("interactive.footer.text", &footer, 60)?;
    let action = match param.kind.as_str() {
        "button" => {
            let buttons = required(&param.action.buttons, "interactive.action.buttons")?;
            if buttons.is_empty() || buttons.len() > 3 {
                return Err(invalid(
                    "interactive.action.buttons must hold 1 to 3 buttons",
                ));
            }
            let mut out = Vec::with_capacity(buttons.len());
            for (i, b) in buttons.iter().enumerate() {
                if b.kind != "reply" {
                    return Err(invalid(format!("buttons[{i}].type must be \"reply\"")));
                }
                check_len(&format!("buttons[{i}].reply.title"), &b.reply.title, 20)?;
                check_len(&format!("buttons[{i}].reply.id"), &b.reply.id, 256)?;
                if b.reply.id.is_empty() || b.reply.title.is_empty() {
                    return Err(invalid(format!("buttons[{i}] needs an id and a title")));
                }
                if out.iter().any(|o: &Button| o.id == b.reply.id) {
                    return Err(invalid(format!("buttons[{i}].reply.id is not unique")));
                }
                out.push(Button {
                    id: b.reply.id.clone(),
                    title: b.reply.title.clone(),
                });
            }
            interactive::Action::Buttons(ReplyButtons { buttons: out })
        }
        "list" => {
            let button = required(&param.action.button, "interactive.action.button")?;
            check_len("interactive.action.button", button, 20)?;
            let sections = required(&param.action.sections, "interactive.action.sections")?;
            if sections.is_empty() || sections.len() > 10 {
                return Err(invalid(
                    "interactive.action.sections must hold 1 to 10 sections",
                ));
            }
            let rows: usize = sections.iter().map(|s| s.rows.len()).sum();
            if rows == 0 || rows > 10 {
                return Err(invalid("a list holds 1 to 10 rows in all"));
            }
            if sections.len() > 1 && sections.iter().any(|s| s.title.is_none()) {
                return Err(invalid(
                    "every section needs a title when there are several",
                ));
            }
            let mut ids = std::collections::HashSet::new();
            let mut out = Vec::new();
            for section in sections {
                let mut section_rows = Vec::new();
                for row in &section.rows {
                    check_len("row.title", &row.title, 24)?;
                    check_len("row.id", &row.id, 200)?;
                    let description = row.description.clone().unwrap_or_default();
                    check_len("row.description", &description, 72)?;
                    if !ids.insert(row.id.clone()) {
                        return Err(invalid(format!("row id {:?} is not unique", row.id)));
                    }
                    section_rows.push(ListRow {
                        id: row.id.clone(),
                        title: row.title.clone(),
                        description,
                    });
                }
                let title = section.title.clone().unwrap_or_default();
                check_len("section.title", &title, 24)?;
                out.push(ListSection {
                    title,
                    rows: section_rows,
                });
            }
            interactive::Action::List(ListMenu {
                button: button.clone(),
                sections: out,
            })
        }
        other => {
            return Err(BusinessError::Unsupported(format!(
                "interactive type {other:?} is not supported; use \"button\" or \"list\""
            )));
        }
    };
    Ok(Interactive {
        header,
        body,
        footer,
        action: Some(action),
    })
}

/// Fills a stored template's placeholders (`{{1}}`, or `{{name}}` with `parameter_name`)
/// with the request's parameters.
fn render_template(param: &TemplateParam, stored: &model::Template) -> BusinessResult<Template> {
    match stored.status {
        TemplateStatus::Approved => {}
        TemplateStatus::Paused => {
            return Err(BusinessError::Template {
                code: 132015,
                message: format!("template {} is paused", stored.name),
            });
        }
        status => {
            return Err(BusinessError::Template {
                code: 132001,
                message: format!(
                    "template {} is not approved (status {status:?})",
                    stored.name
                ),
            });
        }
    }
    let mut out = Template {
        name: stored.name.clone(),
        language: stored.language.clone(),
        ..Default::default()
    };
    let find = |kind: &str| -> Option<&ComponentParam> {
        param
            .components
            .iter()
            .find(|c| c.kind.eq_ignore_ascii_case(kind))
    };
    let mut quick_replies = 0usize;
    for component in &stored.components {
        let kind = component["type"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let text = component["text"].as_str().unwrap_or_default();
        match kind.as_str() {
            "HEADER" => {
                if component["format"]
                    .as_str()
                    .is_some_and(|f| !f.eq_ignore_ascii_case("TEXT"))
                {
                    return Err(BusinessError::Unsupported(
                        "templates with media headers need the media service".into(),
                    ));
                }
                out.header = fill(text, find("header"), "header")?;
            }
            "BODY" => out.body = fill(text, find("body"), "body")?,
            "FOOTER" => out.footer = text.to_owned(),
            "BUTTONS" => {
                for button in component["buttons"].as_array().into_iter().flatten() {
                    let title = button["text"].as_str().unwrap_or_default().to_owned();
                    if button["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case("QUICK_REPLY"))
                    {
                        let index = quick_replies;
                        quick_replies += 1;
                        let payload = param
                            .components
                            .iter()
                            .filter(|c| c.kind.eq_ignore_ascii_case("button"))
                            .find(|c| index_of(c) == Some(index))
                            .and_then(|c| c.parameters.first())
                            .and_then(|p| p.payload.clone().or_else(|| p.text.clone()))
                            .unwrap_or_else(|| title.clone());
                        out.buttons.push(Button { id: payload, title });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

fn index_of(component: &ComponentParam) -> Option<usize> {
    match component.index.as_ref()? {
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as usize),
        _ => None,
    }
}

/// Replaces placeholders in `text` with the component's text parameters, checking counts.
fn fill(text: &str, component: Option<&ComponentParam>, what: &str) -> BusinessResult<String> {
    let params: Vec<_> = component
        .map(|c| c.parameters.iter().collect())
        .unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut used = std::collections::HashSet::new();
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let name = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        let value = match name.parse::<usize>() {
            Ok(n) if n >= 1 => params.get(n - 1).copied(),
            _ => params
                .iter()
                .copied()
                .find(|p| p.parameter_name.as_deref() == Some(name)),
        }
        .ok_or_else(|| BusinessError::Template {
            code: 132000,
            message: format!("{what} parameter {{{{{name}}}}} has no value"),
        })?;
        let value = value
            .text
            .as_deref()
            .ok_or_else(|| BusinessError::Template {
                code: 132000,
                message: format!("{what} parameter {{{{{name}}}}} must be of type text"),
            })?;
        check_len(&format!("{what} parameter"), value, 1024).map_err(|_| {
            BusinessError::Template {
                code: 132005,
                message: format!("{what} parameter {{{{{name}}}}} is too long"),
            }
        })?;
        out.push_str(value);
        used.insert(name.to_owned());
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    if used.len() != params.len() && params.iter().all(|p| p.parameter_name.is_none()) {
        return Err(BusinessError::Template {
            code: 132000,
            message: format!(
                "the {what} expects {} parameters, the request gives {}",
                used.len(),
                params.len()
            ),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
