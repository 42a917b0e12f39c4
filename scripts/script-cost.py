#!/usr/bin/env python3
"""What each Lua script costs the server (issue 17), measured by Redis itself.

Starts a throwaway redis-server, loads the scripts from src/scripts/ as leasectl loads them
(holder.lua + acquire_hash.lua + token.lua + acquire.lua, ...), and for each call below runs only that
call N times on fresh keys (CONFIG RESETSTAT before, INFO commandstats after): EVALSHA's
usec_per_call and the commands the script called (calls per script call, and their µs).
Two yardsticks run in the same round: a bare SET NX PX in a script, and node-redlock's
acquire script (EXISTS, SET PX). Rounds alternate the calls; the medians are printed.

    scripts/script-cost.py [--rounds 5] [--n 20000] [--depth 1] [--src DIR] [--compare DIR]
    scripts/script-cost.py --callgrind [--n 1000] [--compare DIR]
    scripts/script-cost.py --bench target/release/leasectl [--rounds 5] [--cycles 3000]

--depth 1 sends one call at a time (as S1 does); a larger depth pipelines (as S2's 50
acquirers do). The machine's noise moves every figure together: compare within one run.
With --bench, the figures are taken during `leasectl bench` S1 (one server) and S4 (three):
EVALSHA's average from INFO commandstats, and each script's median from the slow log.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SET_NX = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])"
REDLOCK = """for i, key in ipairs(KEYS) do
  if redis.call('exists', key) == 1 then return 0 end
end
for i, key in ipairs(KEYS) do
  redis.call('set', key, ARGV[1], 'PX', ARGV[2])
end
return #KEYS"""


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            more = self.sock.recv(1 << 16)
            if not more:
                raise ConnectionError("closed")
            self.buf += more
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            more = self.sock.recv(1 << 16)
            if not more:
                raise ConnectionError("closed")
            self.buf += more
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+",):
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args):
        self.sock.sendall(encode(*args))
        reply = self.read()
        if isinstance(reply, RuntimeError):
            raise reply
        return reply

    def pipeline(self, commands, depth):
        for i in range(0, len(commands), depth):
            batch = commands[i : i + depth]
            self.sock.sendall(b"".join(batch))
            for _ in batch:
                reply = self.read()
                if isinstance(reply, RuntimeError):
                    raise reply


def commandstats(conn):
    stats = {}
    for line in conn.call("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_") :].split(":", 1)
            values = dict(f.split("=") for f in fields.split(","))
            stats[name] = (int(values["calls"]), int(values["usec"]))
    return stats


def read(src, *names):
    return "".join(open(os.path.join(src, name)).read() for name in names)


def calls(src):
    """name -> (script, make): make(i) gives the plain commands that prepare call i (a
    release of the last acquire, a lease to release) and call i's keys and arguments."""
    acquire = read(src, "holder.lua", "acquire_hash.lua", "token.lua", "acquire.lua")
    json_acquire = read(src, "holder.lua", "acquire_json.lua", "token.lua", "acquire.lua")
    release = read(src, "owns.lua", "release.lua")
    handoff = read(src, "owns.lua", "token.lua", "handoff.lua")
    ttl, grace, at = "10000", "1500", "2026-11-29T21:00:00.000Z"
    lease_id = "f47ac10b-58cc-4372-a567-0e02b2c3d479"
    meta = ["meta_instanceId", "worker-1", "meta_region", "eu-west",
            "meta_hostname", "host-a", "meta_startTime", "2026-11-29T20:00:00Z"]
    # One key, taken and released over and over, as `leasectl bench --scenario S1` does.
    name = "lease:bench-s1"
    keys = [name, f"lease:@fence{{{name}}}", f"lease:@queue{{{name}}}",
            f"lease:@deadlines{{{name}}}"]
    grants = f"lease:@grants{{{name}}}"
    freed = [encode("DEL", name)]

    def single(i):
        return freed, keys, [lease_id, ttl, at, "", grace, ""]

    def single_meta(i):
        return freed, keys, [lease_id, ttl, at, "", grace, ""] + meta

    def quorum(i):
        floor = str(int(time.time() * 1e6))
        longest = [f"lease:@longest-ttl{{{name}}}"]
        return freed, keys + longest, [lease_id, ttl, at, "", grace, floor]

    def json_single(i):
        head = ('{"leaseId":"%s","ownerId":"o","acquiredAt":"%s","metadata":{},'
                '"fencingToken":' % (lease_id, at))
        return freed, keys, [lease_id, ttl, at, "", grace, "", head]

    held = [encode("HSET", name, "leaseId", lease_id, "acquiredAt", at, "fencingToken", "7")]

    def release_of(i):
        channel = f"lease:@released{{{name}}}"
        return held, [name, keys[2]], ["PUBLISH", lease_id, channel]

    handoff_keys = [name, keys[2], keys[3], grants, keys[1]]

    def handoff_of(i):
        channel = f"lease:@released{{{name}}}"
        return held, handoff_keys, ["PUBLISH", lease_id, channel, at]

    # A waiter queued behind the holder, with its grant request (run's four meta fields):
    # the release hands it the lease.
    waiter = "0b9a3f7e-58cc-4372-a567-0e02b2c3d479"
    request = '["h","1500"' + "".join(',"%s"' % v for v in meta) + "]"
    queued = held + [encode("ZADD", keys[2], "1", waiter),
                     encode("ZADD", keys[3], "9999999999999", waiter),
                     encode("HSET", grants, waiter, request)]

    def grant_of(i):
        channel = f"lease:@released{{{name}}}"
        return queued, handoff_keys, ["PUBLISH", lease_id, channel, at]

    return {
        "SET NX PX (yardstick)": (SET_NX, lambda i: (freed, [name], [lease_id, ttl])),
        "node-redlock acquire": (REDLOCK, lambda i: (freed, [name], [lease_id, ttl])),
        "acquire single": (acquire, single),
        "acquire single, 4 meta": (acquire, single_meta),
        "acquire json single": (json_acquire, json_single),
        "acquire quorum": (acquire, quorum),
        "release": (release, release_of),
        "release one (handoff.lua), no waiter": (handoff, handoff_of),
        "release one (handoff.lua), a grant": (handoff, grant_of),
    }


