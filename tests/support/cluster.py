"""A RabbitMQ cluster of containers, for the cluster fault tests.

Three nodes of the RabbitMQ 4 stand-in (``scripts/containers.sh`` builds it)
on a Docker network of their own, clustered by classic-config peer discovery
with one Erlang cookie. Each node publishes its AMQP and management ports on
127.0.0.1 only, at ports fixed for the session (so a node that is killed and
started again comes back where the balancer expects it), and a
:class:`~tests.support.proxy.TcpBalancer` stands in front of the AMQP ports
as a Kubernetes Service would.

Every wait is bounded; every Docker command has a timeout.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.proxy import TcpBalancer
from tests.support.stack import free_port

__all__ = ["Node", "RabbitCluster"]

_USER = ("guest", "guest")
# Less CPU on a shared machine: one scheduler, no busy waiting.
_ERL_ARGS = "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"


def _docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Node:
    index: int
    container: str
    host: str
    amqp_port: int
    api_port: int

    @property
    def erlang_name(self) -> str:
        return f"rabbit@{self.host}"

    def __str__(self) -> str:
        return self.host


class RabbitCluster:
    """``start()`` it once, ``stop()`` it at the end (containers, network)."""

    def __init__(self, image: str, workdir: Path, *, size: int = 3) -> None:
        self.image = image
        self.workdir = workdir
        self.name = f"videoq-cluster-{uuid.uuid4().hex[:8]}"
        self.cookie = f"videoq-test-{uuid.uuid4().hex}"
        self.nodes = [
            Node(i, f"{self.name}-rmq{i}", f"rmq{i}", free_port(), free_port())
            for i in range(1, size + 1)
        ]
        self._down: set[str] = set()
        self.balancer: TcpBalancer | None = None

    # --- life cycle -------------------------------------------------------------

    def _config(self) -> Path:
        lines = ["cluster_formation.peer_discovery_backend = classic_config"]
        lines += [
            f"cluster_formation.classic_config.nodes.{n.index} = {n.erlang_name}"
            for n in self.nodes
        ]
        # Nodes boot at different speeds on a loaded machine: keep looking for
        # the others for a minute rather than forming a cluster of one.
        lines += [
            "cluster_formation.discovery_retry_limit = 60",
            "cluster_formation.discovery_retry_interval = 1000",
        ]
        path = self.workdir / "20-cluster.conf"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o644)
        return path

    def start(self, *, timeout: float = 180) -> None:
        """Create the network and the nodes; return once all of them run as one
        cluster and listen for AMQP, with the balancer in front."""
        config = self._config()
        _docker("network", "create", self.name)
        for node in self.nodes:
            _docker(
                "run",
                "--detach",
                "--name",
                node.container,
                "--hostname",
                node.host,
                "--network",
                self.name,
                "--network-alias",
                node.host,
                "--env",
                f"RABBITMQ_ERLANG_COOKIE={self.cookie}",
                "--env",
                f"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS={_ERL_ARGS}",
                "--volume",
                f"{config}:/etc/rabbitmq/conf.d/20-cluster.conf:ro",
                "--publish",
                f"127.0.0.1:{node.amqp_port}:5672",
                "--publish",
                f"127.0.0.1:{node.api_port}:15672",
                self.image,
            )
        self.wait_formed(timeout=timeout)
        self.balancer = TcpBalancer([("127.0.0.1", n.amqp_port) for n in self.nodes])

    def stop(self) -> None:
        """Keep each node's log in the work directory, then remove everything."""
        if self.balancer is not None:
            self.balancer.close()
        for node in self.nodes:
            (self.workdir / f"{node.host}.log").write_text(self.log(node))
            _docker("rm", "--force", "--volumes", node.container, check=False)
        _docker("network", "rm", self.name, check=False)

    def log(self, node: Node) -> str:
        done = subprocess.run(
            ["docker", "logs", node.container],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return done.stdout + done.stderr

    def kill(self, node: Node) -> None:
        """SIGKILL the node's broker (its container stops; its ports close)."""
        self._down.add(node.host)
        _docker("kill", node.container)

    def revive(self, node: Node, *, timeout: float = 120) -> None:
        """Start a killed node again and wait until it is back in the cluster."""
        _docker("start", node.container)
        self._down.discard(node.host)
        self.wait_formed(timeout=timeout)

    # --- the management API ---------------------------------------------------------

    def _live(self) -> list[Node]:
        return [n for n in self.nodes if n.host not in self._down]

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Ask the first live node that answers (a dead one refuses at once)."""
        error: Exception | None = None
        for node in self._live():
            try:
                return httpx.request(
                    method,
                    f"http://127.0.0.1:{node.api_port}{path}",
                    auth=_USER,
                    timeout=httpx.Timeout(15, connect=2),
                    **kwargs,
                )
            except httpx.TransportError as exc:
                error = exc
        raise RuntimeError(f"no node's management API answers {path}: {error!r}")

    def api(self, path: str) -> Any:
        response = self._request("GET", path)
        response.raise_for_status()
        return response.json()

    def _node_answers(self, node: Node) -> bool:
        try:
            response = httpx.get(
                f"http://127.0.0.1:{node.api_port}/api/health/checks/port-listener/5672",
                auth=_USER,
                timeout=httpx.Timeout(5, connect=2),
            )
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def _formed(self) -> bool:
        live = self._live()
        if not all(self._node_answers(n) for n in live):
            return False
        try:
            running = {n["name"] for n in self.api("/api/nodes") if n.get("running")}
        except (RuntimeError, httpx.HTTPError):
            return False
        return running == {n.erlang_name for n in live}

    def wait_formed(self, *, timeout: float) -> None:
        """Wait until every live node runs in the cluster and listens for AMQP."""
        deadline = time.monotonic() + timeout
        problem = f"the cluster did not form within {timeout:.0f} s"
        while time.monotonic() < deadline:
            if self._formed():
                return
            exited = [n.host for n in self._live() if not self._running(n)]
            if exited:
                problem = f"broker nodes exited: {', '.join(exited)}"
                break
            time.sleep(1)
        logs = "\n".join(f"--- {n} ---\n{self.log(n)[-3000:]}" for n in self.nodes)
        raise RuntimeError(f"{problem}\n{logs}")

    def _running(self, node: Node) -> bool:
        state = _docker("inspect", "--format", "{{.State.Running}}", node.container, check=False)
        return state.strip() == "true"

    def new_vhost(self) -> str:
        """A fresh vhost the guest user may do anything in."""
        vhost = f"videoq-test-{uuid.uuid4().hex[:10]}"
        quoted = quote(vhost, safe="")
        self._request("PUT", f"/api/vhosts/{quoted}").raise_for_status()
        self._request(
            "PUT",
            f"/api/permissions/{quoted}/{_USER[0]}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        return vhost

    def drop_vhost(self, vhost: str) -> None:
        self._request("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")

    def amqp_url(self, vhost: str) -> str:
        """The vhost through the balancer (what the services are given)."""
        assert self.balancer is not None, "start() the cluster first"
        return f"amqp://guest:guest@127.0.0.1:{self.balancer.port}/{quote(vhost, safe='')}"

    def node_named(self, erlang_name: str) -> Node:
        return next(n for n in self.nodes if n.erlang_name == erlang_name)

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.api(f"/api/queues/{quote(vhost, safe='')}/{quote(name)}")
        return info

    def leader(self, vhost: str, queue: str) -> Node:
        """The node that leads a quorum queue (or hosts a classic one)."""
        info = self.queue(vhost, queue)
        return self.node_named(str(info.get("leader") or info["node"]))

    def members(self, vhost: str, queue: str) -> tuple[set[str], set[str]]:
        """A quorum queue's (members, members online), as Erlang node names."""
        info = self.queue(vhost, queue)
        return set(info.get("members") or ()), set(info.get("online") or ())

    def connections(self, vhost: str) -> list[dict[str, Any]]:
        """Open client connections in ``vhost``: each with its ``node`` and
        ``client_properties.connection_name``."""
        found: list[dict[str, Any]] = self.api(f"/api/vhosts/{quote(vhost, safe='')}/connections")
        return found

    def consumers(self, vhost: str, queue: str) -> list[dict[str, Any]]:
        """The consumers of ``queue``: each with its ``channel_details`` (the
        channel's ``name``, ``node`` and ``connection_name``)."""
        every: list[dict[str, Any]] = self.api(f"/api/consumers/{quote(vhost, safe='')}")
        return [c for c in every if c.get("queue", {}).get("name") == queue]
