"""The parent of one container process (containerd's shim, in miniature).

The agent starts `python -m svcnet.node.shim [--hostname H] STATUS_FILE -- CMD...` in a new session, inside
the pod's namespaces. The shim starts CMD, passes SIGTERM/SIGINT on, and when CMD ends writes
`{"exitCode": N, "signal": S, "finishedAt": T}` to STATUS_FILE. So an agent that was killed
and restarted still learns how a container it adopted ended.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--hostname":
        # In the pod's own UTS namespace (the agent starts us under `unshare --uts`).
        try:
            socket.sethostname(argv[1])
        except OSError as e:
            print(f"shim: cannot set hostname {argv[1]!r}: {e}", file=sys.stderr)
        argv = argv[2:]
    if len(argv) < 3 or argv[1] != "--":
        print("usage: shim STATUS_FILE -- CMD...", file=sys.stderr)
        return 2
    status_file, cmd = argv[0], argv[2:]
    try:
        child = subprocess.Popen(cmd)
    except OSError as e:
        print(f"exec: {cmd[0]!r}: {e.strerror}", file=sys.stderr, flush=True)
        _write(status_file, 128, 0, str(e.strerror))
        return 128

    def forward(signum: int, _frame: object) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    code = child.wait()
    if code < 0:
        _write(status_file, 128 - code, -code, "")
        return 128 - code
    _write(status_file, code, 0, "")
    return code


def _write(path: str, code: int, sig: int, message: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"exitCode": code, "signal": sig, "message": message, "finishedAt": time.time()}, f)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
