"""Microsoft Retina's Linux capture bundle, read as a :class:`~pktkit.capture.bundle.Bundle`.

``kubectl retina capture create`` runs a job per node that records ``tcpdump -i any`` and then
the node's network state, and tars the folder as ``<capture>-<node>-<YYYYMMDDhhmmss>UTC.tar.gz``
(members at the top level, no folder). Layout, from Retina's source
(``pkg/capture/provider/network_capture_unix.go``, ``capture_manager.go``; v0.0.1 to v1.2.6)::

    <base>.pcap (or .pcap0, .pcap1, ... when rotating)   tcpdump -i any: SLL2 since v0.0.35
    tcpdump.log          tcpdump's command line, a blank line, then its stderr:
                         "listening on any, link-type LINUX_SLL2 ...", the packet counts
    ip-resources.txt     "Summary:", one line per command "CMD(description)", "Execute:", then
                         each command on a line of its own followed by its output: ip -d -j
                         addr show (JSON), ip -d -j neighbor show, ip rule list, ip route show
                         table all. A failed command's output ends in 'Failed to run "CMD",
                         error: ...)' with no newline, glued to the next command's line.
    iptables-rules.txt, socket-stats.txt                 the same grammar
    proc-net/            a copy of /proc/net (nf_conntrack: the conntrack table, when the
                         kernel has it; dev_mcast, if_inet6, dev_snmp6/: index → name)
    proc-sys-net/        a copy of /proc/sys/net

With ``--include-metadata=false`` only the pcap and tcpdump.log are there: interfaces are then
named by index. The node: Retina's node name is inside the file name, but a capture name and a
node name may both hold hyphens, so ``<capture>-<node>`` is only split when the folder the
tarball lies in is named after the capture (``kubectl retina capture download --name X`` writes
``X/X-<node>-<time>UTC.tar.gz``), or from v0.0.17-v1.0.0-rc1's ``{capture node time}.pcap``;
otherwise the node is ``<capture>-<node>`` whole (``pktkit analyze --node NAME=BUNDLE`` names
it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from pktkit.capture.bundle import ANY, METADATA_FILES, Bundle, BundleCapture
from pktkit.capture.netinfo import NodeLinks, node_links, parse_json_array
from pktkit.errors import CaptureError

TCPDUMP_LOG = "tcpdump.log"
IP_RESOURCES = "ip-resources.txt"
NF_CONNTRACK = "proc-net/nf_conntrack"
_PCAP = re.compile(r"\.(pcap\d*|pcapng)$")
_BASE = re.compile(r"^(?P<prefix>.+)-(?P<time>\d{14})UTC$")
_BRACED = re.compile(r"^\{(?P<capture>\S+) (?P<node>\S+) (?P<time>.+)\}$")  # v0.0.17-rc1
_LISTENING = re.compile(r"listening on (?P<iface>\S+), link-type (?P<link>\S+)")
_ADDR_COMMAND = re.compile(r"^(?:\S*/)?ip -d -j addr show$")
_FAILED = re.compile(r'Failed to run "[^"]*", error: [^\n]*?\)$')


def is_retina_folder(folder: Path) -> bool:
    """Retina's layout: tcpdump.log beside at least one pcap."""
    return (folder / TCPDUMP_LOG).is_file() and any(_pcaps(folder))


def _pcaps(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.iterdir()) if p.is_file() and _PCAP.search(p.name))


def command_outputs(text: str) -> dict[str, str]:
    """Each command's output in a Retina metadata file (``ip-resources.txt`` and its like),
    by command line; a failed command's ends in its ``Failed to run ...)`` line."""
    summary, sep, execute = text.partition("\nExecute:\n")
    if not sep:
        return {}
    commands = []
    for line in summary.splitlines()[1:]:
        if line.strip() and "(" in line:
            commands.append(line[:line.rindex("(")])
    outputs: dict[str, str] = {}
    pos = 0
    starts = []
    for command in commands:  # each command's line, in order: at a line start or glued
        found = re.compile(rf"(?:^|(?<=\)))({re.escape(command)})\n", re.M).search(execute,
                                                                                    pos)
        if found is None:
            continue
        starts.append((command, found.start(1), found.end()))
        pos = found.end()
    for i, (command, _, body_start) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else len(execute)
        outputs[command] = execute[body_start:end].removeprefix("\n")
    return outputs


