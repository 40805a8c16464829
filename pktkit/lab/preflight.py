"""Can this host run the lab? Root, network namespaces, the tools; one line if not.

Why a probe namespace rather than a look at /proc or the kernel config: what matters is whether
``ip netns add`` works here (an unprivileged container has root but no CAP_SYS_ADMIN, a
seccomp profile can forbid unshare), and only trying says so. The probe follows the lab's
naming and is deleted at once.
"""

from __future__ import annotations

import os
import shutil

from pktkit.errors import UsageError
from pktkit.lab.netns import PREFIX, run

REQUIRED_TOOLS = ("ip", "tcpdump", "iptables-restore", "iptables-save", "conntrack", "sysctl",
                  "bridge")


def check_host(*, need_tc: bool = False) -> None:
    """Raise UsageError (exit 2) when the lab cannot run here."""
    if os.geteuid() != 0:
        raise UsageError("pktkit lab must run as root (it creates network namespaces, veth, "
                         "bridges and iptables rules inside them); run it again with sudo")
    tools = (*REQUIRED_TOOLS, "tc") if need_tc else REQUIRED_TOOLS
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise UsageError(f"pktkit lab needs {', '.join(missing)} (not on PATH); install "
                         "iproute2, tcpdump, iptables and conntrack")
    probe = f"{PREFIX}{os.getpid()}-probe"  # swept as stale if this process is killed now
    done = run(["ip", "netns", "add", probe], check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["ip netns add failed"])[-1]
        raise UsageError(f"pktkit lab cannot create a network namespace here ({reason}); run "
                         "it on a Linux host (or VM) with network namespace support")
    run(["ip", "netns", "del", probe], check=False)
