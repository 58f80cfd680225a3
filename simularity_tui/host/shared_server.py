"""One model server for every player: `shared_server = true` in host.toml.

The host starts llama-server with a slot per possible player (`--parallel max_sessions`, each slot
`n_ctx` tokens) and stops it when it stops. The model is in memory once (on the GPU where there is
one), and each game is a thin process (the screen and the story) that plays in a slot of its own:
one player's turn never evicts another's prompt cache. With `backend` (a server already running) the
games are pointed at it and pinned to slots the same way, where it has them.

The server listens on loopback with a key of its own, which only the games are given (in their
environment, not on a command line `ps` shows). Its port is kept in the host's data directory:
a save's slot file is bound to the server's address, so a restarted host that finds its old port
free resumes the players' caches too. Slot files go to data_dir/slots.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ..engine.remote.llama_server import LlamaServer, LlamaServerSpec, free_port, llama_server_binary, port_is_free
from .config import LoadedHostConfig

log = logging.getLogger("simularity.host")


def start_shared_server(loaded: LoadedHostConfig) -> LlamaServer:
    """Start the host's llama-server and wait until its model is loaded; a clear error if it fails."""
    config = loaded.config
    model = loaded.model_file()
    spec = LlamaServerSpec(
        model=model,
        n_ctx_per_slot=config.n_ctx,
        slots=loaded.server_slots,
        # The CPU the games would have had between them: `threads` per game, for every slot.
        threads=min(config.threads * loaded.server_slots, os.cpu_count() or 1) if config.threads else 0,
        gpu_layers=config.gpu_layers,
        slot_save_path=loaded.data_dir / "slots",
        # Each game keeps a slot of its own: a RAM cache of prompts (up to 8 GiB by default) would
        # only hold again what the slots and the slot files hold, on a machine the players share.
        cache_ram_mib=0,
    )
    binary = llama_server_binary(loaded.llama_server)
    server = LlamaServer(binary, spec, loaded.data_dir / "llama-server.log", _kept_port(loaded.data_dir))
    log.info("starting llama-server: %d slots of %d tokens, %s", loaded.server_slots, config.n_ctx, model.name)
    server.start()
    try:
        (loaded.data_dir / "llama-server.port").write_text(f"{server.port}\n")
    except OSError as error:  # a full disk: the next start picks a port again
        log.warning("cannot keep llama-server's port: %s", error.strerror)
    log.info("llama-server %d on %s, log %s", server.process.pid if server.process else 0, server.url, server.log)
    return server


def _kept_port(data_dir: Path) -> int:
    """The port the last start used, if it is free now; else a new free one."""
    with contextlib.suppress(OSError, ValueError):
        port = int((data_dir / "llama-server.port").read_text().strip())
        if 1024 <= port <= 65535 and port_is_free(port):
            return port
    return free_port()


class ServerSlots:
    """Which server slot each game plays in. A player gets back the slot they had last when it is free
    (the server may still hold their story there); a newcomer gets one nobody had last, if any."""

    def __init__(self, count: int) -> None:
        self._free = set(range(count))
        self._last: dict[str, int] = {}

    def take(self, player: str) -> int:
        if not self._free:  # the host lets no more games in than it has slots: a slot is never shared
            raise RuntimeError("every server slot is taken")
        mine = self._last.get(player)
        if mine is None or mine not in self._free:
            unclaimed = self._free - set(self._last.values())
            mine = min(unclaimed or self._free)
        self._free.discard(mine)
        self._last[player] = mine
        return mine

    def give_back(self, slot: int) -> None:
        self._free.add(slot)
