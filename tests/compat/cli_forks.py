"""Runs the stock `openstack` CLI without paying its start-up on every command.

Each `openstack` process spends 1-3 s importing python-openstackclient, its plugins and
openstacksdk before it sends a request; the compatibility tests run about two hundred
commands. Here one process imports all of that once, then forks per command: the child does
exactly what the `openstack` console script does (`sys.argv` set, `openstackclient.shell.main()`)
with the caller's environment, its output in files and no stdin, so every command is still a
separate, fresh CLI run; only the imports are shared, as a warm disk cache would share them.

Protocol on the server's stdin/stdout, one JSON object per line: the caller sends
`{"argv", "env", "out", "err"}`; the server answers `{"pid"}` once the child runs, then
`{"code"}` when it has exited (a killed child's code is the negated signal).
"""

import asyncio
import json
import os
import signal
import sys
import tempfile
from importlib.metadata import distributions
from pathlib import Path

OPENSTACK = Path(sys.executable).parent / "openstack"


def _preload() -> None:
    """Import what a command would: the shell and every command module of the CLI's plugins."""
    import openstackclient.shell  # noqa: F401

    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group.startswith("openstack.") and ep.group != "openstack.cli.extension":
                try:
                    ep.load()
                except Exception:  # a plugin that fails to import fails its own commands
                    pass


def _child(request: dict[str, object]) -> None:
    """In the forked child: become `openstack ARGS` and exit with its code; never returns."""
    code = 1
    try:
        env = request["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update(env)
        stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(str(request["out"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(str(request["err"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.argv = [str(OPENSTACK), *map(str, request["argv"])]  # type: ignore[call-overload]
        from openstackclient.shell import main

        try:
            code = main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the CLI crashing: say so, exit 1
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    sys.argv = [str(OPENSTACK)]  # some modules take the program's name as they are imported
    _preload()
    answers = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


class Forks:
    """The caller's side: one server process, one command at a time."""

    def __init__(self) -> None:
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._dir = Path(tempfile.mkdtemp(prefix="openstack-cli-"))

    async def run(self, args: tuple[str, ...], env: dict[str, str], timeout_s: float) -> tuple[int, str, str]:
        """`openstack ARGS` with `env`: (exit code, stdout, stderr). Killed past `timeout_s`."""
        async with self._lock:
            proc = await self._server()
            assert proc.stdin is not None and proc.stdout is not None
            out, err = self._dir / "out", self._dir / "err"
            request = {"argv": list(args), "env": env, "out": str(out), "err": str(err)}
            proc.stdin.write((json.dumps(request) + "\n").encode())
            await proc.stdin.drain()
            started = await proc.stdout.readline()
            if not started:
                raise AssertionError(f"the CLI's fork server exited ({await proc.wait()}); see its stderr")
            pid = json.loads(started)["pid"]
            try:
                answer = await asyncio.wait_for(proc.stdout.readline(), timeout_s)
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                await proc.stdout.readline()
                raise AssertionError(f"openstack {' '.join(args)} ran over {timeout_s:.0f} s") from None
            code = json.loads(answer)["code"]
            return code, out.read_text(), err.read_text()

    async def _server(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.compat.cli_forks",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=Path(__file__).parents[2],
            )
        return self._proc

    async def close(self) -> None:
        """Stop the server (it exits when its stdin closes) and remove the output files."""
        if self._proc is not None and self._proc.returncode is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()


if __name__ == "__main__":
    serve()
