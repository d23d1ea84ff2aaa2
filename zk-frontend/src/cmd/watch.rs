//! Watch management requests: setWatches(2), addWatch, checkWatches,
//! removeWatches.

use super::{system, Ctx, Reply};
use crate::proto::jute::Writer;
use crate::proto::{code, event_type, SetWatchesReq};
use crate::watches::add_watch_mode;

/// SetWatches/SetWatches2 after a reconnect, as ZooKeeper's
/// `DataTree.setWatches`: a watch whose node changed after `relativeZxid`
/// (mzxid for data, pzxid for children, existence for exist watches) fires
/// at once; the others are re-armed with the node's current state as
/// threshold. Replies go to xid -8 with no body.
pub fn set_watches(ctx: &mut Ctx<'_>, sw: SetWatchesReq) -> Reply {
    for p in sw
        .data
        .iter()
        .chain(&sw.exist)
        .chain(&sw.child)
        .chain(&sw.persistent)
    {
        ctx.watches.arm(p);
    }
    for p in &sw.persistent_recursive {
        ctx.watches.arm_recursive(p);
    }
    let now = ctx.node.revision();
    let rel = sw.relative_zxid;
    let stat_of = |path: &str| {
        if system::is_system(path) {
            // The config's mzxid is a raft index, not a revision: never
            // compared with the client's zxid.
            Some(janus_core::znode::Stat {
                mzxid: 0,
                ..system::stat(ctx.node, ctx.cfg, path)
            })
        } else {
            ctx.node.zk_exists(path)
        }
    };
    let mut fire = Vec::new();
    for p in sw.data {
        match stat_of(&p) {
            None => fire.push((event_type::NODE_DELETED, p)),
            Some(s) if s.mzxid > rel => fire.push((event_type::NODE_DATA_CHANGED, p)),
            Some(s) => ctx.watches.add_data(&p, s.mzxid),
        }
    }
    for p in sw.exist {
        match stat_of(&p) {
            Some(_) => fire.push((event_type::NODE_CREATED, p)),
            None => ctx.watches.add_data(&p, now),
        }
    }
    for p in sw.child {
        match stat_of(&p) {
            None => fire.push((event_type::NODE_DELETED, p)),
            Some(s) if s.pzxid > rel => fire.push((event_type::NODE_CHILDREN_CHANGED, p)),
            Some(s) => ctx.watches.add_child(&p, s.pzxid),
        }
    }
    for p in sw.persistent {
        add_persistent(ctx, &p, false, now);
    }
    for p in sw.persistent_recursive {
        add_persistent(ctx, &p, true, now);
    }
    ctx.immediate.extend(fire);
    Reply::empty(now)
}

/// addWatch: a persistent (0) or persistent-recursive (1) watch, answered
/// with an ErrorResponse(0) body as ZooKeeper does.
pub fn add_watch(ctx: &mut Ctx<'_>, path: &str, mode: i32) -> Reply {
    let recursive = match mode {
        add_watch_mode::PERSISTENT => false,
        add_watch_mode::PERSISTENT_RECURSIVE => true,
        _ => return Reply::err(ctx.node.revision(), code::BAD_ARGUMENTS),
    };
    if recursive {
        ctx.watches.arm_recursive(path);
    } else {
        ctx.watches.arm(path);
    }
    let now = ctx.node.revision();
    add_persistent(ctx, path, recursive, now);
    let mut w = Writer::new();
    w.int(0);
    Reply::ok(now, w.into_bytes())
}

pub fn check_watches(ctx: &mut Ctx<'_>, path: &str, kind: i32) -> Reply {
    let now = ctx.node.revision();
    if ctx.watches.contains(path, kind) {
        Reply::empty(now)
    } else {
        Reply::err(now, code::NO_WATCHER)
    }
}

pub fn remove_watches(ctx: &mut Ctx<'_>, path: &str, kind: i32) -> Reply {
    let now = ctx.node.revision();
    if ctx.watches.remove(path, kind) {
        Reply::empty(now)
    } else {
        Reply::err(now, code::NO_WATCHER)
    }
}

/// Adds a persistent watch set against store revision `now`. Changes of
/// `/zookeeper/config` are counted in config versions instead
/// (`WatchTable::config_changed`): a watch on it takes the current one as
/// threshold, a recursive watch above it notes it beside its own.
fn add_persistent(ctx: &mut Ctx<'_>, path: &str, recursive: bool, now: i64) {
    let config = ctx.node.config_version() as i64;
    if recursive {
        ctx.watches.note_config_recursive(path, config);
        ctx.watches.add_persistent(path, true, now);
    } else if path == system::CONFIG {
        ctx.watches.add_persistent(path, false, config);
    } else {
        ctx.watches.add_persistent(path, false, now);
    }
}
