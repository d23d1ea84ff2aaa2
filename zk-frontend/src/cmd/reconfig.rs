//! reconfig: ZooKeeper's dynamic reconfiguration translated into core's
//! membership change ([`janus_core::Node::reconfig_plan`] decides,
//! [`janus_core::Node::reconfigure`] carries it out through the same conf
//! changes as etcd's Cluster API). Participants are voters, observers are
//! learners; a server's quorum address is the member's peer URL.
//!
//! The checks run in the order of ZooKeeper 3.8's `PrepRequestProcessor`
//! (compared against a real 3-server ensemble): ReconfigDisabled without
//! `--zk-reconfig`; BadVersion for a `fromConfig` that is not the current
//! version; then the input: a server string without `=` or with a bad
//! address is BadArguments, a server id or leaving id that is not a number
//! is MarshallingError (ZooKeeper's uncaught NumberFormatException), a
//! joiner without a client port is BadArguments; fewer than 2 voters is
//! BadArguments (ZooKeeper's standaloneEnabled rule, `--zk-standalone-enabled`;
//! off, fewer than 1); voters without a
//! quorum among current members is NewConfigNoQuorum; only then the
//! caller's WRITE permission on `/zookeeper/config`, whose ACL is
//! `world:anyone` READ, so only the superuser passes (NoAuth). The answer
//! is the new configuration and its stat, as getData would return it.
//!
//! Differences: a reconfig that changes nothing (leaving an unknown id)
//! keeps the version, where ZooKeeper commits a new one; several changes
//! are several conf changes, not one joint configuration.

use janus_core::znode::acl::SUPER;
use janus_core::{CoreError, Joining, MembershipError, ReconfigRequest, ZkServer};

use super::{system, Ctx, Reply};
use crate::proto::code;
use crate::proto::jute::Writer;

/// ZooKeeper's fewest voters of a configuration: 2 with
/// `standaloneEnabled` (its default), else 1.
fn min_voters(standalone_enabled: bool) -> usize {
    if standalone_enabled {
        2
    } else {
        1
    }
}

/// A server of the request: `server.<id>=<spec>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    id: u64,
    host: String,
    quorum_port: u16,
    election_port: u16,
    observer: bool,
    client: Option<String>,
}

/// Why the request's text was refused, as a KeeperException code.
type Refusal = i32;

/// ZooKeeper's `StringUtils.split`: trimmed, empty parts dropped.
fn split(s: &str, sep: &[char]) -> Vec<String> {
    s.split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// Java's `Long.parseLong` as a server id; ZooKeeper lets its exception
/// escape, which clients see as MarshallingError.
fn parse_id(s: &str) -> Result<u64, Refusal> {
    s.trim()
        .parse::<i64>()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
        .ok_or(code::MARSHALLING_ERROR)
}

/// `host:port` split at the last colon (`[v6]:port` keeps its brackets).
fn host_and_port(s: &str) -> Vec<String> {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let mut v = vec![format!("[{host}]")];
            v.extend(tail.split(':').skip(1).map(String::from));
            return v;
        }
    }
    s.split(':').map(String::from).collect()
}

fn port(s: &str) -> Result<u16, Refusal> {
    s.trim().parse::<u16>().map_err(|_| code::BAD_ARGUMENTS)
}

/// `QuorumServer(sid, "host:port:port[:role][;[clientHost:]clientPort]")`.
fn parse_spec(id: u64, spec: &str) -> Result<Server, Refusal> {
    let parts: Vec<&str> = spec.split(';').collect();
    if parts.len() > 2 {
        return Err(code::BAD_ARGUMENTS);
    }
    let client = match parts.get(1) {
        None => None,
        Some(c) => {
            let cp = host_and_port(c.trim());
            if cp.len() > 2 {
                return Err(code::BAD_ARGUMENTS);
            }
            let host = if cp.len() == 2 {
                cp[0].clone()
            } else {
                "0.0.0.0".to_string()
            };
            let p = port(cp.last().map(String::as_str).unwrap_or_default())?;
            Some(format!("{host}:{p}"))
        }
    };
    let sp = host_and_port(parts[0].trim());
    if sp.len() < 3 || sp.len() > 4 {
        return Err(code::BAD_ARGUMENTS);
    }
    let observer = match sp.get(3).map(|r| r.to_ascii_lowercase()) {
        None => false,
        Some(r) if r == "participant" => false,
        Some(r) if r == "observer" => true,
        Some(_) => return Err(code::BAD_ARGUMENTS),
    };
    Ok(Server {
        id,
        host: sp[0].clone(),
        quorum_port: port(&sp[1])?,
        election_port: port(&sp[2])?,
        observer,
        client,
    })
}

