"""The MPI launcher's signal of a lost host: ssh reachability, checked for real with the ssh client (a host whose
name no longer resolves is unreachable as a lost host is; no sshd is needed)."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from aiperf.launch._reach import ReachWatch, is_local, ssh_argv, unreachable

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client (apt-get install openssh-client)")


def test_this_machine_is_never_checked_and_a_host_that_does_not_resolve_is_unreachable_with_sshs_words() -> None:
    assert is_local("localhost") and is_local(socket.gethostname()) and not is_local("n2")
    answer = unreachable(["localhost", "no-such-host.invalid"], timeout=3)
    assert answer["localhost"] is None
    assert answer["no-such-host.invalid"] is not None and "no-such-host.invalid" in answer["no-such-host.invalid"]


def test_the_ssh_command_never_prompts_and_refuses_an_option_passed_as_a_host() -> None:
    argv = ssh_argv("n2", timeout=3)
    assert argv == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "--", "n2", "true"]
    with pytest.raises(ValueError, match="not a host name"):
        ssh_argv("-oProxyCommand=evil")


def test_the_watch_answers_without_blocking_and_then_with_every_host() -> None:
    watch = ReachWatch(lambda: ["localhost", "no-such-host.invalid"], every=0.2)
    try:
        started = time.monotonic()
        first = watch.latest()
        assert time.monotonic() - started < 0.5  # the master's poll never waits on ssh
        assert first is None or set(first) == {"localhost", "no-such-host.invalid"}
        end = time.monotonic() + 30
        latest = watch.latest()
        while latest is None and time.monotonic() < end:
            time.sleep(0.1)
            latest = watch.latest()
        assert latest is not None and latest["localhost"] is None and latest["no-such-host.invalid"]
    finally:
        watch.close()
