#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from the differential scenarios
(conformance/scenarios/*.scn): each `zk` request line becomes a jute request
frame (jute_decode, zk_connection), each `etcd put/get/del/txn` line a JSON
gateway body (etcd_gateway). The WAL and snapshot seeds come from a running
janus (see README.md). Run from fuzz/: python3 make_seeds.py"""
import base64, glob, json, os, shlex, struct

def ustr(s):
    b = s.encode()
    return struct.pack('>i', len(b)) + b

def buf(b):
    return struct.pack('>i', len(b)) + b

ACL = struct.pack('>i', 1) + struct.pack('>i', 31) + ustr('world') + ustr('anyone')
MODES = {'persistent': 0, 'ephemeral': 1, 'persistent_sequential': 2, 'sequential': 2,
         'ephemeral_sequential': 3, 'container': 4}

def zk_frame(xid, words):
    op, args = words[0], words[1:]
    if op == 'create' and len(args) >= 2:
        mode = MODES.get(args[2] if len(args) > 2 else 'persistent', 0)
        return struct.pack('>ii', xid, 1) + ustr(args[0]) + buf(args[1].encode()) + ACL + struct.pack('>i', mode)
    if op == 'get' and args:
        return struct.pack('>ii', xid, 4) + ustr(args[0]) + b'\x01'
    if op == 'exists' and args:
        return struct.pack('>ii', xid, 3) + ustr(args[0]) + b'\x01'
    if op == 'set' and len(args) >= 2:
        v = int(args[2]) if len(args) > 2 and args[2].lstrip('-').isdigit() else -1
        return struct.pack('>ii', xid, 5) + ustr(args[0]) + buf(args[1].encode()) + struct.pack('>i', v)
    if op == 'delete' and args:
        v = int(args[1]) if len(args) > 1 and args[1].lstrip('-').isdigit() else -1
        return struct.pack('>ii', xid, 2) + ustr(args[0]) + struct.pack('>i', v)
    if op in ('children', 'list') and args:
        return struct.pack('>ii', xid, 12) + ustr(args[0]) + b'\x01'
    if op == 'sync' and args:
        return struct.pack('>ii', xid, 9) + ustr(args[0])
    return None

def b64(s):
    return base64.b64encode(s.encode()).decode()

def etcd_body(words):
    op, args = words[0], words[1:]
    if op == 'put' and len(args) >= 2:
        return 1, {'key': b64(args[0]), 'value': b64(args[1]), 'prev_kv': '--prev-kv' in args}
    if op == 'get' and args:
        body = {'key': b64(args[0])}
        if '--prefix' in args:
            body['range_end'] = b64(args[0][:-1] + chr(ord(args[0][-1]) + 1)) if args[0] else 'AA=='
        return 0, body
    if op == 'del' and args:
        return 2, {'key': b64(args[0])}
    if op == 'txn':
        return 3, {'compare': [{'key': b64('k'), 'target': 'VALUE', 'result': 'EQUAL', 'value': b64('1')}],
                   'success': [{'request_put': {'key': b64('k'), 'value': b64('2')}}],
                   'failure': [{'request_range': {'key': b64('k')}}]}
    return None

def write(dir, name, data):
    os.makedirs(dir, exist_ok=True)
    with open(os.path.join(dir, name), 'wb') as f:
        f.write(data)

n = 0
for scn in sorted(glob.glob('../conformance/scenarios/*.scn')):
    base = os.path.basename(scn)[:-4]
    frames = []
    for i, line in enumerate(open(scn)):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if words[0] == 'zk' and len(words) > 1:
            f = zk_frame(len(frames) + 1, words[1:])
            if f:
                frames.append(f)
                write('corpus/jute_decode', f'{base}-{i}', f)
                n += 1
        if words[0] == 'etcd' and len(words) > 1:
            r = etcd_body(words[1:])
            if r:
                pick, body = r
                write('corpus/etcd_gateway', f'{base}-{i}', bytes([pick]) + json.dumps(body).encode())
                n += 1
    if frames:
        # zk_connection: [u16 len][payload] per frame.
        seq = b''.join(struct.pack('>H', len(f)) + f for f in frames[:40])
        write('corpus/zk_connection', base, seq)
        n += 1
print(f'{n} seeds written')
