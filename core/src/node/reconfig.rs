//! Whole-configuration membership changes, as ZooKeeper's `reconfig` asks
//! for them: some members leave, some join (or change role), checked as one
//! plan before anything changes, then carried out through the same conf
//! changes as etcd's Cluster API (`member_add`, `member_promote`,
//! `member_remove`), plus `member_demote` (a voter becoming a learner),
//! which etcd lacks.
//!
//! Checking and doing are two calls ([`Node::reconfig_plan`],
//! [`Node::reconfigure`]) because ZooKeeper refuses bad input before it
//! checks the caller's rights, and a frontend's rights check sits between.
//! The changes are applied one conf change at a time (joiners first, then
//! demotions and leavers, so the voters never drop below the plan's), not
//! as one joint
//! configuration: a failure midway leaves the steps already taken.

use super::Node;
use crate::members::{Member, ZkServer};
use crate::{CoreError, MembershipError};

/// A server of the new configuration. A joiner whose peer URLs are an
/// existing member's is that member (a learner joining as a voter is
/// promoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joining {
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
    pub zk: ZkServer,
}

/// What a reconfiguration asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconfigRequest {
    /// The configuration version it was computed from (`None`: any).
    pub from_version: Option<u64>,
    /// Member ids that leave; ids that are not members are ignored, as
    /// ZooKeeper ignores them.
    pub leaving: Vec<u64>,
    pub joining: Vec<Joining>,
    /// Fewest voters the result may have (ZooKeeper asks for 2).
    pub min_voters: usize,
}

/// A checked reconfiguration, ready for [`Node::reconfigure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconfigPlan {
    add: Vec<Joining>,
    promote: Vec<u64>,
    demote: Vec<u64>,
    attrs: Vec<(u64, ZkServer)>,
    remove: Vec<u64>,
}

impl ReconfigPlan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.promote.is_empty()
            && self.demote.is_empty()
            && self.attrs.is_empty()
            && self.remove.is_empty()
    }
}

impl Node {
    /// The version of the cluster configuration: the raft index of the
    /// last membership change (0: the bootstrap configuration). The same on
    /// every member that has applied that far.
    pub fn config_version(&self) -> u64 {
        self.state().config_index
    }

    /// When the configuration last changed: the proposer's wall clock in
    /// milliseconds, carried in the change's entry (0: the bootstrap
    /// configuration).
    pub fn config_time_ms(&self) -> i64 {
        self.state().config_time_ms
    }

    /// The configuration version as each change applies (see
    /// [`crate::watch::Hub::config_versions`]).
    pub fn config_versions(&self) -> tokio::sync::watch::Receiver<u64> {
        self.state().hub.config_versions()
    }

    /// Members' ZooKeeper dynamic-config attributes, by member id.
    pub fn zk_servers(&self) -> std::collections::BTreeMap<u64, ZkServer> {
        self.state().zk_servers.clone()
    }

    /// Checks a reconfiguration against the current configuration. In
    /// order: the version (`BadConfigVersion`), peer URLs used twice
    /// (`PeerUrlExists`), too few voters (`TooFewVoters`), and whether the
    /// voters that are already members form a majority of the new voters
    /// (`NoQuorum`: joiners have no data yet).
    pub fn reconfig_plan(&self, req: &ReconfigRequest) -> Result<ReconfigPlan, CoreError> {
        let (members, zk, current) = {
            let st = self.state();
            (st.members.clone(), st.zk_servers.clone(), st.config_index)
        };
        let refuse = |e| Err(CoreError::Membership(e));
        if let Some(asked) = req.from_version {
            if asked != current {
                return refuse(MembershipError::BadConfigVersion { asked, current });
            }
        }
        let mut plan = ReconfigPlan {
            add: Vec::new(),
            promote: Vec::new(),
            demote: Vec::new(),
            attrs: Vec::new(),
            remove: Vec::new(),
        };
        // (id or None for a new member, is_learner) of the new configuration.
        let mut next: Vec<(Option<u64>, bool)> = Vec::new();
        let mut kept: Vec<&Member> = members
            .values()
            .filter(|m| !req.leaving.contains(&m.id))
            .collect();
        plan.remove = members
            .keys()
            .filter(|id| req.leaving.contains(id))
            .copied()
            .collect();
        let mut seen_urls: Vec<&String> = Vec::new();
        for j in &req.joining {
            if j.peer_urls.iter().any(|u| seen_urls.contains(&u)) {
                return refuse(MembershipError::PeerUrlExists);
            }
            seen_urls.extend(j.peer_urls.iter());
            let same = kept.iter().position(|m| {
                let mut a = m.peer_urls.clone();
                let mut b = j.peer_urls.clone();
                a.sort();
                b.sort();
                a == b
            });
            match same {
                Some(i) => {
                    let m = kept.remove(i);
                    if !m.is_learner && j.is_learner {
                        plan.demote.push(m.id);
                    }
                    if m.is_learner && !j.is_learner {
                        plan.promote.push(m.id);
                    }
                    if zk.get(&m.id) != Some(&j.zk) {
                        plan.attrs.push((m.id, j.zk.clone()));
                    }
                    next.push((Some(m.id), j.is_learner));
                }
                None => {
                    let clash = members
                        .values()
                        .any(|m| m.peer_urls.iter().any(|u| j.peer_urls.contains(u)));
                    if clash {
                        return refuse(MembershipError::PeerUrlExists);
                    }
                    plan.add.push(j.clone());
                    next.push((None, j.is_learner));
                }
            }
        }
        next.extend(kept.iter().map(|m| (Some(m.id), m.is_learner)));
        let voters = next.iter().filter(|(_, learner)| !learner).count();
        if voters < req.min_voters.max(1) {
            return refuse(MembershipError::TooFewVoters(req.min_voters.max(1)));
        }
        let synced = next
            .iter()
            .filter(|(id, learner)| !learner && id.is_some())
            .count();
        if synced * 2 <= voters {
            return refuse(MembershipError::NoQuorum);
        }
        Ok(plan)
    }

    /// Carries out a checked plan: joiners are added (voters directly,
    /// learners as learners) and given their ZooKeeper attributes, learners
    /// promoted, voters demoted, then leavers removed; a plan that changes
    /// nothing only takes a new version. Returns the members afterwards.
    pub async fn reconfigure(&self, plan: ReconfigPlan) -> Result<Vec<Member>, CoreError> {
        if plan.is_empty() {
            // Still a new configuration version, as ZooKeeper commits one.
            self.propose(crate::Command::ConfigTouch).await?;
            return Ok(self.members());
        }
        for j in plan.add {
            let (m, _) = self.member_add(j.peer_urls, j.is_learner).await?;
            self.set_zk_server(m.id, j.zk).await?;
        }
        for id in plan.promote {
            self.member_promote(id).await?;
        }
        for id in plan.demote {
            self.member_demote(id).await?;
        }
        for (id, zk) in plan.attrs {
            self.set_zk_server(id, zk).await?;
        }
        for id in plan.remove {
            self.member_remove(id).await?;
        }
        Ok(self.members())
    }

    /// Sets how member `id` appears in ZooKeeper's dynamic configuration.
    pub async fn set_zk_server(&self, id: u64, server: ZkServer) -> Result<(), CoreError> {
        let applied = self
            .propose(crate::Command::ZkServer { id, server })
            .await?;
        match applied.result {
            crate::CommandResult::ZkServer(true) => Ok(()),
            _ => Err(CoreError::Membership(MembershipError::NotFound)),
        }
    }
}
