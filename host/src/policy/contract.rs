//! Host bindings of `wit/policy.wit`, the single host↔policy contract. The executor, the
//! simulator and the node clients speak these generated types directly.

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});

/// The generated bindings of the `policy` world (named to avoid clashing with [`super::Policy`]).
pub use self::Policy as PolicyBindings;
pub use self::PolicyPre as PolicyBindingsPre;
pub use pinwarden::policy::types::*;

host_rules::view_of_action!(fn rules_view(Action));

impl Action {
    /// The view the host's rules ([`host_rules`]) read.
    pub fn act(&self) -> host_rules::Act<'_> {
        rules_view(self)
    }

    /// The action's name as the WIT file spells it.
    pub fn name(&self) -> &'static str {
        self.act().name()
    }

    /// The node the action concerns (a wait's, when it names one).
    pub fn node(&self) -> Option<&str> {
        self.act().node()
    }
}

impl Event {
    /// The view the host's rules read.
    pub fn step(&self) -> host_rules::Step<'_> {
        host_rules::Step {
            act: self.action.act(),
            ok: self.outcome.as_ref().map(|o| *o == Outcome::Ok),
        }
    }
}

/// [`Role`] as configuration files and scenarios spell it (`primary`, `backup`, `local`): use
/// with `#[serde(with = "role_name")]`. The WIT type is the one role type of the host.
pub mod role_name {
    use super::Role;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn as_str(role: Role) -> &'static str {
        match role {
            Role::Primary => "primary",
            Role::Backup => "backup",
            Role::Local => "local",
        }
    }

    pub fn serialize<S: Serializer>(role: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(as_str(*role))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        let name = String::deserialize(d)?;
        [Role::Primary, Role::Backup, Role::Local]
            .into_iter()
            .find(|r| as_str(*r) == name)
            .ok_or_else(|| {
                serde::de::Error::invalid_value(
                    serde::de::Unexpected::Str(&name),
                    &"primary, backup or local",
                )
            })
    }
}