/// One `server.N=spec` of a joining list.
fn parse_joiner(s: &str) -> Result<Server, Refusal> {
    let parts = split(s, &['=']);
    if parts.len() != 2 {
        return Err(code::BAD_ARGUMENTS);
    }
    let id = parse_id(parts[0].rsplit('.').next().unwrap_or_default())?;
    let server = parse_spec(id, &parts[1])?;
    if server.client.is_none() {
        return Err(code::BAD_ARGUMENTS);
    }
    Ok(server)
}

/// A non-incremental member list (`server.N=spec` separated by commas or
/// newlines, as a Java properties text; other keys are ignored).
fn parse_members(s: &str) -> Result<Vec<Server>, Refusal> {
    let mut out = Vec::new();
    for line in s.replace(',', "\n").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once(['=', ':']) else {
            continue;
        };
        let Some(id) = k.trim().strip_prefix("server.") else {
            continue;
        };
        let id = id.trim().parse::<u64>().map_err(|_| code::BAD_ARGUMENTS)?;
        out.push(parse_spec(id, v.trim())?);
    }
    Ok(out)
}

/// ZooKeeper's `QuorumPeerConfig.parseDynamicConfig` on a non-incremental
/// member list: no participant (with standaloneEnabled off, or with
/// observers), or one participant with observers under standaloneEnabled,
/// throws an IllegalArgumentException that reconfig does not catch, which
/// clients see as MarshallingError. Other counts are left to the voter
/// minimum (BadArguments).
fn check_new_members(servers: &[Server], standalone_enabled: bool) -> Result<(), Refusal> {
    let observers = servers.iter().filter(|s| s.observer).count();
    let voters = servers.len() - observers;
    let invalid = match voters {
        0 => !standalone_enabled || observers > 0,
        1 => standalone_enabled && observers > 0,
        _ => false,
    };
    if invalid {
        return Err(code::MARSHALLING_ERROR);
    }
    Ok(())
}

fn joining(s: &Server) -> Joining {
    Joining {
        peer_urls: vec![format!("http://{}:{}", s.host, s.quorum_port)],
        is_learner: s.observer,
        zk: ZkServer {
            server_id: s.id,
            election_port: s.election_port,
            client_addr: s.client.clone().unwrap_or_default(),
        },
    }
}

/// The member ids behind ZooKeeper server ids.
fn members_of(ctx: &Ctx<'_>, sids: &[u64]) -> Vec<u64> {
    let zk = ctx.node.zk_servers();
    ctx.node
        .members()
        .iter()
        .filter(|m| sids.contains(&system::server_id(m, &zk)))
        .map(|m| m.id)
        .collect()
}

/// Builds core's request from the wire's three strings.
fn request(
    ctx: &Ctx<'_>,
    joining_s: Option<&str>,
    leaving_s: Option<&str>,
    new_members: Option<&str>,
    from_version: Option<u64>,
) -> Result<ReconfigRequest, Refusal> {
    let (servers, mut leaving) = match new_members {
        Some(nm) => {
            let servers = parse_members(nm)?;
            check_new_members(&servers, ctx.cfg.standalone_enabled)?;
            let zk = ctx.node.zk_servers();
            let keep: Vec<u64> = servers.iter().map(|s| s.id).collect();
            let leaving = ctx
                .node
                .members()
                .iter()
                .filter(|m| !keep.contains(&system::server_id(m, &zk)))
                .map(|m| m.id)
                .collect();
            (servers, leaving)
        }
        None => {
            let mut leaving_sids = Vec::new();
            for l in leaving_s.map(|l| split(l, &[','])).unwrap_or_default() {
                leaving_sids.push(parse_id(&l)?);
            }
            let mut servers = Vec::new();
            for j in joining_s.map(|j| split(j, &[','])).unwrap_or_default() {
                servers.push(parse_joiner(&j)?);
            }
            (servers, members_of(ctx, &leaving_sids))
        }
    };
    // A joiner that reuses a server id replaces that server unless it is
    // the same member (same quorum address).
    let joiners: Vec<Joining> = servers.iter().map(joining).collect();
    let members = ctx.node.members();
    let zk = ctx.node.zk_servers();
    for (s, j) in servers.iter().zip(&joiners) {
        for m in &members {
            if system::server_id(m, &zk) == s.id && m.peer_urls != j.peer_urls {
                leaving.push(m.id);
            }
        }
    }
    Ok(ReconfigRequest {
        from_version,
        leaving,
        joining: joiners,
        min_voters: min_voters(ctx.cfg.standalone_enabled),
    })
}

