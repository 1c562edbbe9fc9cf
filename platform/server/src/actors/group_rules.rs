//! The rules of groups, as pure functions over a [`GroupRecord`]: who may change what, and what
//! each change does. The group actor applies them one at a time; tests check them directly.

use std::collections::HashSet;

use courier_protocol::v1::{GroupEventKind, GroupInfo, GroupMember, GroupSettings, group_update};
use courier_protocol::{GroupId, UserId};
use courier_store::{GroupMemberRecord, GroupRecord, Millis};

use crate::error::DeliveryError;

/// Longest group subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 100;

/// What a change did, for the event every member receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: GroupEventKind,
    /// The users the change is about.
    pub users: Vec<UserId>,
    /// Users no longer members who must still hear of it (removed, left).
    pub departed: Vec<UserId>,
}

fn invalid(message: impl Into<String>) -> DeliveryError {
    DeliveryError::InvalidArgument(message.into())
}

fn check_subject(subject: &str) -> Result<String, DeliveryError> {
    let subject = subject.trim();
    if subject.is_empty() {
        return Err(invalid("a group needs a subject"));
    }
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(invalid(format!(
            "a subject has at most {MAX_SUBJECT_CHARS} characters"
        )));
    }
    Ok(subject.to_owned())
}

fn member(record: &GroupRecord, user: UserId) -> Option<&GroupMemberRecord> {
    record.members.iter().find(|m| m.user == user)
}

pub fn is_member(record: &GroupRecord, user: UserId) -> bool {
    member(record, user).is_some()
}

fn require_member(record: &GroupRecord, user: UserId) -> Result<bool, DeliveryError> {
    member(record, user)
        .map(|m| m.admin)
        .ok_or(DeliveryError::NotAMember)
}

fn require_admin(record: &GroupRecord, user: UserId) -> Result<(), DeliveryError> {
    if require_member(record, user)? {
        Ok(())
    } else {
        Err(DeliveryError::NotAnAdmin)
    }
}

/// Distinct users, in the order given.
fn distinct(users: &[UserId]) -> Vec<UserId> {
    let mut seen = HashSet::new();
    users.iter().copied().filter(|u| seen.insert(*u)).collect()
}

/// A new group: `by` is its first admin; `members` join with it.
pub fn create(
    id: GroupId,
    by: UserId,
    subject: &str,
    members: &[UserId],
    settings: Option<&GroupSettings>,
    size_limit: u32,
    now: Millis,
) -> Result<(GroupRecord, Change), DeliveryError> {
    let subject = check_subject(subject)?;
    let mut all = vec![by];
    all.extend(distinct(members).into_iter().filter(|u| *u != by));
    if all.len() > size_limit as usize {
        return Err(DeliveryError::GroupFull(size_limit));
    }
    let record = GroupRecord {
        id,
        subject,
        created_by: by,
        created_at: now,
        members: all
            .iter()
            .map(|user| GroupMemberRecord {
                user: *user,
                admin: *user == by,
                joined_at: now,
            })
            .collect(),
        only_admins_edit_info: settings.is_some_and(|s| s.only_admins_edit_info),
        only_admins_add_members: settings.is_some_and(|s| s.only_admins_add_members),
        invite_code: None,
        revision: 1,
        size_limit,
    };
    let change = Change {
        kind: GroupEventKind::Created,
        users: all,
        departed: Vec::new(),
    };
    Ok((record, change))
}

