//! Tencent's group callbacks that change what the coalesced group reads answer: which group's
//! `get_group_info` entry and which members' `get_specified_group_member_info` entries they
//! void. A destroyed group voids every cached member entry (the callback names no members, and
//! a read of a destroyed group fails as a whole).

use serde::Deserialize;

/// `Group.CallbackAfterGroupInfoChanged`: name, notification, face, ... changed.
const INFO_CHANGED: &str = "Group.CallbackAfterGroupInfoChanged";
/// `Group.CallbackAfterNewMemberJoin`: `NewMemberList` joined (member count and list change).
const MEMBER_JOINED: &str = "Group.CallbackAfterNewMemberJoin";
/// `Group.CallbackAfterMemberExit`: `ExitMemberList` left or were removed.
const MEMBER_EXITED: &str = "Group.CallbackAfterMemberExit";
/// `Group.CallbackAfterMemberFieldChanged`: `MemberList`'s role, name card, ... changed.
const MEMBER_FIELD_CHANGED: &str = "Group.CallbackAfterMemberFieldChanged";
/// `Group.CallbackAfterGroupDestroyed`: the group is gone.
const DESTROYED: &str = "Group.CallbackAfterGroupDestroyed";

/// The commands this module reads.
pub(super) const COMMANDS: [&str; 5] = [
    INFO_CHANGED,
    MEMBER_JOINED,
    MEMBER_EXITED,
    MEMBER_FIELD_CHANGED,
    DESTROYED,
];

/// The fields of a group callback read here.
#[derive(Deserialize, Default)]
pub(super) struct GroupFields {
    #[serde(rename = "GroupId")]
    group: Option<String>,
    #[serde(rename = "NewMemberList", default)]
    joined: Vec<MemberRef>,
    #[serde(rename = "ExitMemberList", default)]
    exited: Vec<MemberRef>,
    #[serde(rename = "MemberList", default)]
    changed: Vec<MemberRef>,
}

#[derive(Deserialize)]
struct MemberRef {
    #[serde(rename = "Member_Account")]
    account: Option<String>,
}

/// What one group callback voids.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct GroupChange<'a> {
    /// The group whose `get_group_info` entry changed.
    pub group: &'a str,
    /// Members whose entries changed.
    pub members: Vec<&'a str>,
    /// Every member entry is void (the group is gone).
    pub all_members: bool,
}

/// What `command`'s callback voids; `None` when it names no group.
pub(super) fn change<'a>(command: &str, fields: &'a GroupFields) -> Option<GroupChange<'a>> {
    let group = fields.group.as_deref().filter(|g| !g.is_empty())?;
    let list: &[MemberRef] = match command {
        MEMBER_JOINED => &fields.joined,
        MEMBER_EXITED => &fields.exited,
        MEMBER_FIELD_CHANGED => &fields.changed,
        _ => &[],
    };
    let members = list.iter().filter_map(|m| m.account.as_deref()).collect();
    Some(GroupChange {
        group,
        members,
        all_members: command == DESTROYED,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_group_callback_names_what_it_voids() {
        let body = r#"{"CallbackCommand":"Group.CallbackAfterMemberExit","GroupId":"g1",
            "ExitType":"Quit","ExitMemberList":[{"Member_Account":"u1"},{"Member_Account":"u2"}]}"#;
        let fields: GroupFields = serde_json::from_str(body).expect("json");
        let change = change(MEMBER_EXITED, &fields).expect("a group");
        assert_eq!((change.group, change.members), ("g1", vec!["u1", "u2"]));
        let destroyed: GroupFields = serde_json::from_str(r#"{"GroupId":"g2"}"#).expect("json");
        assert!(
            super::change(DESTROYED, &destroyed)
                .expect("a group")
                .all_members
        );
        let nameless: GroupFields = serde_json::from_str("{}").expect("json");
        assert_eq!(super::change(INFO_CHANGED, &nameless), None);
    }
}