fn membership_code(e: MembershipError) -> i32 {
    match e {
        MembershipError::BadConfigVersion { .. } => code::BAD_VERSION,
        MembershipError::NoQuorum => code::NEW_CONFIG_NO_QUORUM,
        MembershipError::PeerUrlExists
        | MembershipError::NotFound
        | MembershipError::NotLearner
        | MembershipError::TooFewVoters(_) => code::BAD_ARGUMENTS,
    }
}

/// The configuration as getData on `/zookeeper/config` answers it.
fn config_reply(ctx: &Ctx<'_>) -> Reply {
    let (data, stat) = system::read(ctx.node, ctx.cfg, system::CONFIG);
    let mut w = Writer::new();
    w.nullable_buffer(Some(&data)).stat(&stat);
    Reply::ok(ctx.node.revision(), w.into_bytes())
}

pub async fn reconfig(
    ctx: &mut Ctx<'_>,
    joining: Option<&str>,
    leaving: Option<&str>,
    new_members: Option<&str>,
    cur_config_id: i64,
) -> Result<Reply, CoreError> {
    let zxid = ctx.node.revision();
    if !ctx.cfg.reconfig {
        return Ok(Reply::err(zxid, code::RECONFIG_DISABLED));
    }
    let from_version = u64::try_from(cur_config_id).ok();
    if from_version.is_some_and(|v| v != ctx.node.config_version()) {
        return Ok(Reply::err(zxid, code::BAD_VERSION));
    }
    let req = match request(ctx, joining, leaving, new_members, from_version) {
        Ok(r) => r,
        Err(c) => return Ok(Reply::err(zxid, c)),
    };
    let plan = match ctx.node.reconfig_plan(&req) {
        Ok(p) => p,
        Err(CoreError::Membership(e)) => return Ok(Reply::err(zxid, membership_code(e))),
        Err(e) => return Err(e),
    };
    // WRITE on /zookeeper/config, whose ACL (world:anyone READ) only the
    // superuser gets past.
    if !ctx.auth.iter().any(|id| id.scheme == SUPER) {
        return Ok(Reply::err(zxid, code::NO_AUTH));
    }
    match ctx.node.reconfigure(plan).await {
        Ok(_) => {}
        Err(CoreError::Membership(e)) => {
            return Ok(Reply::err(ctx.node.revision(), membership_code(e)))
        }
        Err(e) => return Err(e),
    }
    Ok(config_reply(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists_zookeeper_cannot_parse_are_marshalling_errors() {
        let list = |spec: &str| parse_members(spec).unwrap();
        let obs = "server.3=127.0.0.1:1:2:observer;127.0.0.1:3";
        let part = "server.1=127.0.0.1:4:5:participant;127.0.0.1:6";
        let both = format!("{part},{obs}");
        let m = Err(code::MARSHALLING_ERROR);
        // standaloneEnabled off: no participant at all.
        assert_eq!(check_new_members(&list(obs), false), m);
        assert_eq!(check_new_members(&list(&both), false), Ok(()));
        assert_eq!(check_new_members(&list(part), false), Ok(()));
        // standaloneEnabled on: observers need 2 participants.
        assert_eq!(check_new_members(&list(obs), true), m);
        assert_eq!(check_new_members(&list(&both), true), m);
        assert_eq!(check_new_members(&list(part), true), Ok(()));
    }

    #[test]
    fn joiners_parse_as_quorum_server() {
        let s = parse_joiner("server.100=0.0.0.0:1234:2345:observer;0.0.0.0:3456");
        assert_eq!(
            s,
            Ok(Server {
                id: 100,
                host: "0.0.0.0".into(),
                quorum_port: 1234,
                election_port: 2345,
                observer: true,
                client: Some("0.0.0.0:3456".into()),
            })
        );
        let port_only = parse_joiner("server.999=0.0.0.0:1234:2345:observer;3456");
        assert_eq!(port_only.map(|s| s.client), Ok(Some("0.0.0.0:3456".into())));
        assert_eq!(parse_joiner("some thing"), Err(code::BAD_ARGUMENTS));
        assert_eq!(
            parse_joiner("server.5=1.2.3.4:1:2"),
            Err(code::BAD_ARGUMENTS)
        );
        assert_eq!(
            parse_joiner("server.x=1.2.3.4:1:2:observer;3"),
            Err(code::MARSHALLING_ERROR)
        );
        assert_eq!(
            parse_joiner("server.5=1.2.3.4:1:2:leader;3"),
            Err(code::BAD_ARGUMENTS)
        );
        assert_eq!(parse_id("abc"), Err(code::MARSHALLING_ERROR));
    }

    #[test]
    fn member_lists_split_on_commas_and_newlines() {
        let v = parse_members("server.1=a:1:2:participant;3,server.2=b:4:5\nversion=1");
        let ids: Vec<u64> = v.unwrap_or_default().iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(parse_members("garbage").map(|v| v.len()), Ok(0));
    }
}
