"""One pod on this node: its sandbox, its containers, their probes and restarts, its status,
and its graceful end. The agent makes one PodWorker per pod uid and feeds it the newest
object; everything a worker does is driven from its own task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from svcnet.node import envvars, podfiles, probes, runtime, sandbox

if TYPE_CHECKING:
    from svcnet.node.agent import NodeAgent

log = logging.getLogger(__name__)

Obj = dict[str, Any]

BACKOFF_INITIAL = 10.0  # kubelet's container restart back-off: 10 s doubling to 5 min
BACKOFF_MAX = 300.0


def rfc3339(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_command(container: Obj) -> tuple[list[str], bool]:
    """(argv, builtin): the container's command + args as given; without a command, the
    built-in echo server on the declared ports (the image's own entrypoint is not available,
    and its args are meant for that entrypoint, so they are not used)."""
    command = [str(c) for c in container.get("command") or []]
    if command:
        return command + [str(a) for a in container.get("args") or []], False
    argv = [sys.executable, "-m", "svcnet.node.echo"]
    for p in container.get("ports") or []:
        proto = (p.get("protocol") or "TCP").upper()
        if proto in ("TCP", "UDP") and p.get("containerPort"):
            argv += ["--tcp" if proto == "TCP" else "--udp", str(p["containerPort"])]
    return argv, True


@dataclass
class Container:
    spec: Obj
    restart_count: int = 0
    process: runtime.Process | None = None
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    started_at: float | None = None
    ready: bool = False
    started: bool = False  # the startup probe (if any) has passed
    backoff: float = 0.0
    restart_at: float | None = None  # monotonic time of the next start (back-off)
    builtin: bool = False
    init: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    exit_task: asyncio.Task[Any] | None = None  # a strong reference: the loop keeps tasks weakly
    killing: bool = False

    @property
    def name(self) -> str:
        return str(self.spec.get("name"))

    @property
    def running(self) -> bool:
        return self.process is not None


class PodWorker:
    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        self.agent = agent
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta.get("namespace") or "default"
        self.name: str = meta["name"]
        self.dir: Path = agent.data_dir / "pods" / self.uid
        self.host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        # The pod's own namespace, and the one its containers run in (the node's for hostNetwork).
        self.pod_netns = agent.pod_netns_name(self.namespace, self.name, self.uid)
        # (Local pods, agent.config.local_pods, have no namespace: pod_netns is "".)
        self.local = not self.host_network and not self.pod_netns
        self.netns_name: str | None = (
            agent.node_network.netns if self.host_network else (self.pod_netns or None)
        )
        self.ip: str | None = None
        self.sandbox_ready = False
        self.start_time: str | None = None
        spec = pod.get("spec") or {}
        self.containers: dict[str, Container] = {
            str(c.get("name")): Container(c) for c in spec.get("containers") or []
        }
        # Init containers run one at a time, in order, each to a successful exit, before the
        # app containers start (sidecars, restartPolicy Always on an init container, are not
        # handled: they run like the others).
        self.init_containers: dict[str, Container] = {
            str(c.get("name")): Container(c, init=True) for c in spec.get("initContainers") or []
        }
        self.initialized = not self.init_containers
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.finished = False
        self.last_status: Obj | None = None
        self.transition: dict[str, tuple[str, str]] = {}
        self.adopt: Obj | None = None  # saved state to adopt from

    # -- feeding ---------------------------------------------------------------------------------

    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"pod {self.namespace}/{self.name}"
        )

    @property
    def deleting(self) -> bool:
        return bool((self.pod.get("metadata") or {}).get("deletionTimestamp"))

    # -- persistence -----------------------------------------------------------------------------

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {
            "uid": self.uid,
            "namespace": self.namespace,
            "name": self.name,
            "netns": None if self.host_network else self.pod_netns,
            "ip": self.ip,
            "startTime": self.start_time,
            "containers": {
                c.name: {
                    "pid": c.process.pid if c.process else None,
                    "ticks": c.process.ticks if c.process else None,
                    "restartCount": c.restart_count,
                    "startedAt": c.started_at,
                    "lastState": c.last_state,
                    "builtin": c.builtin,
                    "state": c.state,
                    "backoff": c.backoff,
                    "restartAfter": time.time() + (c.restart_at - time.monotonic()) if c.restart_at else None,
                }
                for c in self.every_container()
            },
            "initialized": self.initialized,
            "initContainers": list(self.init_containers),
        }
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.dir / "state.json")

    # -- main loop -------------------------------------------------------------------------------

    async def _setup_with_retries(self) -> bool:
        """Set the sandbox up, retrying with back-off (as kubelet retries a failed sandbox);
        False if the pod was deleted meanwhile."""
        delay = 1.0
        while not self.deleting:
            try:
                await self._setup()
                return True
            except (OSError, RuntimeError, ValueError) as e:
                log.warning(
                    "pod %s/%s: sandbox failed: %s; retrying in %.0fs", self.namespace, self.name, e, delay
                )
                self.agent.event(
                    self.pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}"
                )
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), delay)
                delay = min(delay * 2, 60.0)
        return False

    async def _run(self) -> None:
        try:
            if not await self._setup_with_retries():
                await self.teardown()
                await self.agent.finish_delete(self.pod)
                self.finished = True
                return
            while not self.deleting:
                await self._reconcile_containers()
                await self.push_status()
                self.wake.clear()
                timeout = self._next_timer()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            await self._terminate()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.name)
            self.agent.event(
                self.pod, "Warning", "Failed", "svcnet node agent failed on this pod; see its log"
            )
        finally:
            for c in self.every_container():
                for t in c.tasks:
                    t.cancel()

    def _next_timer(self) -> float | None:
        now = time.monotonic()
        waits = [c.restart_at - now for c in self.every_container() if c.restart_at is not None]
        return max(0.0, min(waits)) if waits else None

    async def _setup(self) -> None:
        if self.host_network:
            # The node's own namespace, address and resolv.conf (kubelet gives a hostNetwork
            # pod the node's resolver; ClusterFirstWithHostNet is not applied here).
            self.ip = self.agent.node_ip
        else:
            self.ip = self.agent.ipam.allocate(self.uid)
            resolv = podfiles.resolv_conf(self.pod, self.agent.cluster_dns, self.agent.cluster_domain)
            hosts = podfiles.hosts_file(self.pod, [self.ip], self.agent.cluster_domain)
            if not self.local:
                await asyncio.to_thread(
                    sandbox.create, self.agent.node_network, self.pod_netns, self.uid, self.ip, resolv, hosts
                )
        self.sandbox_ready = True
        self.start_time = (self.adopt or {}).get("startTime") or rfc3339()
        if self.adopt:
            self._adopt(self.adopt)
        self.save()

    def every_container(self) -> list[Container]:
        return [*self.init_containers.values(), *self.containers.values()]

    def _adopt(self, saved: Obj) -> None:
        self.initialized = bool(saved.get("initialized", True))
        for name, s in (saved.get("containers") or {}).items():
            c = self.containers.get(name) or self.init_containers.get(name)
            if c is None:
                continue
            c.restart_count = int(s.get("restartCount") or 0)
            c.last_state = s.get("lastState") or {}
            c.builtin = bool(s.get("builtin"))
            c.backoff = float(s.get("backoff") or 0.0)
            pid, ticks = s.get("pid"), s.get("ticks")
            if pid and runtime.alive(int(pid), ticks):
                c.process = runtime.Process(int(pid), ticks, self.dir / f"{name}.status")
                c.started_at = s.get("startedAt") or time.time()
                c.state = {"running": {"startedAt": rfc3339(c.started_at)}}
                c.started = True
                self._watch(c)
                if not c.init:
                    self._start_probes(c)
                log.info("pod %s/%s: adopted container %s (pid %s)", self.namespace, self.name, name, pid)
            elif pid:
                # It ended while the agent was away: report how, then the restart policy decides.
                exit_ = runtime.Process(int(pid), ticks, self.dir / f"{name}.status")._exit(None)
                c.started_at = s.get("startedAt")
                self._record_exit(c, exit_)
            elif s.get("state"):
                # Between runs (back-off) or done: carry on where the last agent was.
                c.state = s["state"]
                c.started_at = s.get("startedAt")
                after = s.get("restartAfter")
                if after is not None:
                    c.restart_at = time.monotonic() + max(0.0, float(after) - time.time())

    # -- containers ------------------------------------------------------------------------------

    def _restart_policy(self) -> str:
        return (self.pod.get("spec") or {}).get("restartPolicy") or "Always"

    async def _reconcile_init_containers(self) -> bool:
        """Advance the init containers; True once they all succeeded."""
        now = time.monotonic()
        for c in self.init_containers.values():
            term = c.state.get("terminated")
            if term is not None and term.get("exitCode") == 0:
                continue
            if c.running or c.killing or (term is not None and c.restart_at is None):
                return False  # running, stopping, or failed for good (restartPolicy Never)
            if c.restart_at is not None and c.restart_at > now:
                return False
            await self._start(c)
            return False
        self.initialized = True
        self.save()
        return True

    async def _reconcile_containers(self) -> None:
        now = time.monotonic()
        if not self.initialized:
            for c in self.containers.values():
                c.state = {"waiting": {"reason": "PodInitializing"}}
            if not await self._reconcile_init_containers():
                return
        for c in self.containers.values():
            if c.running or c.killing:
                continue
            if c.restart_at is not None and c.restart_at > now:
                continue
            if "terminated" in c.state and c.restart_at is None:
                continue  # done for good (restart policy)
            await self._start(c)

    def _env(self, c: Container) -> dict[str, str]:
        env = envvars.container_env(
            self.pod,
            c.spec,
            self.agent.services(),
            self.agent.node_ip,
            [self.ip] if self.ip else [],
            self.agent.node_name,
        )
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        return env

    async def _start(self, c: Container) -> None:
        env = self._env(c)
        argv, c.builtin = container_command(c.spec)
        argv = [envvars.expand(a, env) for a in argv]
        cwd = c.spec.get("workingDir") or "/"
        c.restart_at = None
        if c.started_at is not None:  # a restart (kubelet counts restarts, not runs)
            c.restart_count += 1
        if runtime.find_executable(argv[0], env, cwd) is None:
            # What containerd reports for a missing binary: the container never ran.
            message = (
                f"failed to create containerd task: failed to create shim task: OCI runtime create "
                f'failed: runc create failed: unable to start container process: exec: "{argv[0]}": '
                f"executable file not found in $PATH: unknown"
            )
            self.agent.event(self.pod, "Warning", "Failed", f"Error: {message}", c.name)
            c.started_at = time.time()
            self._record_exit(c, runtime.Exit(128, 0, message, time.time()), reason="StartError")
            return
        hostname = None if self.host_network or self.local else podfiles.pod_hostname(self.pod)[0]
        if self.local and c.builtin and self.ip:
            env["SVCNET_ECHO_HOST"] = self.ip  # pods share one network stack: bind the pod's own address
        c.process = await runtime.spawn(
            self.netns_name,
            hostname,
            argv,
            env,
            cwd,
            self.dir / f"{c.name}.status",
            self.dir / f"{c.name}.log",
        )
        c.started_at = time.time()
        c.state = {"running": {"startedAt": rfc3339(c.started_at)}}
        c.started = "startupProbe" not in c.spec and not c.init
        c.ready = False
        self.save()
        self.agent.event(self.pod, "Normal", "Started", f"Started container {c.name}", c.name)
        self._watch(c)
        if not c.init:
            self._start_probes(c)

    def _watch(self, c: Container) -> None:
        proc = c.process
        assert proc is not None

        async def waiter() -> None:
            exit_ = await proc.wait()
            if c.process is proc:
                self._stop_probes(c)
                c.process = None
                self._record_exit(c, exit_)
                self.save()
                self.wake.set()

        c.exit_task = asyncio.get_running_loop().create_task(waiter())

    def _record_exit(self, c: Container, exit_: runtime.Exit, reason: str | None = None) -> None:
        c.ready = False
        c.started = False
        reason = reason or ("Completed" if exit_.code == 0 else "Error")
        term: Obj = {
            "exitCode": exit_.code,
            "reason": reason,
            "startedAt": rfc3339(c.started_at) if c.started_at else None,
            "finishedAt": rfc3339(exit_.finished_at),
            "containerID": self._container_id(c),
        }
        if exit_.signal:
            term["signal"] = exit_.signal
        if exit_.message:
            term["message"] = exit_.message
        term = {k: v for k, v in term.items() if v is not None}
        policy = self._restart_policy()
        restart = (
            not self.deleting
            and not c.killing
            and (
                (policy == "Always" and not c.init) or (policy in ("OnFailure", "Always") and exit_.code != 0)
            )
        )
        c.killing = False
        if not restart:
            c.state = {"terminated": term}
            c.restart_at = None
            return
        # kubelet's back-off: restart at once the first time, then wait 10 s, 20 s, ... 5 min;
        # a container that ran for 10 minutes starts over.
        ran = exit_.finished_at - (c.started_at or exit_.finished_at)
        if ran > 2 * BACKOFF_MAX:
            c.backoff = 0.0
        c.last_state = {"terminated": term}
        if c.backoff == 0.0:
            c.restart_at = time.monotonic()
            c.state = {"waiting": {"reason": "ContainerCreating"}}
            c.backoff = BACKOFF_INITIAL
        else:
            delay = c.backoff
            c.backoff = min(c.backoff * 2, BACKOFF_MAX)
            c.restart_at = time.monotonic() + delay
            msg = (
                f"back-off {int(delay)}s restarting failed container={c.name} "
                f"pod={self.name}_{self.namespace}({self.uid})"
            )
            c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": msg}}
            self.agent.event(
                self.pod,
                "Warning",
                "BackOff",
                "Back-off restarting failed container "
                f"{c.name} in pod {self.name}_{self.namespace}({self.uid})",
                c.name,
            )

    def _container_id(self, c: Container) -> str:
        return f"svcnet://{self.uid[:8]}-{c.name}-{c.restart_count}"

    # -- probes ----------------------------------------------------------------------------------

    def _start_probes(self, c: Container) -> None:
        loop = asyncio.get_running_loop()
        spec = c.spec
        env = self._env(c)

        def runner(probe: Obj) -> Callable[[], Any]:
            return lambda: probes.run_once(
                probe, spec, self.ip or "", self.agent.node_network.netns, self.netns_name, env
            )

        readiness = spec.get("readinessProbe")
        implicit = False
        if readiness is None and c.builtin:
            implicit = True
            # The built-in server is Ready once it listens (as an image's server with a TCP
            # readiness probe would be), not the instant its process starts.
            tcp_ports = [
                p["containerPort"]
                for p in spec.get("ports") or []
                if (p.get("protocol") or "TCP") == "TCP" and p.get("containerPort")
            ]
            if tcp_ports:
                readiness = {"tcpSocket": {"port": tcp_ports[0]}, "periodSeconds": 10, "failureThreshold": 1}
        startup_done = asyncio.Event()
        if c.started:
            startup_done.set()

        def failure_event(kind: str, probe: Obj) -> Callable[[str], None]:
            # kubelet records an Unhealthy event for each failed probe; at most one per period
            # here, as the fast first readiness probes would otherwise flood the event list.
            period = max(1.0, float(probe.get("periodSeconds") or 10))
            last = [0.0]

            def record(message: str) -> None:
                now = time.monotonic()
                if now - last[0] >= period:
                    last[0] = now
                    self.agent.event(
                        self.pod, "Warning", "Unhealthy", f"{kind} probe failed: {message}", c.name
                    )

            return record

        async def on_startup(ok: bool, message: str) -> None:
            if ok:
                c.started = True
                startup_done.set()
                self.wake.set()
            else:
                await self._kill_for_restart(c, f"Container {c.name} failed startup probe, will be restarted")

        async def on_liveness(ok: bool, message: str) -> None:
            if not ok:
                await self._kill_for_restart(
                    c, f"Container {c.name} failed liveness probe, will be restarted"
                )

        async def on_readiness(ok: bool, message: str) -> None:
            c.ready = ok
            self.wake.set()

        async def after_startup(prober: probes.Prober) -> None:
            await startup_done.wait()
            await prober.loop()

        if spec.get("startupProbe") and not c.started:
            p = probes.Prober(
                "startup",
                spec["startupProbe"],
                runner(spec["startupProbe"]),
                on_startup,
                False,
                failure_event("Startup", spec["startupProbe"]),
            )
            c.tasks.append(loop.create_task(p.loop()))
        if spec.get("livenessProbe"):
            p = probes.Prober(
                "liveness",
                spec["livenessProbe"],
                runner(spec["livenessProbe"]),
                on_liveness,
                True,
                failure_event("Liveness", spec["livenessProbe"]),
            )
            c.tasks.append(loop.create_task(after_startup(p)))
        if readiness:
            p = probes.Prober(
                "readiness",
                readiness,
                runner(readiness),
                on_readiness,
                False,
                None if implicit else failure_event("Readiness", readiness),
            )
            c.tasks.append(loop.create_task(after_startup(p)))
        else:

            async def ready_when_started() -> None:
                await startup_done.wait()
                c.ready = True
                self.wake.set()

            c.tasks.append(loop.create_task(ready_when_started()))

    def _stop_probes(self, c: Container) -> None:
        current = asyncio.current_task()
        for t in c.tasks:
            if t is not current:
                t.cancel()
        c.tasks = []

    async def _kill_for_restart(self, c: Container, message: str) -> None:
        proc = c.process
        if proc is None:
            return
        self.agent.event(self.pod, "Normal", "Killing", message, c.name)
        c.ready = False
        self.wake.set()
        # The exit is recorded by the waiter; the restart policy and back-off apply as usual.
        await proc.stop(self._grace())

    # -- termination -----------------------------------------------------------------------------

    def _grace(self) -> float:
        meta = self.pod.get("metadata") or {}
        if meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        return float((self.pod.get("spec") or {}).get("terminationGracePeriodSeconds") or 30)

    async def _terminate(self) -> None:
        grace = self._grace()
        procs = []
        for c in self.every_container():
            c.restart_at = None
            if c.process is not None:
                c.killing = True
                self.agent.event(self.pod, "Normal", "Killing", f"Stopping container {c.name}", c.name)
                procs.append(c.process.stop(grace))
        await asyncio.gather(*procs, return_exceptions=True)
        await self.teardown()
        await self.agent.finish_delete(self.pod)
        self.finished = True

    async def teardown(self) -> None:
        if not self.host_network:  # never the node's own namespace
            await asyncio.to_thread(sandbox.destroy, self.pod_netns)
        self.agent.ipam.release(self.uid)
        shutil.rmtree(self.dir, ignore_errors=True)

    async def kill_now(self) -> None:
        """Stop every container at once (agent shutdown with cleanup, or an orphan)."""
        for c in self.every_container():
            c.killing = True
            if c.process is not None:
                await c.process.stop(0)

    # -- status ----------------------------------------------------------------------------------

    def _container_status(self, c: Container) -> Obj:
        done = (c.state.get("terminated") or {}).get("exitCode") == 0
        cs: Obj = {
            "name": c.name,
            "image": c.spec.get("image") or "",
            "imageID": "",
            "restartCount": c.restart_count,
            "ready": bool(c.running and c.ready) or (c.init and done),
            "started": bool(c.running and c.started),
            "state": c.state,
        }
        if c.running or "terminated" in c.state:
            cs["containerID"] = self._container_id(c)
        if c.last_state:
            cs["lastState"] = c.last_state
        return cs

    def status(self) -> Obj:
        statuses = [self._container_status(c) for c in self.containers.values()]
        init_statuses = [self._container_status(c) for c in self.init_containers.values()]
        all_ready = bool(statuses) and all(s["ready"] for s in statuses)
        init_failed = any(
            "terminated" in c.state and c.state["terminated"].get("exitCode") != 0 and c.restart_at is None
            for c in self.init_containers.values()
        )
        incomplete = [
            c.name
            for c in self.init_containers.values()
            if (c.state.get("terminated") or {}).get("exitCode") != 0
        ]
        terminated = [c for c in self.containers.values() if "terminated" in c.state]
        if init_failed:
            phase = "Failed"
        elif (
            not self.sandbox_ready
            or not self.initialized
            or not any(
                c.running or c.restart_count or "terminated" in c.state for c in self.containers.values()
            )
        ):
            phase = "Pending"
        elif len(terminated) == len(self.containers):
            phase = (
                "Succeeded" if all(c.state["terminated"]["exitCode"] == 0 for c in terminated) else "Failed"
            )
        else:
            phase = "Running"
        conds = [
            ("PodReadyToStartContainers", self.sandbox_ready, ""),
            ("Initialized", self.initialized, "" if self.initialized else "ContainersNotInitialized"),
            ("Ready", all_ready, "" if all_ready else "ContainersNotReady"),
            ("ContainersReady", all_ready, "" if all_ready else "ContainersNotReady"),
            ("PodScheduled", True, ""),
        ]
        not_ready = [c.name for c in self.containers.values() if not (c.running and c.ready)]
        conditions = []
        for ctype, ok, reason in conds:
            value = "True" if ok else "False"
            prev = self.transition.get(ctype)
            when = prev[1] if prev and prev[0] == value else rfc3339()
            self.transition[ctype] = (value, when)
            cond: Obj = {"type": ctype, "status": value, "lastProbeTime": None, "lastTransitionTime": when}
            if reason == "ContainersNotInitialized":
                cond["reason"] = reason
                cond["message"] = f"containers with incomplete status: [{' '.join(incomplete)}]"
            elif reason:
                cond["reason"] = reason
                cond["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
            conditions.append(cond)
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.agent.node_ip,
            "hostIPs": [{"ip": self.agent.node_ip}],
            "containerStatuses": statuses,
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if self.start_time:
            status["startTime"] = self.start_time
        return status

    async def push_status(self) -> None:
        status = self.status()
        if status == self.last_status:
            return
        if await self.agent.patch_status(self.pod, status):
            self.last_status = status