def measure(conn, script, make, n, depth, tag):
    """EVALSHA's µs per call of `script`, and per command it called: calls per script call
    and µs per command call."""
    sha = conn.call("SCRIPT", "LOAD", script)
    conn.call("FLUSHALL")
    commands = []
    for i in range(n):
        prepare, k, a = make(i)
        commands.extend(prepare)
        commands.append(encode("EVALSHA", sha, len(k), *k, *a))
    conn.call("CONFIG", "RESETSTAT")
    conn.pipeline(commands, depth)
    stats = commandstats(conn)
    evalsha = stats.pop("evalsha")
    # The plain commands that prepared each call ran outside the script.
    prepared = {}
    for command in make(0)[0]:
        verb = command.split(b"\r\n")[2].decode().lower()
        prepared[verb] = prepared.get(verb, 0) + n
    inner = {}
    for name, (c, u) in stats.items():
        if name.split("|")[0] in ("config", "info", "flushall", "script"):
            continue
        c_in = c - prepared.get(name, 0)
        if c_in > 0:
            # Not separable from the prepared calls of the same command: their average.
            inner[name] = (c_in / n, u / c)
    return evalsha[1] / evalsha[0], inner


def start_server(work, wrapper=(), tries=100):
    """A redis-server of its own on a free port (under `wrapper`, e.g. valgrind), and a
    connection to it once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [*wrapper, "redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", work],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(tries):
        try:
            conn = Conn(port)
            conn.call("PING")
            return server, port, conn
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def evalsha_average(conn):
    """EVALSHA's µs per call since the statistics were reset."""
    calls, usec = commandstats(conn).get("evalsha", (0, 0))
    return usec / max(calls, 1)


def script_medians(conn, sha_names):
    """Each script's median µs per call in the slow log (which logs every call at threshold
    0, the commands a script calls too, and so slows them: a separate run from the average)."""
    per_script = {}
    for entry in conn.call("SLOWLOG", "GET", "-1"):
        args = entry[3]
        if args[0].lower() == "evalsha":
            per_script.setdefault(sha_names.get(args[1], args[1][:8]), []).append(entry[2])
    return {name: statistics.median(values) for name, values in per_script.items()}