def links_from_ip_resources(path: Path) -> NodeLinks | None:
    """The node's devices from ``ip-resources.txt`` (its ``ip -d -j addr show``)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    for command, output in command_outputs(text).items():
        if _ADDR_COMMAND.match(command):
            if _FAILED.search(output.rstrip("\n")) and "[" not in output:
                return None
            found = node_links((), parse_json_array(output, f"{path} ({command})",
                                                    "ip -d -j addr show"))
            return found if found.links else None
    return None


def links_from_proc_net(folder: Path) -> NodeLinks | None:
    """Index → name from the ``/proc/net`` copy when ``ip-resources.txt`` is missing or broken:
    ``dev_mcast`` (index name users global mac), ``if_inet6`` (... index ... name) and
    ``dev_snmp6/<name>`` (``ifIndex N``)."""
    names: dict[int, str] = {}
    proc = folder / "proc-net"
    for line in _lines(proc / "dev_mcast"):
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            names.setdefault(int(fields[0]), fields[1])
    for line in _lines(proc / "if_inet6"):
        fields = line.split()
        if len(fields) == 6:
            names.setdefault(int(fields[1], 16), fields[5])
    snmp = proc / "dev_snmp6"
    for device in sorted(snmp.iterdir()) if snmp.is_dir() else []:
        for line in _lines(device):
            fields = line.split()
            if len(fields) == 2 and fields[0] == "ifIndex" and fields[1].isdigit():
                names.setdefault(int(fields[1]), device.name)
    if not names:
        return None
    return node_links({"ifindex": i, "ifname": n} for i, n in sorted(names.items()))


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() \
        if path.is_file() else []


def capture_interface(folder: Path) -> str | None:
    """The interface tcpdump listened on, as its log says (``any``, or one device)."""
    for line in _lines(folder / TCPDUMP_LOG):
        found = _LISTENING.search(line)
        if found:
            return found.group("iface")
    return None


def node_name(source: Path, pcaps: list[Path]) -> str:
    """The node's name from the tarball's (or the folder's, or the pcap's) name."""
    for name in (source.name.removesuffix(".tar.gz").removesuffix(".tgz"),
                 *(_PCAP.sub("", p.name) for p in pcaps)):
        braced = _BRACED.match(name)
        if braced:
            return braced.group("node")
        based = _BASE.match(name)
        if based:
            prefix = based.group("prefix")
            capture = source.parent.name
            if capture and prefix.startswith(capture + "-") and len(prefix) > len(capture) + 1:
                return prefix[len(capture) + 1:]
            return prefix
    return source.name.removesuffix(".tar.gz").removesuffix(".tgz")


def read_retina_folder(folder: Path, source: Path | None = None) -> Bundle:
    """A Retina bundle folder (or its unpacked tarball) as a :class:`Bundle`."""
    source = source or folder
    pcaps = list(_pcaps(folder))
    if not pcaps:
        raise CaptureError(f"{source}: a Retina bundle without a pcap; copy the whole bundle")
    notes = []
    links = links_from_ip_resources(folder / IP_RESOURCES) \
        if (folder / IP_RESOURCES).is_file() else None
    if links is None:
        links = links_from_proc_net(folder)
        if links is None:
            notes.append(f"{source}: no interface names (a Retina bundle without metadata): "
                         "interfaces are named by index")
    interface = capture_interface(folder) or ANY
    conntrack = folder / NF_CONNTRACK
    return Bundle(
        source, folder, "retina", node_name(source, pcaps),
        tuple(BundleCapture(p, interface) for p in pcaps), links,
        (conntrack,) if conntrack.is_file() and conntrack.stat().st_size else (),
        {name: folder / name for name in METADATA_FILES if (folder / name).is_file()},
        {}, tuple(notes))
