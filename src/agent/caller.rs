//! [`CallerInfo`]: who is on the other end of a session, as far as the transport knows.
//!
//! The transport fills it in when it learns something (a LiveKit SIP participant carries
//! the caller's number in its attributes); tools read it (an order stores the number, a
//! transfer only works for a phone caller). It is shared, so a session can start before
//! the caller is known.

use std::sync::OnceLock;

/// How the caller reached the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// On the telephone, through a SIP bridge: their call can be transferred and hung up.
    Phone,
    /// In a browser or app, as a LiveKit participant.
    Web,
}

/// Who is calling. Each fact is set once; the first value given wins.
#[derive(Debug, Default)]
pub struct CallerInfo {
    kind: OnceLock<CallerKind>,
    phone: OnceLock<String>,
    room: OnceLock<String>,
    agent_identity: OnceLock<String>,
}

impl CallerInfo {
    /// Records how the caller reached the agent.
    pub fn set_kind(&self, kind: CallerKind) {
        let _ = self.kind.set(kind);
    }

    /// Records the caller's phone number (which also makes them a phone caller).
    pub fn set_phone(&self, phone: &str) {
        let _ = self.phone.set(phone.to_string());
        self.set_kind(CallerKind::Phone);
    }

    /// Records the room the call takes place in and the agent's identity there.
    pub fn set_room(&self, room: &str, agent_identity: &str) {
        let _ = self.room.set(room.to_string());
        let _ = self.agent_identity.set(agent_identity.to_string());
    }

    /// The room of the call, when it runs in one.
    pub fn room(&self) -> Option<&str> {
        self.room.get().map(String::as_str)
    }

    /// The agent's participant identity in that room.
    pub fn agent_identity(&self) -> Option<&str> {
        self.agent_identity.get().map(String::as_str)
    }

    /// How the caller reached the agent, once known.
    pub fn kind(&self) -> Option<CallerKind> {
        self.kind.get().copied()
    }

    /// Whether the caller is on the telephone.
    pub fn is_phone(&self) -> bool {
        self.kind() == Some(CallerKind::Phone)
    }

    /// The caller's phone number, if known.
    pub fn phone(&self) -> Option<&str> {
        self.phone.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_number_makes_a_phone_caller_and_the_first_value_wins() {
        let caller = CallerInfo::default();
        assert_eq!(caller.kind(), None);
        caller.set_phone("+15550142");
        caller.set_phone("+15550000");
        caller.set_kind(CallerKind::Web);
        assert!(caller.is_phone());
        assert_eq!(caller.phone(), Some("+15550142"));
    }
}
