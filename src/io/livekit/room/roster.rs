//! Who else is in the room: the remote participants and their published tracks, kept from
//! the join response and the server's participant updates. No I/O: feed it updates, read
//! the events they imply.

use std::collections::HashMap;

use livekit_protocol as proto;
use proto::participant_info::State;

use super::events::{ParticipantKind, RoomEvent};

/// One remote participant as last reported by the server.
#[derive(Debug, Clone)]
struct Remote {
    identity: String,
    version: u32,
    attributes: HashMap<String, String>,
    tracks: Vec<proto::TrackInfo>,
}

/// The remote participants, keyed by participant sid.
#[derive(Debug, Default)]
pub(super) struct Roster {
    local_sid: String,
    remotes: HashMap<String, Remote>,
}

impl Roster {
    /// An empty roster for the local participant `local_sid`.
    pub(super) fn new(local_sid: impl Into<String>) -> Self {
        Roster {
            local_sid: local_sid.into(),
            remotes: HashMap::new(),
        }
    }

    /// Applies participant infos (from the join response or a `ParticipantUpdate`) and
    /// returns the events they imply, in order.
    pub(super) fn apply(&mut self, infos: Vec<proto::ParticipantInfo>) -> Vec<RoomEvent> {
        let mut events = Vec::new();
        for info in infos {
            if info.sid == self.local_sid || info.sid.is_empty() {
                continue;
            }
            let left = info.state == State::Disconnected as i32;
            match self.remotes.get_mut(&info.sid) {
                None if left => {}
                None => {
                    events.push(RoomEvent::ParticipantConnected {
                        identity: info.identity.clone(),
                        kind: ParticipantKind::try_from(info.kind)
                            .unwrap_or(ParticipantKind::Standard),
                        attributes: info.attributes.clone(),
                    });
                    self.remotes.insert(
                        info.sid,
                        Remote {
                            identity: info.identity,
                            version: info.version,
                            attributes: info.attributes,
                            tracks: info.tracks,
                        },
                    );
                }
                Some(_) if left => {
                    if let Some(gone) = self.remotes.remove(&info.sid) {
                        events.push(RoomEvent::ParticipantDisconnected {
                            identity: gone.identity,
                        });
                    }
                }
                Some(known) => {
                    // Versions only grow; an older snapshot arriving late is ignored.
                    if info.version != 0 && info.version < known.version {
                        continue;
                    }
                    let changed = changed_attributes(&known.attributes, &info.attributes);
                    if !changed.is_empty() {
                        events.push(RoomEvent::AttributesChanged {
                            identity: known.identity.clone(),
                            changed,
                        });
                    }
                    known.version = info.version;
                    known.attributes = info.attributes;
                    known.tracks = info.tracks;
                }
            }
        }
        events
    }

    /// The identity of participant `sid`.
    pub(super) fn identity(&self, sid: &str) -> Option<&str> {
        self.remotes.get(sid).map(|r| r.identity.as_str())
    }

    /// The publishing participant's identity and the track info of `track_sid`.
    pub(super) fn track(&self, track_sid: &str) -> Option<(&str, &proto::TrackInfo)> {
        self.remotes.values().find_map(|remote| {
            remote
                .tracks
                .iter()
                .find(|t| t.sid == track_sid)
                .map(|t| (remote.identity.as_str(), t))
        })
    }
}

/// The attributes of `new` that differ from `old`; removed ones map to an empty value.
fn changed_attributes(
    old: &HashMap<String, String>,
    new: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut changed: HashMap<String, String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        changed.insert(key.clone(), String::new());
    }
    changed
}

/// Splits a LiveKit media stream id, `PA_xxx|TR_xxx`, into participant sid and track sid.
pub(super) fn split_stream_id(stream_id: &str) -> Option<(&str, &str)> {
    let (participant, track) = stream_id.split_once('|')?;
    (!participant.is_empty() && !track.is_empty()).then_some((participant, track))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sid: &str, identity: &str, state: State, version: u32) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            sid: sid.into(),
            identity: identity.into(),
            state: state as i32,
            version,
            kind: ParticipantKind::Standard as i32,
            ..Default::default()
        }
    }

    #[test]
    fn join_update_and_leave_produce_events_once() {
        let mut roster = Roster::new("PA_me");
        let events = roster.apply(vec![
            info("PA_me", "me", State::Active, 1),
            info("PA_a", "alice", State::Active, 1),
        ]);
        assert_eq!(events.len(), 1);
        assert!(
            matches!(&events[0], RoomEvent::ParticipantConnected { identity, .. } if identity == "alice")
        );

        // The same snapshot again changes nothing.
        assert!(
            roster
                .apply(vec![info("PA_a", "alice", State::Active, 1)])
                .is_empty()
        );

        let mut with_attrs = info("PA_a", "alice", State::Active, 2);
        with_attrs
            .attributes
            .insert("lk.agent.state".into(), "listening".into());
        let events = roster.apply(vec![with_attrs]);
        assert_eq!(
            events,
            vec![RoomEvent::AttributesChanged {
                identity: "alice".into(),
                changed: HashMap::from([("lk.agent.state".into(), "listening".into())]),
            }]
        );

        let events = roster.apply(vec![info("PA_a", "alice", State::Disconnected, 3)]);
        assert_eq!(
            events,
            vec![RoomEvent::ParticipantDisconnected {
                identity: "alice".into()
            }]
        );
        assert!(roster.identity("PA_a").is_none());
    }

    #[test]
    fn stale_versions_are_ignored() {
        let mut roster = Roster::new("PA_me");
        let mut newer = info("PA_a", "alice", State::Active, 5);
        newer.attributes.insert("k".into(), "new".into());
        roster.apply(vec![newer]);
        let mut older = info("PA_a", "alice", State::Active, 4);
        older.attributes.insert("k".into(), "old".into());
        assert!(roster.apply(vec![older]).is_empty());
    }

    #[test]
    fn tracks_are_found_by_sid() {
        let mut roster = Roster::new("PA_me");
        let mut alice = info("PA_a", "alice", State::Active, 1);
        alice.tracks.push(proto::TrackInfo {
            sid: "TR_1".into(),
            r#type: proto::TrackType::Audio as i32,
            ..Default::default()
        });
        roster.apply(vec![alice]);
        let (identity, track) = roster.track("TR_1").expect("track known");
        assert_eq!(identity, "alice");
        assert_eq!(track.r#type, proto::TrackType::Audio as i32);
        assert!(roster.track("TR_2").is_none());
    }

    #[test]
    fn stream_ids_split_into_participant_and_track() {
        assert_eq!(split_stream_id("PA_1|TR_2"), Some(("PA_1", "TR_2")));
        assert_eq!(split_stream_id("TR_2"), None);
        assert_eq!(split_stream_id("|TR_2"), None);
    }
}
