#!/usr/bin/env python3
"""A mailroom agent in plain Python (standard library only), speaking the raw file protocol.

It claims tasks from its own mailbox and from the given pools, heartbeats while it works, and
reports completion to the broker. See docs/PROTOCOL.md for the protocol itself.

    python3 examples/python_agent.py --root runtime --agent Agent-7 --pool default --wait 30

It exits 0 once no task has been available for --wait seconds (or after --max tasks).
"""

import argparse
import json
import os
import re
import socket
import sys
import time

# The rule every agent name follows (docs/PROTOCOL.md): the broker ignores mailboxes named otherwise.
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

COUNTER = 0


def unique_name(kind):
    """A maildir-unique name: kind, time, pid, a counter, random bits and the host."""
    global COUNTER
    COUNTER += 1
    t = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + "%06d" % int((t % 1) * 1e6)
    host = socket.gethostname().replace("/", "_").replace(".", "_") or "localhost"
    return "%s-%s.P%dQ%dR%s.%s.json" % (kind, stamp, os.getpid(), COUNTER, os.urandom(4).hex(), host)


def deliver(maildir, obj):
    """Write into tmp/, fsync, rename into new/: no reader ever sees half a message."""
    name = unique_name("msg")
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "x") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(maildir, "new", name))
    fsync_dir(os.path.join(maildir, "new"))
    return name


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verdict(comms, name, timeout=30.0):
    """Waits for the broker's answer to message `name`: it leaves broker/inbox/new/ only once
    journaled, into broker/inbox/cur/ if accepted or into broker/quarantine/ if refused.
    Returns "accepted", "refused: <reason>", or None if no broker consumed it in time."""
    inbox = os.path.join(comms, "broker", "inbox")
    quarantine = os.path.join(comms, "broker", "quarantine")
    deadline = time.monotonic() + timeout
    # A broker pass takes a millisecond or a few: look often at first, then less.
    pause = 0.0002
    while os.path.exists(os.path.join(inbox, "new", name)):
        if time.monotonic() > deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    for entry in listdir(quarantine):
        if entry.endswith("-" + name + ".error.json"):
            with open(os.path.join(quarantine, entry)) as f:
                return "refused: " + json.load(f).get("reason", "?")
    return "accepted"


def is_task_name(name):
    """Task files are named RANK-CREATED-SEQ-ID.json; mail and notices start with their kind."""
    return name[:1].isdigit() and name.endswith(".json")


def names_its_task(name, task):
    """Is this the task the file's name carries (RANK-CREATED-SEQ-ID[.caps-TAG].json)? After a power
    loss a task file can hold the task its inode held before: never work on that one."""
    stem = name[: -len(".json")].split(".caps-")[0]
    fragment = re.sub(r"[^A-Za-z0-9_-]", "_", str(task.get("task_id", "")))[:80] or "_"
    return stem.split("-", 3)[-1] == fragment


def load(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return default


def may_claim(comms, agent, name):
    """A pool task that requires capabilities carries their tag: `...-ID.caps-TAG.json`. The set
    is in capabilities/TAG.json; our own are in our agent.json. Claiming one we lack is refused."""
    stem = name[: -len(".json")]
    if ".caps-" not in stem:
        return True
    tag = stem.rsplit(".caps-", 1)[1]
    needed = load(os.path.join(comms, "capabilities", tag + ".json"), None)
    if needed is None:
        return False
    mine = load(os.path.join(comms, "mailboxes", agent, "agent.json"), {}).get("capabilities", [])
    held = {c.strip().lower() for c in mine}
    return all(c in held for c in needed["capabilities"])


def listdir(path):
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def claim(comms, agent, pools):
    """Claim = rename the task file into our cur/. Of racing agents, exactly one rename wins."""
    mine = os.path.join(comms, "mailboxes", agent)
    sources = [os.path.join(mine, "new")]
    if not pools:
        pools = sorted(listdir(os.path.join(comms, "queues")))
    sources += [os.path.join(comms, "queues", p, "new") for p in pools]
    candidates = sorted(
        (n, d) for d in sources for n in listdir(d) if is_task_name(n) and may_claim(comms, agent, n)
    )
    for name, src in candidates:
        dest = os.path.join(mine, "cur", name)
        try:
            os.rename(os.path.join(src, name), dest)
        except FileNotFoundError:
            continue  # another agent won this one: try the next
        os.utime(dest)  # the lease counts from the claim
        with open(dest) as f:
            task = json.load(f)
        if names_its_task(name, task):
            return name, task
        # The broker revokes this claim (its bytes are not those it dispatched) and queues the task again.
        print(f"{name}: holds task {task.get('task_id')!r}, not the one its name carries: left", file=sys.stderr)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.environ.get("MAILROOM_ROOT", "runtime"))
    ap.add_argument("--agent", required=True)
    ap.add_argument("--pool", action="append", default=[], help="pool to claim from (repeatable; default all)")
    ap.add_argument("--wait", type=float, default=10.0, help="exit after this long with nothing to do")
    ap.add_argument("--max", type=int, default=0, help="stop after this many tasks (0: no limit)")
    args = ap.parse_args()

    comms = os.path.join(args.root, "agent_comms")
    if not os.path.isdir(os.path.join(comms, "broker", "inbox")):
        sys.exit("%s is not a mailroom root" % args.root)
    if not AGENT_NAME.match(args.agent) or ".." in args.agent:
        sys.exit("--agent %r is not a valid agent name (letters, digits, '.', '_', '-'; at most 64)" % args.agent)
    mine = os.path.join(comms, "mailboxes", args.agent)
    if not os.path.isdir(os.path.join(mine, "new")):
        # Registering: an agent exists once its maildir does (`mailroom agent add` does the same).
        print("registering new agent %s" % args.agent, file=sys.stderr)
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(mine, sub), exist_ok=True)
    inbox = os.path.join(comms, "broker", "inbox")

    done = 0
    idle_since = time.monotonic()
    while args.max == 0 or done < args.max:
        got = claim(comms, args.agent, args.pool)
        if got is None:
            if time.monotonic() - idle_since > args.wait:
                break
            time.sleep(0.05)
            continue
        name, task = got
        held = os.path.join(mine, "cur", name)
        os.utime(held)  # heartbeat: renew the lease while working
        result = {"echo": task.get("params"), "by": args.agent}
        if not os.path.exists(held):
            print("lost claim %s" % name, file=sys.stderr)
            continue
        fsync_dir(os.path.join(mine, "cur"))  # the claim must outlive a power loss the report does
        sent = deliver(inbox, {"kind": "complete", "agent": args.agent, "claim": name, "result": result})
        answer = verdict(comms, sent)
        if answer == "accepted":
            print("completed %s (%s)" % (task["task_id"], name))
        else:
            print("not completed %s (%s): %s" % (task["task_id"], name, answer or "no broker answered"), file=sys.stderr)
        done += 1
        idle_since = time.monotonic()


if __name__ == "__main__":
    main()