/// Applies one change by `by`. `new_code` makes a fresh invite code when one is needed.
pub fn apply(
    record: &GroupRecord,
    by: UserId,
    change: &group_update::Change,
    now: Millis,
    new_code: impl FnOnce() -> String,
) -> Result<(GroupRecord, Change), DeliveryError> {
    use group_update::Change as C;
    let mut next = record.clone();
    let outcome = match change {
        C::AddMembers(list) => {
            let is_admin = require_member(record, by)?;
            if record.only_admins_add_members && !is_admin {
                return Err(DeliveryError::NotAnAdmin);
            }
            let added: Vec<UserId> = distinct(&parse_users(&list.users)?)
                .into_iter()
                .filter(|u| !is_member(record, *u))
                .collect();
            if added.is_empty() {
                return Err(invalid("everyone named is already a member"));
            }
            if record.members.len() + added.len() > record.size_limit as usize {
                return Err(DeliveryError::GroupFull(record.size_limit));
            }
            next.members
                .extend(added.iter().map(|user| GroupMemberRecord {
                    user: *user,
                    admin: false,
                    joined_at: now,
                }));
            Change {
                kind: GroupEventKind::MembersAdded,
                users: added,
                departed: Vec::new(),
            }
        }
        C::RemoveMembers(list) => {
            require_admin(record, by)?;
            let removed: Vec<UserId> = distinct(&parse_users(&list.users)?)
                .into_iter()
                .filter(|u| is_member(record, *u))
                .collect();
            if removed.is_empty() {
                return Err(invalid("nobody named is a member"));
            }
            if removed.contains(&by) {
                return Err(invalid("leave the group instead of removing yourself"));
            }
            next.members.retain(|m| !removed.contains(&m.user));
            Change {
                kind: GroupEventKind::MembersRemoved,
                users: removed.clone(),
                departed: removed,
            }
        }
        C::Leave(_) => {
            require_member(record, by)?;
            next.members.retain(|m| m.user != by);
            // A group that still has members keeps an admin: the longest-standing member.
            if !next.members.is_empty() && !next.members.iter().any(|m| m.admin) {
                next.members[0].admin = true;
            }
            Change {
                kind: GroupEventKind::MemberLeft,
                users: vec![by],
                departed: vec![by],
            }
        }
        C::Promote(list) | C::Demote(list) => {
            require_admin(record, by)?;
            let promote = matches!(change, C::Promote(_));
            let users = distinct(&parse_users(&list.users)?);
            if users.is_empty() || users.iter().any(|u| !is_member(record, *u)) {
                return Err(invalid("only members can be promoted or demoted"));
            }
            for m in next.members.iter_mut().filter(|m| users.contains(&m.user)) {
                m.admin = promote;
            }
            if !next.members.iter().any(|m| m.admin) {
                return Err(invalid("a group keeps at least one admin"));
            }
            Change {
                kind: if promote {
                    GroupEventKind::AdminsPromoted
                } else {
                    GroupEventKind::AdminsDemoted
                },
                users,
                departed: Vec::new(),
            }
        }
        C::SetSubject(subject) => {
            let is_admin = require_member(record, by)?;
            if record.only_admins_edit_info && !is_admin {
                return Err(DeliveryError::NotAnAdmin);
            }
            next.subject = check_subject(subject)?;
            Change {
                kind: GroupEventKind::SubjectChanged,
                users: Vec::new(),
                departed: Vec::new(),
            }
        }
        C::SetSettings(settings) => {
            require_admin(record, by)?;
            next.only_admins_edit_info = settings.only_admins_edit_info;
            next.only_admins_add_members = settings.only_admins_add_members;
            Change {
                kind: GroupEventKind::SettingsChanged,
                users: Vec::new(),
                departed: Vec::new(),
            }
        }
        C::CreateInvite(_) => {
            require_admin(record, by)?;
            next.invite_code = Some(new_code());
            Change {
                kind: GroupEventKind::InviteChanged,
                users: Vec::new(),
                departed: Vec::new(),
            }
        }
        C::RevokeInvite(_) => {
            require_admin(record, by)?;
            if record.invite_code.is_none() {
                return Err(invalid("the group has no invite code"));
            }
            next.invite_code = None;
            Change {
                kind: GroupEventKind::InviteChanged,
                users: Vec::new(),
                departed: Vec::new(),
            }
        }
    };
    next.revision += 1;
    Ok((next, outcome))
}

/// `by` joins with an invite code.
pub fn join(
    record: &GroupRecord,
    by: UserId,
    code: &str,
    now: Millis,
) -> Result<(GroupRecord, Change), DeliveryError> {
    if record.invite_code.as_deref() != Some(code) {
        return Err(DeliveryError::UnknownGroup);
    }
    if is_member(record, by) {
        return Err(invalid("already a member"));
    }
    if record.members.len() >= record.size_limit as usize {
        return Err(DeliveryError::GroupFull(record.size_limit));
    }
    let mut next = record.clone();
    next.members.push(GroupMemberRecord {
        user: by,
        admin: false,
        joined_at: now,
    });
    next.revision += 1;
    let change = Change {
        kind: GroupEventKind::JoinedByInvite,
        users: vec![by],
        departed: Vec::new(),
    };
    Ok((next, change))
}

fn parse_users(users: &[String]) -> Result<Vec<UserId>, DeliveryError> {
    users
        .iter()
        .map(|u| u.parse::<UserId>().map_err(|e| invalid(e.to_string())))
        .collect()
}

