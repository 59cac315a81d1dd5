"""A process with Shengtu imported that forks a child for each ``shengtu`` process a
test starts.

Importing Shengtu costs a new process 2–3 s of CPU on a small machine; a fork of a
process that has it costs milliseconds. The tests start hundreds of processes (migrate,
create an admin, audit; servers, workers, sandboxes): through here each is still a
process of its own, with its own environment, pid, signals and exit code, as a user
would run it. Protocol, one JSON line each way:

- ``{"op": "run", "args", "env", "cwd"}`` → ``{"code", "stdout", "stderr"}`` (waits for it)
- ``{"op": "spawn", "args", "env", "log"}`` → ``{"pid"}`` (output appended to ``log``)
- ``{"op": "poll", "pid"}`` → ``{"code"}`` (null while it runs)
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import tempfile
import traceback

import shengtu.app
import shengtu.cli
from shengtu.config import get_settings

assert shengtu.app  # imported for the children: that is the point of this process


def _child(args: list[str], env: dict[str, str], out: int, err: int, cwd: str | None) -> None:
    """Become ``shengtu ARGS``; never returns."""
    code = 1
    try:
        if cwd:
            os.chdir(cwd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.environ.clear()
        os.environ.update(env)
        get_settings.cache_clear()
        sys.argv = ["shengtu", *args]
        try:
            shengtu.cli.main()
            code = 0
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    ended: dict[int, int] = {}
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, object]
        if request["op"] == "poll":
            pid = request["pid"]
            if pid not in ended:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done:
                    ended[pid] = os.waitstatus_to_exitcode(status)
            answer = {"code": ended.get(pid)}
        elif request["op"] == "spawn":
            log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(request["args"], request["env"], log, log, None)
            os.close(log)
            # The kernel hands out pids again (threads take them too): an earlier child
            # that had this pid and ended is not this one, which has just begun.
            ended.pop(pid, None)
            answer = {"pid": pid}
        else:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(
                        request["args"],
                        request["env"],
                        out.fileno(),
                        err.fileno(),
                        request.get("cwd"),
                    )
                _, status = os.waitpid(pid, 0)
                answer = {"code": os.waitstatus_to_exitcode(status)}
                for name, f in (("stdout", out), ("stderr", err)):
                    f.seek(0)
                    answer[name] = f.read().decode("utf-8", "replace")
        protocol.write(json.dumps(answer) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
