#!/usr/bin/env python3
"""Checks a Nomad job for Caravan nodes (examples/nomad/caravan.nomad.hcl).

Usage: check_nomad_job.py JOB_FILE [--facts]

The job is parsed with python-hcl2, a real HCL parser (scripts/setup installs
the pinned version into _build/python). Then the rules that make Caravan work
on Nomad are checked:

  * the task names its node RELEASE_NODE = "<name>-${NOMAD_HOST_PORT_<label>}@
    ${NOMAD_IP_<label>}", both with the same port label;
  * that label is a port of the group's bridge network, dynamic, with to = -1;
  * a Consul service advertises that port, with address_mode = "host", and has
    a health check;
  * the Erlang cookie comes from a Nomad variable through a template, never
    from a literal.

Prints one "ok:" line per rule, or a "FAIL:" line for the first broken rule naming the
file, the rule and the fix. With --facts it also prints "fact.<key>=<value>"
lines (node name prefix, port label, service name, the task's env) for the
examples test to compare with the sample app's config.

Exit status: 0 all rules hold, 1 a rule is broken or the file does not parse,
2 python-hcl2 is missing.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "_build", "python"))

try:
    import hcl2
except ImportError:
    print(
        "FAIL: python-hcl2 is not installed: run scripts/setup, which installs "
        "it into _build/python",
        file=sys.stderr,
    )
    sys.exit(2)

NODE_NAME = re.compile(
    r"^(?P<prefix>[A-Za-z0-9_.-]+)-\$\{NOMAD_HOST_PORT_(?P<port_label>[A-Za-z0-9_]+)\}"
    r"@\$\{NOMAD_IP_(?P<ip_label>[A-Za-z0-9_]+)\}$"
)
NOMAD_VAR = re.compile(r'nomadVar\s+"(?P<path>[^"]+)"')


class Broken(Exception):
    """A rule the job breaks; the message names the rule and the fix."""


def unquote(value):
    """python-hcl2 keeps string quotes and heredoc markers; strip them."""
    if isinstance(value, str):
        heredoc = re.match(r'^"?<<-?(\w+)\n(.*)\n\s*\1"?$', value, re.S)
        if heredoc:
            return heredoc.group(2)
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            return value[1:-1]
    return value


def blocks(body, kind):
    """The blocks of one kind in a body, as (label or None, body) pairs."""
    found = []
    for entry in body.get(kind, []):
        if not isinstance(entry, dict):
            continue
        # python-hcl2 marks unlabelled blocks with __is_block__ and keeps
        # comments under __comments__; a labelled block is {label: body}.
        keys = [k for k in entry if not k.startswith("__")]
        if "__is_block__" not in entry and len(keys) == 1 and isinstance(entry[keys[0]], dict):
            found.append((unquote(keys[0]), entry[keys[0]]))
        else:
            found.append((None, entry))
    return found


def attr(body, name):
    return unquote(body.get(name))


def env_of(task):
    """A task's env, whether written as a block or as a map attribute."""
    env = {}
    for _, block in blocks(task, "env"):
        env.update({unquote(k): unquote(v) for k, v in block.items() if not k.startswith("__")})
    if isinstance(task.get("env"), dict):
        env.update({unquote(k): unquote(v) for k, v in task["env"].items() if not k.startswith("__")})
    return env