/// The group as `viewer` sees it: the invite code only for admins.
pub fn info_for(record: &GroupRecord, viewer: UserId) -> GroupInfo {
    let viewer_is_admin = member(record, viewer).is_some_and(|m| m.admin);
    GroupInfo {
        group_id: record.id.to_string(),
        subject: record.subject.clone(),
        members: record
            .members
            .iter()
            .map(|m| GroupMember {
                user: m.user.to_string(),
                admin: m.admin,
                joined_at_ms: m.joined_at,
            })
            .collect(),
        settings: Some(GroupSettings {
            only_admins_edit_info: record.only_admins_edit_info,
            only_admins_add_members: record.only_admins_add_members,
        }),
        invite_code: if viewer_is_admin {
            record.invite_code.clone().unwrap_or_default()
        } else {
            String::new()
        },
        revision: record.revision,
        size_limit: record.size_limit,
        created_by: record.created_by.to_string(),
        created_at_ms: record.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use courier_protocol::v1::{Leave, MemberList};

    fn users(n: usize) -> Vec<UserId> {
        (0..n).map(|_| UserId::random()).collect()
    }

    fn list(users: &[UserId]) -> MemberList {
        MemberList {
            users: users.iter().map(|u| u.to_string()).collect(),
        }
    }

    fn group(members: &[UserId]) -> GroupRecord {
        create(
            GroupId::random(),
            members[0],
            "team",
            &members[1..],
            None,
            5,
            1,
        )
        .unwrap()
        .0
    }

    #[test]
    fn the_creator_is_the_first_admin_and_limits_hold() {
        let u = users(6);
        let (record, change) =
            create(GroupId::random(), u[0], " team ", &u[1..3], None, 5, 1).unwrap();
        assert_eq!(record.subject, "team");
        assert_eq!(record.members.len(), 3);
        assert!(record.members[0].admin && !record.members[1].admin);
        assert_eq!(change.kind, GroupEventKind::Created);
        assert_eq!(
            create(GroupId::random(), u[0], "x", &u[1..], None, 5, 1)
                .unwrap_err()
                .code(),
            DeliveryError::GroupFull(5).code()
        );
        assert!(create(GroupId::random(), u[0], "  ", &[], None, 5, 1).is_err());
    }

    #[test]
    fn only_admins_remove_promote_and_change_settings() {
        let u = users(4);
        let record = group(&u[..3]);
        let remove = group_update::Change::RemoveMembers(list(&[u[2]]));
        assert!(matches!(
            apply(&record, u[1], &remove, 2, String::new),
            Err(DeliveryError::NotAnAdmin)
        ));
        let (after, change) = apply(&record, u[0], &remove, 2, String::new).unwrap();
        assert!(!is_member(&after, u[2]));
        assert_eq!(change.departed, vec![u[2]]);
        assert_eq!(after.revision, record.revision + 1);
        let outsider = group_update::Change::SetSubject("x".into());
        assert!(matches!(
            apply(&record, u[3], &outsider, 2, String::new),
            Err(DeliveryError::NotAMember)
        ));
    }

    #[test]
    fn adding_respects_the_setting_and_the_size_limit() {
        let u = users(7);
        let mut record = group(&u[..3]);
        let add = group_update::Change::AddMembers(list(&[u[3]]));
        assert!(
            apply(&record, u[1], &add, 2, String::new).is_ok(),
            "members may add by default"
        );
        record.only_admins_add_members = true;
        assert!(matches!(
            apply(&record, u[1], &add, 2, String::new),
            Err(DeliveryError::NotAnAdmin)
        ));
        let too_many = group_update::Change::AddMembers(list(&u[3..6]));
        assert!(matches!(
            apply(&record, u[0], &too_many, 2, String::new),
            Err(DeliveryError::GroupFull(5))
        ));
    }

    #[test]
    fn the_last_admin_leaving_hands_over_and_one_admin_always_remains() {
        let u = users(3);
        let record = group(&u);
        let (after, change) = apply(
            &record,
            u[0],
            &group_update::Change::Leave(Leave {}),
            2,
            String::new,
        )
        .unwrap();
        assert_eq!(change.departed, vec![u[0]]);
        assert!(
            after.members[0].admin,
            "the longest-standing member becomes admin"
        );
        let demote = group_update::Change::Demote(list(&[u[0]]));
        assert!(apply(&record, u[0], &demote, 2, String::new).is_err());
    }

    #[test]
    fn invite_codes_are_for_admins_and_joining_needs_the_current_code() {
        let u = users(3);
        let record = group(&u[..2]);
        let (with_code, _) = apply(
            &record,
            u[0],
            &group_update::Change::CreateInvite(true),
            2,
            || "code-1".into(),
        )
        .unwrap();
        assert_eq!(info_for(&with_code, u[0]).invite_code, "code-1");
        assert_eq!(
            info_for(&with_code, u[1]).invite_code,
            "",
            "hidden from non-admins"
        );
        assert!(matches!(
            join(&with_code, u[2], "wrong", 3),
            Err(DeliveryError::UnknownGroup)
        ));
        let (joined, change) = join(&with_code, u[2], "code-1", 3).unwrap();
        assert!(is_member(&joined, u[2]));
        assert_eq!(change.kind, GroupEventKind::JoinedByInvite);
        let (revoked, _) = apply(
            &with_code,
            u[0],
            &group_update::Change::RevokeInvite(true),
            4,
            String::new,
        )
        .unwrap();
        assert!(join(&revoked, u[2], "code-1", 5).is_err());
    }
}