def bench(args):
    """`leasectl bench` S1 on one server and S4 on three, alternating, `--rounds` times: each
    scenario once for EVALSHA's average (commandstats), once with the slow log on for each
    script's median."""
    import hashlib
    sha_names = {}
    for name, script in (("acquire", read(args.src, "holder.lua", "acquire_hash.lua", "token.lua",
                                           "acquire.lua")),
                         ("release", read(args.src, "owns.lua", "release.lua")),
                         ("release one", read(args.src, "owns.lua", "token.lua",
                                              "handoff.lua"))):
        sha_names[hashlib.sha1(script.encode()).hexdigest()] = name
    work = tempfile.mkdtemp(prefix="script-cost-")
    servers = []
    for i in range(3):
        os.makedirs(f"{work}/{i}")
        servers.append(start_server(f"{work}/{i}"))
    try:
        conns = [conn for _, _, conn in servers]
        urls = [f"redis://127.0.0.1:{port}" for _, port, _ in servers]
        rows = {}
        for _ in range(args.rounds):
            for scenario, used in (("S1", urls[:1]), ("S4", urls)):
                for logged in (False, True):
                    for conn in conns:
                        conn.call("CONFIG", "SET", "slowlog-log-slower-than",
                                  "0" if logged else "-1")
                        conn.call("CONFIG", "SET", "slowlog-max-len", str(20 * args.cycles))
                        conn.call("SLOWLOG", "RESET")
                        conn.call("CONFIG", "RESETSTAT")
                    subprocess.run(args.bench.split() + [
                        "bench", "--json", "--redis", ",".join(used), "--scenario", scenario,
                        "--cycles", str(args.cycles), "--warmup", "0"], check=True,
                        stdout=subprocess.DEVNULL)
                    # S4: instance 0 also serves S4's interleaved single-instance cycles.
                    row = rows.setdefault(scenario, {})
                    for conn in conns[:1] if scenario == "S1" else conns[1:]:
                        if not logged:
                            row.setdefault("EVALSHA average", []).append(evalsha_average(conn))
                            continue
                        for name, value in script_medians(conn, sha_names).items():
                            row.setdefault(name + " (median)", []).append(value)
        print(f"during `{args.bench} bench`, {args.rounds} rounds of {args.cycles} cycles "
              "(S4: instances 1 and 2); µs per call, median (range)")
        for scenario, row in rows.items():
            for name, values in row.items():
                print(f"{scenario} {name:<18} {statistics.median(values):6.2f} "
                      f"({min(values):.2f}-{max(values):.2f})")
    finally:
        for server, _, _ in servers:
            server.terminate()
            server.wait()


def selected(args):
    """The calls to measure: ours, those of --compare's scripts, as --only narrows them."""
    table = calls(args.src)
    if args.compare:
        table.update({f"{name} ({os.path.basename(os.path.normpath(args.compare))})": call
                      for name, call in calls(args.compare).items()
                      if "yardstick" not in name and "node-redlock" not in name})
    if args.only:
        table = {k: v for k, v in table.items() if any(o in k for o in args.only)}
    return table


def instructions(script, make, n):
    """Instructions per call inside evalShaCommand, counted by callgrind on a server of its
    own (exact where the µs move with the machine's load; about 50× slower)."""
    work = tempfile.mkdtemp(prefix="script-cost-")
    out = os.path.join(work, "callgrind.out")
    wrapper = ("valgrind", "--tool=callgrind", "--toggle-collect=evalShaCommand",
               f"--callgrind-out-file={out}")
    server, _, conn = start_server(work, wrapper, tries=400)
    sha = conn.call("SCRIPT", "LOAD", script)
    commands = []
    for i in range(n):
        prepare, k, a = make(i)
        commands.extend(prepare)
        commands.append(encode("EVALSHA", sha, len(k), *k, *a))
    conn.pipeline(commands, 50)
    try:
        conn.call("SHUTDOWN", "NOSAVE")
    except (ConnectionError, OSError):
        pass
    server.wait()
    for line in open(out):
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1]) / n
    raise RuntimeError("callgrind wrote no totals")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "src", "scripts"))
    parser.add_argument("--only", action="append", help="measure only calls whose name contains this")
    parser.add_argument("--compare", metavar="DIR",
                        help="also measure the scripts in DIR (e.g. another commit's src/scripts), "
                             "in the same rounds")
    parser.add_argument("--bench", metavar="LEASECTL",
                        help="measure during `LEASECTL bench` S1 and S4 instead")
    parser.add_argument("--cycles", type=int, default=3000, help="with --bench: cycles per run")
    parser.add_argument("--callgrind", action="store_true",
                        help="count instructions per call with valgrind instead (--n calls)")
    args = parser.parse_args()
    if args.bench:
        return bench(args)
    if args.callgrind:
        table = selected(args)
        print(f"instructions per call inside evalShaCommand, {args.n} calls each")
        for name, (script, make) in table.items():
            print(f"{name:<40} {instructions(script, make, args.n):8.0f}")
        return 0
    server, _, conn = start_server(tempfile.mkdtemp(prefix="script-cost-"))
    try:
        table = selected(args)
        results = {name: [] for name in table}
        inners = {name: [] for name in table}
        for name, (script, make) in table.items():
            measure(conn, script, make, 1000, args.depth, "warm")
        for r in range(args.rounds):
            for name, (script, make) in table.items():
                per_call, inner = measure(conn, script, make, args.n, args.depth, f"r{r}")
                results[name].append(per_call)
                inners[name].append(inner)
        print(f"redis-server {conn.call('INFO', 'server').split('redis_version:')[1].split()[0]}, "
              f"{args.rounds} rounds of {args.n} calls each, depth {args.depth}")
        print(f"{'call':<40} {'µs/call':>8}  {'range':>11}  commands it calls (per call × µs each)")
        for name, values in results.items():
            last = inners[name][len(inners[name]) // 2]
            called = ", ".join(f"{c} {k:.2g}×{u:.2f}" for c, (k, u) in sorted(last.items()))
            print(f"{name:<40} {statistics.median(values):8.2f}  "
                  f"{min(values):5.2f}-{max(values):5.2f}  {called}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