def check(path):
    with open(path) as f:
        try:
            doc = hcl2.load(f)
        except Exception as e:  # the parser raises several exception types
            raise Broken(f"cannot parse the file as HCL: {e}") from None

    jobs = blocks(doc, "job")
    if len(jobs) != 1:
        raise Broken(f"expected exactly one job block, found {len(jobs)}")
    job_name, job = jobs[0]
    oks, facts = [], {"job": job_name}

    # The task that names its node, and its group.
    named = [
        (group, task_name, task, env_of(task))
        for _, group in blocks(job, "group")
        for task_name, task in blocks(group, "task")
        if "RELEASE_NODE" in env_of(task)
    ]
    if len(named) != 1:
        raise Broken(
            f"expected one task whose env sets RELEASE_NODE, found {len(named)}: "
            'set RELEASE_NODE = "<name>-${NOMAD_HOST_PORT_dist}@${NOMAD_IP_dist}" '
            "in the env block of the task that runs the release"
        )
    group, task_name, task, env = named[0]

    node = env["RELEASE_NODE"]
    m = NODE_NAME.match(node)
    if not m:
        raise Broken(
            f'task "{task_name}": RELEASE_NODE = "{node}" does not have the shape '
            '"<name>-${NOMAD_HOST_PORT_<label>}@${NOMAD_IP_<label>}": Caravan reads '
            "the port from the end of the name, and peers reach the node at the "
            "host address and host port"
        )
    label = m.group("port_label")
    if m.group("ip_label") != label:
        raise Broken(
            f'task "{task_name}": RELEASE_NODE uses port label "{label}" for the port '
            f'but "{m.group("ip_label")}" for the address: use the same label for both'
        )
    oks.append(f'RELEASE_NODE is {m.group("prefix")}-<host port of "{label}">@<host address of "{label}">')
    facts.update(node_prefix=m.group("prefix"), port_label=label)

    # The group's network: bridge, with that port, dynamic, to = -1.
    networks = blocks(group, "network")
    if len(networks) != 1:
        raise Broken(
            f"the group of task \"{task_name}\" has {len(networks)} network blocks, "
            f'expected one with mode = "bridge" and port "{label}"'
        )
    network = networks[0][1]
    if attr(network, "mode") != "bridge":
        mode = attr(network, "mode")
        found = 'no mode (Nomad\'s default is "host")' if mode is None else f'mode = "{mode}"'
        raise Broken(
            f'the network has {found}, expected mode = "bridge": the kit '
            f"relies on the group's own namespace, where to = -1 maps the host port "
            f"to the same port inside"
        )
    ports = dict(blocks(network, "port"))
    if label not in ports:
        raise Broken(
            f'RELEASE_NODE uses port label "{label}", but the group network has no '
            f'port "{label}" (it has: {", ".join(sorted(ports)) or "none"}): add '
            f'port "{label}" {{ to = -1 }} to the network block, or fix the label'
        )
    port = ports[label]
    if "static" in port:
        raise Broken(
            f'port "{label}" is static ({attr(port, "static")}): drop `static` so that '
            "Nomad picks a free port per allocation and nodes can share a client"
        )
    if str(attr(port, "to")) != "-1":
        raise Broken(
            f'port "{label}" has to = {attr(port, "to")}, expected to = -1: Caravan '
            "listens inside the namespace on the port in the node's name, which is "
            "the host port, so the mapped port must equal the host port"
        )
    oks.append(f'port "{label}" is dynamic, in a bridge network, with to = -1')

    # A Consul service on that port, with address_mode = "host" and a check.
    services = blocks(group, "service") + blocks(task, "service")
    dist_services = [s for _, s in services if attr(s, "port") == label]
    if not dist_services:
        found = ", ".join(repr(attr(s, "port")) for _, s in services) or "none"
        raise Broken(
            f'no service advertises port "{label}" (service ports: {found}): add a '
            f'service with port = "{label}" so Consul lists the nodes'
        )
    service = dist_services[0]
    provider = attr(service, "provider") or "consul"
    if provider != "consul":
        raise Broken(
            f'the service on port "{label}" uses provider = "{provider}": Caravan '
            'discovers peers through Consul DNS, use provider = "consul"'
        )
    mode = attr(service, "address_mode")
    if mode != "host":
        found = "no address_mode" if mode is None else f'address_mode = "{mode}"'
        raise Broken(
            f'the service on port "{label}" has {found}, expected address_mode = '
            f'"host", set explicitly: the node is named after NOMAD_IP_{label}, the '
            'host address, and Consul must advertise that address; "alloc" would '
            "advertise the allocation's bridge address, which no node is named after"
        )
    checks = [c for _, c in blocks(service, "check")]
    if not checks:
        raise Broken(
            f'the service on port "{label}" has no check: add a tcp check so that '
            "Consul's DNS lists only nodes that accept connections"
        )
    for c in checks:
        check_port = attr(c, "port")
        if check_port is not None and check_port != label:
            raise Broken(
                f'a check of the service on port "{label}" probes port "{check_port}": '
                f'probe "{label}" (or leave the check\'s port out)'
            )
    name = attr(service, "name")
    if not name:
        raise Broken(
            f'the service on port "{label}" has no name: name it, the sample app '
            "queries <name>.service.consul"
        )
    oks.append(
        f'service "{name}" advertises port "{label}" with address_mode = "host" '
        f"and {len(checks)} check(s)"
    )
    facts["service"] = name

    # The cookie: from a Nomad variable, never a literal.
    for key in env:
        if "COOKIE" in key.upper():
            raise Broken(
                f'task "{task_name}" sets {key} in its env block: a literal cookie is '
                "readable by anyone who can read the job; render RELEASE_COOKIE from a "
                'Nomad variable in a template with env = true'
            )
    args = " ".join(str(unquote(a)) for _, c in blocks(task, "config") for a in c.get("args", []))
    if re.search(r"(^|\s)(-setcookie|--cookie)(\s|$)", args):
        raise Broken(
            f'task "{task_name}" passes a cookie on its command line: render '
            "RELEASE_COOKIE from a Nomad variable in a template with env = true"
        )
    cookie_templates = []
    for _, template in blocks(task, "template"):
        data = attr(template, "data") or ""
        line = next((l for l in data.splitlines() if "RELEASE_COOKIE=" in l), None)
        if line is None:
            continue
        value = line.split("RELEASE_COOKIE=", 1)[1]
        var = NOMAD_VAR.search(line)
        if not value.lstrip().startswith("{{") or not var:
            raise Broken(
                f'task "{task_name}": the template line "{line.strip()}" does not take '
                'RELEASE_COOKIE from a Nomad variable: write {{ with nomadVar '
                f'"nomad/jobs/{job_name}" }}}}RELEASE_COOKIE={{{{ .cookie }}}}{{{{ end }}}}'
            )
        if template.get("env") is not True:
            raise Broken(
                f'task "{task_name}": the template that renders RELEASE_COOKIE needs '
                "env = true, so that the cookie reaches the task's environment"
            )
        cookie_templates.append(var.group("path"))
    if not cookie_templates:
        raise Broken(
            f'task "{task_name}" gets no RELEASE_COOKIE: add a template with env = true '
            f'rendering {{{{ with nomadVar "nomad/jobs/{job_name}" }}}}'
            "RELEASE_COOKIE={{ .cookie }}{{ end }}"
        )
    var_path = cookie_templates[0]
    if var_path != f"nomad/jobs/{job_name}" and not var_path.startswith(f"nomad/jobs/{job_name}/"):
        raise Broken(
            f'the cookie comes from Nomad variable "{var_path}", which the task can only '
            f"read with an extra ACL policy: keep it under nomad/jobs/{job_name}, which "
            "the task's workload identity may read"
        )
    oks.append(f'RELEASE_COOKIE comes from Nomad variable "{var_path}"')
    facts.update({f"env.{k}": v for k, v in env.items()})
    return oks, facts


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    path = args[0]
    try:
        oks, facts = check(path)
    except Broken as e:
        print(f"FAIL: {path}: {e}")
        return 1
    except OSError as e:
        print(f"FAIL: {path}: cannot read the file: {e.strerror}")
        return 1
    for ok in oks:
        print(f"ok: {ok}")
    if "--facts" in argv:
        for key, value in facts.items():
            print(f"fact.{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
